"""The local Cloudinary-compatible server (``local.cloudinary``), driven by the official SDK.

Parts of Cloudinary's API the server covers (and these tests exercise):
- Upload API ``POST /v1_1/<cloud>/video/upload``: multipart ``file``, whole or
  chunked (``X-Unique-Upload-Id`` + ``Content-Range``, as ``upload_large``
  sends), signed parameters (SHA-1/SHA-256 of the sorted params + api_secret,
  stale timestamps refused), ``public_id``/``folder``/``overwrite``, the
  response fields (public_id, version, signature, secure_url, duration,
  bytes, format, width, height, audio, video, eager[]);
- eager transformations performed with ffmpeg, inline or ``eager_async``:
  ``c_limit``/``c_scale`` with ``w_``/``h_``, ``vc_h264``, ``ac_aac|opus|mp3|vorbis``,
  ``af_<Hz>``, ``q_auto[:level]``/``q_<n>`` (a CRF), ``br_``; formats mp4, mp3, ogg, m4a, wav;
- errors as Cloudinary sends them: 401 JSON for a bad signature, key, cloud or
  stale timestamp; 400 ``Invalid video file`` for undecodable uploads; 400
  ``Invalid transformation component`` outside that subset;
- delivery URLs ``/<cloud>/video/upload/<transformation>/v<version>/<public_id>.<format>``
  (as ``cloudinary.utils.cloudinary_url`` builds them): originals, eager
  results, on-the-fly derivations of small originals, 423 while an async
  derivation runs, ``X-Cld-Error`` on failures;
- an outage switch (503 + ``Retry-After`` for the next N requests) and
  ``python -m local.cloudinary``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudinary.exceptions
import cloudinary.uploader
import cloudinary.utils
import httpx
import pytest
from tests.local.cloudinary_support import API_KEY, API_SECRET, CLOUD, make_png, make_video, server_settings, streams

from local.cloudinary.threaded import ThreadedCloudinary
from tests.support import wait_until

VIDEO_720 = {"crop": "limit", "height": 720, "video_codec": "h264", "audio_codec": "aac", "quality": "auto"}
AUDIO_16K = {"audio_codec": "vorbis", "audio_frequency": 16000}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "lecture.mp4")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedCloudinary]:
    with ThreadedCloudinary(server_settings(tmp_path / "cloudinary")) as running:
        yield running


def sdk(server: ThreadedCloudinary, **overrides: Any) -> dict[str, Any]:
    """Explicit SDK options pointing at the local server (no global config)."""
    options: dict[str, Any] = {
        "cloud_name": CLOUD,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "upload_prefix": server.url,
        "resource_type": "video",
    }
    return {**options, **overrides}


def delivery(server: ThreadedCloudinary, public_id: str, version: int, fmt: str, **transformation: Any) -> str:
    url, _ = cloudinary.utils.cloudinary_url(
        public_id,
        resource_type="video",
        version=version,
        format=fmt,
        cloud_name=CLOUD,
        secure=False,
        cname=f"127.0.0.1:{server.port}",
        **transformation,
    )
    return str(url)


def fetch(url: str, target: Path) -> Path:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, (response.status_code, response.headers.get("x-cld-error"))
    target.write_bytes(response.content)
    return target


def test_chunked_upload_with_eager_video_and_audio(server: ThreadedCloudinary, video: Path, tmp_path: Path) -> None:
    result = cloudinary.uploader.upload_large(
        str(video),
        public_id="lectures/one",
        chunk_size=256 * 1024,
        eager=[{**VIDEO_720, "format": "mp4"}, {**AUDIO_16K, "format": "ogg"}],
        **sdk(server),
    )
    assert video.stat().st_size > 3 * 256 * 1024, "the upload should take several chunks"
    assert result["public_id"] == "lectures/one"
    assert (result["width"], result["height"], result["format"]) == (1920, 1080, "mp4")
    assert result["bytes"] == video.stat().st_size
    assert result["duration"] == pytest.approx(2, abs=0.1)
    expected = hashlib.sha1(f"public_id=lectures/one&version={result['version']}{API_SECRET}".encode()).hexdigest()
    assert result["signature"] == expected
    compressed, audio = result["eager"]
    assert compressed["transformation"] == "ac_aac,c_limit,h_720,q_auto,vc_h264/mp4"
    assert (compressed["width"], compressed["height"]) == (1280, 720)
    assert compressed["secure_url"] == delivery(server, "lectures/one", result["version"], "mp4", **VIDEO_720)

    mp4 = streams(fetch(compressed["secure_url"], tmp_path / "out.mp4"))
    assert (mp4["video"]["codec_name"], mp4["video"]["height"], mp4["audio"]["codec_name"]) == ("h264", 720, "aac")
    ogg = streams(fetch(delivery(server, "lectures/one", result["version"], "ogg", **AUDIO_16K), tmp_path / "a.ogg"))
    assert "video" not in ogg
    assert (ogg["audio"]["codec_name"], ogg["audio"]["sample_rate"], ogg["audio"]["channels"]) == ("vorbis", "16000", 1)

    original = httpx.get(result["secure_url"])
    assert original.status_code == 200 and original.content == video.read_bytes()


def test_single_upload_gets_a_generated_public_id_in_its_folder(server: ThreadedCloudinary, video: Path) -> None:
    result = cloudinary.uploader.upload(str(video), folder="tutors", **sdk(server))
    folder, _, name = result["public_id"].partition("/")
    assert folder == "tutors" and len(name) == 20
    assert "eager" not in result
    again = cloudinary.uploader.upload(str(video), public_id=name, folder="tutors", **sdk(server))
    assert again["public_id"] == result["public_id"]
    assert again["version"] > result["version"], "an overwrite is a new version"
    chunked = cloudinary.uploader.upload_large(
        str(video), public_id=name, folder="tutors", chunk_size=512 * 1024, **sdk(server)
    )
    assert chunked["public_id"] == result["public_id"]


def test_sha256_signatures_are_accepted(server: ThreadedCloudinary, video: Path) -> None:
    result = cloudinary.uploader.upload(str(video), public_id="sha", **sdk(server, signature_algorithm="sha256"))
    assert result["public_id"] == "sha"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_secret": "wrong"}, "Invalid Signature"),
        ({"api_key": "999"}, "Unknown API key 999"),
        ({"cloud_name": "someone-else"}, "Invalid cloud_name someone-else"),
    ],
)
def test_bad_credentials_answer_401(
    server: ThreadedCloudinary, video: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(cloudinary.exceptions.AuthorizationRequired, match=message):
        cloudinary.uploader.upload(str(video), **sdk(server, **overrides))


def test_stale_timestamps_answer_401(server: ThreadedCloudinary, video: Path) -> None:
    params = {"timestamp": str(int(time.time()) - 7200), "public_id": "old"}
    signed = {**params, "api_key": API_KEY, "signature": cloudinary.utils.api_sign_request(params, API_SECRET)}
    response = httpx.post(
        f"{server.url}/v1_1/{CLOUD}/video/upload", data=signed, files={"file": ("v.mp4", video.read_bytes())}
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("Stale request")


def test_a_png_named_mp4_is_an_invalid_video_file(server: ThreadedCloudinary, tmp_path: Path) -> None:
    fake = make_png(tmp_path / "slide.png").rename(tmp_path / "slide.mp4")
    with pytest.raises(cloudinary.exceptions.BadRequest, match="Invalid video file"):
        cloudinary.uploader.upload_large(str(fake), **sdk(server))
    response = cloudinary.uploader.upload(str(fake), return_error=True, **sdk(server))
    assert response["error"]["http_code"] == 400


def test_unsupported_transformation_is_refused_before_storing(server: ThreadedCloudinary, video: Path) -> None:
    with pytest.raises(cloudinary.exceptions.BadRequest, match="Invalid transformation component - e_sepia"):
        sepia = [{"effect": "sepia", "format": "mp4"}]
        cloudinary.uploader.upload(str(video), public_id="sepia", eager=sepia, **sdk(server))
    assert httpx.get(delivery(server, "sepia", 1, "mp4")).status_code == 404


def test_eager_async_answers_423_until_the_derivation_is_ready(
    server: ThreadedCloudinary, video: Path, tmp_path: Path
) -> None:
    result = cloudinary.uploader.upload(
        str(video), public_id="async", eager=[{**VIDEO_720, "format": "mp4"}], eager_async=True, **sdk(server)
    )
    (entry,) = result["eager"]
    assert entry["status"] == "processing" and entry["batch_id"]
    statuses = []

    def ready() -> bool:
        response = httpx.get(entry["secure_url"])
        statuses.append(response.status_code)
        return response.status_code == 200

    wait_until(ready, 30, "async derivation")
    assert set(statuses) <= {423, 200}
    assert streams(fetch(entry["secure_url"], tmp_path / "async.mp4"))["video"]["height"] == 720


def test_delivery_derives_small_originals_on_the_fly(server: ThreadedCloudinary, video: Path, tmp_path: Path) -> None:
    result = cloudinary.uploader.upload(str(video), public_id="lazy", **sdk(server))
    url = delivery(server, "lazy", result["version"], "mp3", audio_codec="mp3", audio_frequency=22050)
    mp3 = streams(fetch(url, tmp_path / "lazy.mp3"))
    assert (mp3["audio"]["codec_name"], mp3["audio"]["sample_rate"]) == ("mp3", "22050")


def test_delivery_refuses_large_originals_without_eager(tmp_path: Path, video: Path) -> None:
    settings = server_settings(tmp_path / "cloudinary", max_sync_transform_bytes=1000)
    with ThreadedCloudinary(settings) as server:
        result = cloudinary.uploader.upload(str(video), public_id="big", **sdk(server))
        response = httpx.get(delivery(server, "big", result["version"], "mp4", **VIDEO_720))
    assert response.status_code == 400
    assert "too large to process synchronously" in response.headers["x-cld-error"]


def test_delivery_of_unknown_assets_and_transformations(server: ThreadedCloudinary, video: Path) -> None:
    missing = httpx.get(delivery(server, "nothing/here", 1, "mp4"))
    assert missing.status_code == 404 and "Resource not found" in missing.headers["x-cld-error"]
    result = cloudinary.uploader.upload(str(video), public_id="known", **sdk(server))
    odd = httpx.get(delivery(server, "known", result["version"], "mp4", effect="sepia"))
    assert odd.status_code == 400 and "Invalid transformation component" in odd.headers["x-cld-error"]


def test_outage_switch_answers_503_for_the_next_requests(server: ThreadedCloudinary, video: Path) -> None:
    assert httpx.post(f"{server.url}/_local/outage", params={"requests": 2}).json() == {"outage_requests": 2}
    first = cloudinary.uploader.upload(str(video), return_error=True, **sdk(server))
    assert first["error"]["http_code"] == 503
    down = httpx.get(delivery(server, "any", 1, "mp4"))
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert cloudinary.uploader.upload(str(video), public_id="back", **sdk(server))["public_id"] == "back"


def test_runs_as_a_module(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {**os.environ, "CLOUDINARY_URL": f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.cloudinary", "--port", str(port), "--data-dir", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/_local/health").json()["cloud_name"] == CLOUD
            except httpx.TransportError:
                return False

        wait_until(healthy, 20, "python -m local.cloudinary")
    finally:
        process.terminate()
        process.wait(10)
