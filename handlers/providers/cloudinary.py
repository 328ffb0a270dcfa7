"""Compress and audio-convert on Cloudinary (production), through the official SDK.

``CloudinaryCompressor`` (step ``compress``) downloads the original from
Storage to a temporary file, uploads it as a ``video`` asset in chunks
(``X-Unique-Upload-Id`` + ``Content-Range``, the protocol of the SDK's
``upload_large``; progress is the share of bytes uploaded) and asks for two
eager transformations at once:

- the lecture video, ``ac_aac,c_limit,h_720,q_auto,vc_h264`` delivered as mp4
  (height capped at 720, never enlarged; H.264 + AAC; Cloudinary's automatic
  quality), stored at ``artifact_key(owner, queue, "compressed")``;
- the speech audio, ``ac_vorbis,af_16000`` delivered as ogg (Vorbis at 16 kHz,
  Cloudinary's own codec for ogg; Opus would always decode at 48 kHz, and
  Cloudinary cannot deliver ``.opus``), which ``CloudinaryAudioConverter`` (step
  ``audio-convert``) later fetches into ``artifact_key(owner, queue, "audio")``.
  Cloudinary has no channel-count parameter: a stereo lecture stays stereo,
  which every Whisper server downmixes itself.

Before the upload the original is probed locally: a "video" with sound but no
picture is not uploaded by compress at all (see :class:`CloudinaryCompressor`).

Eager transformations run asynchronously by default (``eager_async``), as
Cloudinary requires for videos too large to transform on the fly; the
derived file's delivery URL answers 423 (or 400 "too large to process
synchronously") until it is ready, and the provider polls it, checking for
cancellation between polls. Derived files are streamed into Storage.

Configuration: ``CloudinaryConfig`` holds the cloud name, key, secret, upload
API prefix and delivery base; ``CloudinaryConfig.from_url`` reads
``CLOUDINARY_URL`` (``cloudinary://<api_key>:<api_secret>@<cloud_name>``, with
the SDK's optional ``?upload_prefix=...`` / ``secure_distribution`` /
``cname`` query keys). **Global state:** the SDK keeps a module-level config
(filled from ``CLOUDINARY_URL`` when ``cloudinary`` is first imported) and a
module-level urllib3 pool. Every SDK call here passes each setting the SDK
would otherwise read from that global config as an explicit keyword
(:meth:`CloudinaryConfig.upload_options`, :meth:`CloudinaryConfig.delivery_url`),
so two providers with different accounts can coexist and the global config
is never written. Note that importing the SDK fails if ``CLOUDINARY_URL`` is
set but malformed.

Errors: 5xx, timeouts, refused connections and 420/429 rate limits are
:class:`TransientError` (with the server's ``Retry-After`` on delivery; the
SDK drops upload response headers, so there the retry policy's own backoff
applies); 401/403 are :class:`PermanentError` naming ``CLOUDINARY_URL``; a 400
saying the file is not a usable video is a :class:`MediaError` the tutor can
act on; other 4xx are :class:`PermanentError`.
"""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import cloudinary.exceptions
import cloudinary.uploader
import cloudinary.utils
import httpx

from handlers.errors import MediaError, PermanentError, ProviderError, TransientError
from handlers.media.probe import NEITHER_PICTURE_NOR_SOUND, MediaInfo, probe
from handlers.providers.recordings import played_as_recorded, sound_without_picture
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import ArtifactNotFound, Storage, StorageError, StoredObject, artifact_key

logger = logging.getLogger(__name__)

VIDEO_TRANSFORMATION = {
    "crop": "limit",
    "height": 720,
    "video_codec": "h264",
    "audio_codec": "aac",
    "quality": "auto",
}
"""The compressed lecture: ``ac_aac,c_limit,h_720,q_auto,vc_h264`` (``height`` follows ``max_height``)."""
VIDEO_FORMAT = "mp4"

AUDIO_TRANSFORMATION = {"audio_codec": "vorbis", "audio_frequency": 16000}
"""The speech audio: ``ac_vorbis,af_16000``."""
AUDIO_FORMAT = "ogg"

_STATUS_IN_MESSAGE = re.compile(r"Error parsing server response \((\d{3})\)")
_UNUSABLE_MEDIA = re.compile(
    r"invalid video|unsupported video|invalid image file|unsupported (file|format)|corrupt|no video", re.I
)
_TOO_LARGE = re.compile(r"file size too large|maximum (file )?size", re.I)
_NOT_READY = re.compile(r"too large to process synchronously", re.I)
_URL_SHAPE = "cloudinary://<api_key>:<api_secret>@<cloud_name>"
_CREDENTIALS_HINT = f"check CLOUDINARY_URL ({_URL_SHAPE})"


@dataclass(frozen=True)
class CloudinaryConfig:
    """One Cloudinary account and how to reach it; nothing here touches the SDK's global config."""

    cloud_name: str
    api_key: str
    api_secret: str = field(repr=False)
    upload_prefix: str = "https://api.cloudinary.com"
    """Base of the Upload API (the SDK's ``upload_prefix``); a local server's URL in tests."""
    delivery_base: str = "https://res.cloudinary.com"
    """Base of delivery URLs: ``https://res.cloudinary.com`` (shared CDN), a private CDN or
    CNAME host, or ``http://127.0.0.1:<port>`` for a local server."""
    private_cdn: bool = False
    """True when ``delivery_base`` is a private CDN host (no ``/<cloud_name>`` in the path)."""
    signature_algorithm: str = "sha1"
    """``sha1`` or ``sha256``, as the account is set up."""
    folder: str = "vidpipe"
    """Public ids are ``<folder>/<owner>/<queue>``, so a retried upload replaces its own asset."""
    chunk_size: int = 20_000_000
    """Bytes per upload request (the SDK's default; Cloudinary wants at least 5 MB but the last)."""
    request_timeout_s: float = 300.0
    """Timeout of one upload or delivery request."""
    eager_async: bool = True
    """Derive in the background (required by Cloudinary for large videos) and poll for the result."""
    derive_timeout_s: float = 3600.0
    """How long to wait for a derived file before giving up with a transient error."""
    poll_interval_s: float = 5.0
    """Pause between checks of a derived file that is not ready yet."""
    max_height: int = 720
    """Height cap of the compressed video (``c_limit,h_<max_height>``)."""

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> CloudinaryConfig:
        """Parse ``CLOUDINARY_URL`` as the SDK does; ``overrides`` (e.g. ``upload_prefix``,
        ``delivery_base``) win over what the URL says. A path (``cloudinary://k:s@cloud/cdn.host``)
        names a private CDN host, as in the SDK; query keys ``upload_prefix``,
        ``secure_distribution``, ``cname`` and ``signature_algorithm`` are honoured."""
        parsed = urlparse(url)
        if parsed.scheme != "cloudinary" or not (parsed.hostname and parsed.username and parsed.password):
            raise ValueError(f"CLOUDINARY_URL must look like {_URL_SHAPE}")
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        fields: dict[str, Any] = {
            "cloud_name": parsed.hostname,
            "api_key": parsed.username,
            "api_secret": parsed.password,
        }
        if "upload_prefix" in query:
            fields["upload_prefix"] = query["upload_prefix"]
        if "signature_algorithm" in query:
            fields["signature_algorithm"] = query["signature_algorithm"]
        distribution = parsed.path.strip("/") or query.get("secure_distribution")
        if distribution:
            fields["delivery_base"] = f"https://{distribution}"
            fields["private_cdn"] = bool(parsed.path.strip("/"))
        elif "cname" in query:
            fields["delivery_base"] = f"http://{query['cname']}"
        fields.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**fields)

    def upload_options(self) -> dict[str, Any]:
        """Every SDK Upload API setting, explicitly (so ``cloudinary.config()`` is never consulted)."""
        return {
            "cloud_name": self.cloud_name,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "upload_prefix": self.upload_prefix.rstrip("/"),
            "signature_algorithm": self.signature_algorithm,
            "signature_version": 2,
            "oauth_token": None,
            "upload_preset": None,
            "timeout": self.request_timeout_s,
            "resource_type": "video",
        }

    def delivery_url(self, public_id: str, version: int | str, transformation: dict[str, Any], format: str) -> str:
        """The derived file's URL, built by the SDK with the delivery host given explicitly."""
        base = urlparse(self.delivery_base)
        host = base.netloc + base.path.rstrip("/")
        url, _ = cloudinary.utils.cloudinary_url(
            public_id,
            resource_type="video",
            type="upload",
            version=version,
            format=format,
            cloud_name=self.cloud_name,
            secure=base.scheme == "https",
            secure_distribution=host if base.scheme == "https" else None,
            cname=host if base.scheme != "https" else None,
            private_cdn=self.private_cdn,
            cdn_subdomain=False,
            secure_cdn_subdomain=False,
            shorten=False,
            sign_url=False,
            auth_token=False,
            force_version=True,
            use_root_path=False,
            responsive_width=False,
            **transformation,
        )
        return str(url)

    def video_transformation(self) -> dict[str, Any]:
        return {**VIDEO_TRANSFORMATION, "height": self.max_height}


def eager_entry(transformation: dict[str, Any], format: str) -> dict[str, Any]:
    return {**transformation, "format": format}


class CloudinaryClient:
    """Chunked, signed uploads through the SDK and streamed delivery downloads, with our error classes."""

    def __init__(self, config: CloudinaryConfig, storage: Storage) -> None:
        self.config = config
        self.storage = storage

    def upload(
        self,
        path: Path,
        public_id: str,
        eager: list[dict[str, Any]],
        context: StepContext,
        progress: Callable[[float], None],
    ) -> dict[str, Any]:
        """Upload ``path`` in chunks; returns the final response (``public_id``, ``version``, ``eager``...)."""
        total = path.stat().st_size
        if total == 0:
            raise MediaError("The uploaded file is empty. Please upload the lecture video again.")
        options = {
            **self.config.upload_options(),
            "public_id": public_id,
            "overwrite": True,
            "eager": eager,
            "eager_async": self.config.eager_async,
            "return_error": True,
        }
        upload_id = secrets.token_hex(16)
        sent = 0
        result: dict[str, Any] = {}
        with path.open("rb") as handle:
            while chunk := handle.read(self.config.chunk_size):
                context.check()
                headers = {
                    "Content-Range": f"bytes {sent}-{sent + len(chunk) - 1}/{total}",
                    "X-Unique-Upload-Id": upload_id,
                }
                result = self._call(
                    lambda chunk=chunk, headers=headers: cloudinary.uploader.upload_large_part(
                        (path.name, chunk), http_headers=headers, **options
                    )
                )
                sent += len(chunk)
                progress(sent / total)
        if "public_id" not in result or "version" not in result:
            raise TransientError(f"Cloudinary's upload answer lacks public_id/version: {sorted(result)}")
        logger.info("uploaded %s to Cloudinary as %s v%s", path.name, result["public_id"], result["version"])
        return result

    def destroy(self, public_id: str) -> bool:
        """Delete the asset and its derived files (CDN copies invalidated); False when there was none."""
        result = self._call(lambda: cloudinary.uploader.destroy(public_id, invalidate=True, **self.config.upload_options()))
        logger.info("Cloudinary asset %s destroyed: %s", public_id, result.get("result"))
        return result.get("result") == "ok"

    def _call(self, request: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            result = request()
        except cloudinary.exceptions.Error as failure:
            raise _from_sdk_error(failure) from failure
        except ValueError as failure:  # the SDK's "Must supply api_key/api_secret/cloud_name"
            raise PermanentError(f"Cloudinary is not configured: {failure}; {_CREDENTIALS_HINT}") from failure
        if "error" in result:
            details = result["error"]
            raise classify(details.get("http_code"), str(details.get("message", "")))
        return result

    def fetch(
        self, url: str, key: str, context: StepContext, progress: Callable[[float], None]
    ) -> StoredObject:
        """Stream the file at ``url`` into Storage at ``key``, waiting while Cloudinary derives it."""
        deadline = time.monotonic() + self.config.derive_timeout_s
        timeout = httpx.Timeout(self.config.request_timeout_s, connect=min(30.0, self.config.request_timeout_s))
        with httpx.Client(timeout=timeout, follow_redirects=True) as http:
            while True:
                context.check()
                try:
                    with http.stream("GET", url) as response:
                        if not _not_ready(response):
                            return self._store(response, key, context, progress)
                except httpx.TimeoutException as failure:
                    raise TransientError(f"Cloudinary delivery timed out: {failure}") from failure
                except httpx.TransportError as failure:
                    raise TransientError(f"Cloudinary delivery could not be reached: {failure}") from failure
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"Cloudinary has not finished deriving {url} after {self.config.derive_timeout_s:.0f} s"
                    )
                logger.debug("derived file %s not ready yet; polling again", url)
                context.wait(self.config.poll_interval_s)

    def _store(
        self, response: httpx.Response, key: str, context: StepContext, progress: Callable[[float], None]
    ) -> StoredObject:
        if response.status_code != 200:
            response.read()
            reason = response.headers.get("x-cld-error") or response.text[:200] or response.reason_phrase
            raise classify(response.status_code, reason, retry_after=_retry_after(response))
        total = int(response.headers.get("content-length") or 0)

        def chunks() -> Iterator[bytes]:
            received = 0
            for chunk in response.iter_bytes(1024 * 1024):
                context.check()
                received += len(chunk)
                if total:
                    progress(min(1.0, received / total))
                yield chunk

        try:
            return self.storage.put_stream(key, chunks())
        except StorageError as failure:
            raise TransientError(f"could not store {key}: {failure}") from failure


def _not_ready(response: httpx.Response) -> bool:
    reason = response.headers.get("x-cld-error", "")
    return response.status_code == 423 or (response.status_code == 400 and bool(_NOT_READY.search(reason)))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify(status: int | None, message: str, *, retry_after: float | None = None) -> ProviderError:
    """The error class for a Cloudinary answer with HTTP ``status``."""
    detail = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status in (401, 403):
        return PermanentError(f"Cloudinary refused the account's credentials ({detail}); {_CREDENTIALS_HINT}")
    if status in (420, 429):
        return TransientError(f"Cloudinary rate limit reached ({detail})", retry_after=retry_after)
    if status == 404:
        return TransientError(f"Cloudinary does not have the file (yet) ({detail})", retry_after=retry_after)
    if status is None or status >= 500 or status in (408, 423):
        return TransientError(f"Cloudinary is unavailable ({detail})", retry_after=retry_after)
    if status == 400 and _TOO_LARGE.search(message):
        return MediaError(
            f"The video is larger than our video service accepts (Cloudinary: {message}). "
            "Please upload a shorter or smaller recording."
        )
    if status == 400 and _UNUSABLE_MEDIA.search(message):
        return MediaError(
            f"The uploaded file could not be read as a video (Cloudinary: {message}). "
            "Please upload a playable video file such as MP4, MOV or WebM."
        )
    return PermanentError(f"Cloudinary refused the request ({detail})")


def _from_sdk_error(failure: cloudinary.exceptions.Error) -> ProviderError:
    message = str(failure)
    status = _STATUS_IN_MESSAGE.search(message)
    if status:  # a non-JSON answer, e.g. a proxy's HTML 502 page
        return classify(int(status.group(1)), message[:200])
    if isinstance(failure, cloudinary.exceptions.AuthorizationRequired):
        return classify(401, message)
    if isinstance(failure, cloudinary.exceptions.NotAllowed):
        return classify(403, message)
    if isinstance(failure, cloudinary.exceptions.RateLimited):
        return classify(429, message)
    if isinstance(failure, cloudinary.exceptions.BadRequest):
        return classify(400, message)
    return TransientError(f"Cloudinary could not be reached: {message[:300]}")


class _Progress:
    """Maps a sub-task's 0..1 onto a slice of the step's percentage."""

    def __init__(self, context: StepContext) -> None:
        self.context = context

    def slice(self, start: float, end: float, detail: str) -> Callable[[float], None]:
        return lambda share: self.context.report(start + (end - start) * share, detail)


def _public_id(config: CloudinaryConfig, job: StepJob) -> str:
    return f"{config.folder.strip('/')}/{job.owner_id}/{job.queue_id}"


AUDIO_ASSET_SUFFIX = "-audio"
"""The audio step's own upload of the original (when compress's asset is not there yet: the steps
run side by side) gets its own public id, so the two uploads never overwrite each other."""


def _download_source(storage: Storage, job: StepJob, folder: Path) -> Path:
    source = job.options.get("source")
    if not source:
        raise PermanentError(f"the {job.step} step needs options['source'] (the original's storage key)")
    destination = folder / f"original{Path(source).suffix}"
    try:
        return storage.download(source, destination)
    except ArtifactNotFound as missing:
        raise PermanentError("The uploaded video is no longer in storage; please upload it again.") from missing
    except StorageError as failure:
        raise TransientError(f"could not read {source} from storage: {failure}") from failure


def _capped(width: Any, height: Any, max_height: int) -> tuple[int | None, int | None]:
    """Dimensions after ``c_limit,h_<max_height>`` when Cloudinary did not report them."""
    if not isinstance(width, int) or not isinstance(height, int) or height <= max_height:
        return (width if isinstance(width, int) else None), (height if isinstance(height, int) else None)
    return round(width * max_height / height / 2) * 2, max_height


class _CloudinaryStep:
    """A step done on Cloudinary: the storage it reads and writes, and the client of the account."""

    name = "cloudinary"

    def __init__(self, storage: Storage, config: CloudinaryConfig) -> None:
        self.storage = storage
        self.config = config
        self.client = CloudinaryClient(config, storage)


def _recording_without_picture(source: Path) -> MediaInfo | None:
    """What ffprobe finds in ``source`` when it is sound without picture; None otherwise, and when
    ffprobe cannot tell (an unreadable file is then Cloudinary's to judge, with its own words).
    A readable file with neither picture nor sound (only subtitles, say) fails here, with that reason."""
    try:
        info = probe(source)
    except MediaError:
        return None
    except PermanentError as missing:  # ffprobe is not installed: Cloudinary decides, as before
        logger.warning("could not look for a picture in %s before the upload: %s", source.name, missing)
        return None
    if not info.has_video and not info.has_audio and info.image_kind is None:
        raise MediaError(NEITHER_PICTURE_NOR_SOUND)
    return info if sound_without_picture(info) else None


class CloudinaryCompressor(_CloudinaryStep):
    """Step ``compress`` on Cloudinary: 720p-capped H.264/AAC MP4 of the original.

    The original is probed here first (the step has the file): one with sound but no picture (a
    voice memo saved as ``.mp4``) is not sent to Cloudinary to be made a video; the step completes
    with outputs that say the original plays as uploaded
    (:func:`~handlers.providers.recordings.played_as_recorded`), and ``audio-convert`` uploads it
    for its sound as it does for an audio recording.
    """

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        progress = _Progress(context)
        video = self.config.video_transformation()
        eager = [eager_entry(video, VIDEO_FORMAT), eager_entry(AUDIO_TRANSFORMATION, AUDIO_FORMAT)]
        with tempfile.TemporaryDirectory(prefix="vidpipe-cloudinary-") as folder:
            context.report(1, "reading the original")
            source = _download_source(self.storage, job, Path(folder))
            source_size = source.stat().st_size
            recording = _recording_without_picture(source)
            if recording is not None:
                logger.info("queue %s: the upload has sound but no picture; it plays as uploaded", job.queue_id)
                return StepResult(outputs=played_as_recorded(recording), provider=self.name)
            uploaded = self.client.upload(
                source, _public_id(self.config, job), eager, context, progress.slice(5, 60, "uploading to Cloudinary")
            )
        public_id, version = uploaded["public_id"], uploaded["version"]
        url = self.config.delivery_url(public_id, version, video, VIDEO_FORMAT)
        key = artifact_key(job.owner_id, job.queue_id, "compressed")
        stored = self.client.fetch(url, key, context, progress.slice(60, 100, "downloading the compressed video"))
        derived = next((e for e in uploaded.get("eager", []) if e.get("width") and e.get("height")), None)
        width, height = (
            (derived["width"], derived["height"])
            if derived
            else _capped(uploaded.get("width"), uploaded.get("height"), self.config.max_height)
        )
        return StepResult(
            outputs={
                "video": stored.key,
                "duration_seconds": uploaded.get("duration"),
                "width": width,
                "height": height,
                "size_bytes": stored.size,
                "source_size_bytes": source_size,
                "cloudinary_public_id": public_id,
                "cloudinary_version": version,
            },
            provider=self.name,
        )


class CloudinaryAudioConverter(_CloudinaryStep):
    """Step ``audio-convert`` on Cloudinary: the Vorbis/16 kHz ogg audio derivative of the lecture.

    Uses the asset the compress step uploaded (``inputs["compress"]["cloudinary_public_id"]``)
    when compress has completed; otherwise (it runs beside this step, ran elsewhere, or the queue
    has none) uploads the original itself with only the audio derivation, under its own public id
    (``…/<queue>-audio``).
    """

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        progress = _Progress(context)
        compressed = job.inputs.get("compress", {})
        public_id, version = compressed.get("cloudinary_public_id"), compressed.get("cloudinary_version")
        duration = compressed.get("duration_seconds")
        fetch_from = 5.0
        if not (public_id and version):
            with tempfile.TemporaryDirectory(prefix="vidpipe-cloudinary-") as folder:
                source = _download_source(self.storage, job, Path(folder))
                uploaded = self.client.upload(
                    source,
                    _public_id(self.config, job) + AUDIO_ASSET_SUFFIX,
                    [eager_entry(AUDIO_TRANSFORMATION, AUDIO_FORMAT)],
                    context,
                    progress.slice(5, 50, "uploading to Cloudinary"),
                )
            public_id, version, duration = uploaded["public_id"], uploaded["version"], uploaded.get("duration")
            fetch_from = 50.0
        url = self.config.delivery_url(public_id, version, AUDIO_TRANSFORMATION, AUDIO_FORMAT)
        key = artifact_key(job.owner_id, job.queue_id, "audio")
        stored = self.client.fetch(url, key, context, progress.slice(fetch_from, 100, "downloading the audio"))
        return StepResult(
            outputs={
                "audio": stored.key,
                "format": AUDIO_FORMAT,
                "codec": AUDIO_TRANSFORMATION["audio_codec"],
                "sample_rate": AUDIO_TRANSFORMATION["audio_frequency"],
                "duration_seconds": duration,
                "size_bytes": stored.size,
                "cloudinary_public_id": public_id,
            },
            provider=self.name,
        )


class CloudinaryAssets:
    """A deleted lecture's assets on Cloudinary (compress's, and audio-convert's own upload), destroyed."""

    def __init__(self, config: CloudinaryConfig) -> None:
        self.config = config
        self.client = CloudinaryClient(config, storage=None)  # type: ignore[arg-type] - destroy stores nothing

    def destroy_lecture(self, owner_id: str, queue_id: str) -> bool:
        """Destroy ``<folder>/<owner>/<queue>`` and ``…-audio``; False when Cloudinary has neither."""
        public_id = f"{self.config.folder.strip('/')}/{owner_id}/{queue_id}"
        destroyed = [self.client.destroy(p) for p in (public_id, public_id + AUDIO_ASSET_SUFFIX)]
        return any(destroyed)
