"""The Cloudinary-compatible Upload API and delivery URLs: ``create_app(settings)``.

Routes:

- ``POST /v1_1/<cloud>/video/upload`` — multipart ``file`` plus signed
  parameters, whole or in chunks (``X-Unique-Upload-Id`` and
  ``Content-Range: bytes a-b/total`` on every part, as the SDK's
  ``upload_large`` sends them). Unfinished chunks answer ``{"done": false}``;
  the last one answers like a single upload: ``public_id``, ``version``,
  ``secure_url``, ``duration``, ``bytes``, ``format``, ``width``, ``height``,
  ``audio``, ``video``, ``eager`` and the rest of Cloudinary's fields.
  ``eager`` transformations run with ffmpeg (see ``transformations``), inline
  or, with ``eager_async``, in the background. Errors are Cloudinary's JSON
  ``{"error": {"message": ...}}``: 401 for a bad key, signature, cloud name
  or a stale timestamp, 400 ``Invalid video file`` for an undecodable upload
  and for transformations outside the supported subset.
- ``GET /<cloud>/video/upload[/<transformation>][/v<version>]/<public_id>.<format>`` —
  delivery: the original, a derived file, or a new derivation made on the
  fly (originals up to ``max_sync_transform_bytes``). A derivation still
  running answers 423; failures carry ``X-Cld-Error`` as Cloudinary's CDN does.
- ``POST /_local/outage?requests=N`` — the outage switch: the next N requests
  (any route but ``/_local``) answer 503 with ``Retry-After``.
- ``GET /_local/health``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from handlers.media import tools
from local.cloudinary import signing
from local.cloudinary.media import InvalidMedia, probe
from local.cloudinary.settings import Settings
from local.cloudinary.store import Asset, AssetStore, StoreError, new_public_id
from local.cloudinary.transformations import CONTENT_TYPES, TransformationError, parse, split_eager

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_VERSION = re.compile(r"^v\d+$")
_TRUE = {"1", "true"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status, headers=headers)


def cdn_error(status: int, message: str) -> Response:
    """Delivery errors: an empty body and the reason in ``X-Cld-Error``, like Cloudinary's CDN."""
    return Response(status_code=status, headers={"X-Cld-Error": message})


class OutageSwitch:
    """How many of the coming requests fail with 503."""

    def __init__(self, requests: int = 0) -> None:
        self._remaining = requests
        self._lock = threading.Lock()

    def set(self, requests: int) -> None:
        with self._lock:
            self._remaining = max(0, requests)

    def take(self) -> bool:
        with self._lock:
            if self._remaining <= 0:
                return False
            self._remaining -= 1
            return True

    @property
    def remaining(self) -> int:
        return self._remaining


class _OutageMiddleware:
    def __init__(self, app: ASGIApp, switch: OutageSwitch, retry_after: int) -> None:
        self.app, self.switch, self.retry_after = app, switch, retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_local") and self.switch.take():
            response = error(
                503,
                "Service Unavailable (local outage switch)",
                {"Retry-After": str(self.retry_after)},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> Starlette:
    """The server as an ASGI app; the asset store opens with its lifespan."""
    switch = OutageSwitch(settings.outage_requests)
    secret = settings.api_secret.get_secret_value()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = AssetStore(
            settings.data_dir / settings.cloud_name,
            ffmpeg=settings.ffmpeg or tools.ffmpeg(),
            preset=settings.x264_preset,
            workers=settings.transform_workers,
        )
        app.state.store = store
        log.info("local Cloudinary: cloud %s, files in %s", settings.cloud_name, settings.data_dir)
        try:
            yield
        finally:
            store.close()

    def base_url(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    def asset_url(request: Request, asset: Asset, transformation: str, format: str) -> str:
        path = "/".join(filter(None, [transformation, f"v{asset.version}", f"{asset.public_id}.{format}"]))
        return f"{base_url(request)}/{settings.cloud_name}/video/upload/{path}"

    async def upload(request: Request) -> Response:
        if request.path_params["cloud"] != settings.cloud_name:
            return error(401, f"Invalid cloud_name {request.path_params['cloud']}")
        if request.path_params["resource_type"] != "video":
            return error(400, "The local Cloudinary server accepts resource_type video only")
        async with request.form(max_files=1, max_fields=200, max_part_size=4 * 1024 * 1024) as form:
            params = _params(form)
            try:
                signing.verify(
                    params, api_key=settings.api_key, api_secret=secret, tolerance_s=settings.timestamp_tolerance_s
                )
            except signing.SignatureError as refused:
                return error(401, str(refused))
            file = form.get("file")
            if not isinstance(file, UploadFile):
                return error(400, "Missing required parameter - file")
            try:
                eager = [(t, f) for t, f in split_eager(_text(params.get("eager")))]
                for transformation, format in eager:
                    if format:
                        parse(transformation, format)
                received = await anyio.to_thread.run_sync(_receive, request, file, params)
            except (StoreError, TransformationError) as refused:
                return error(400, str(refused))
        path, size, public_id = received
        if path is None:
            return JSONResponse({"done": False, "bytes": size, "public_id": public_id})
        return await _finish(request, path, public_id, file.filename or "file", params, eager)

    def _receive(request: Request, file: UploadFile, params: dict[str, Any]) -> tuple[Path | None, int, str]:
        store: AssetStore = request.app.state.store
        public_id = _public_id(params)
        content_range = request.headers.get("content-range")
        upload_id = request.headers.get("x-unique-upload-id")
        if content_range and upload_id:
            match = _CONTENT_RANGE.match(content_range.strip())
            if not match:
                raise StoreError(f"Invalid Content-Range {content_range}")
            start, end, total = map(int, match.groups())
            path, size, fixed = store.write_chunk(upload_id, start, end, total, file.file, public_id)
            return path, size, fixed or public_id
        path = store.incoming_path()
        with path.open("wb") as out:
            while block := file.file.read(1024 * 1024):
                out.write(block)
        return path, path.stat().st_size, public_id

    async def _finish(
        request: Request,
        path: Path,
        public_id: str,
        filename: str,
        params: dict[str, Any],
        eager: list[tuple[str, str | None]],
    ) -> Response:
        store: AssetStore = request.app.state.store
        try:
            facts = await anyio.to_thread.run_sync(
                lambda: probe(path, ffprobe=settings.ffprobe, original_name=filename)
            )
        except InvalidMedia as invalid:
            log.info("refusing upload %s: %s", public_id, invalid)
            path.unlink(missing_ok=True)
            return error(400, "Invalid video file")
        existing = store.get(public_id)
        if existing is not None and _text(params.get("overwrite")) == "0":
            path.unlink(missing_ok=True)
            return JSONResponse({**_asset_json(request, existing), "existing": True})
        asset = await anyio.to_thread.run_sync(
            lambda: store.save(public_id, path, original_filename=Path(filename).stem, probe=facts)
        )
        background = _text(params.get("eager_async")) in _TRUE
        try:
            entries = [await _eager(request, asset, t, f or asset.format, background) for t, f in eager]
        except RuntimeError as failed:
            return error(400, f"Error in eager transformation: {failed}")
        body = _asset_json(request, asset)
        return JSONResponse({**body, "eager": entries} if entries else body)

    async def _eager(
        request: Request, asset: Asset, transformation: str, format: str, background: bool
    ) -> dict[str, Any]:
        store: AssetStore = request.app.state.store
        derivation = parse(transformation, format)
        url = asset_url(request, asset, transformation, format)
        entry: dict[str, Any] = {"transformation": f"{transformation}/{format}", "url": url, "secure_url": url}
        if background:
            store.derive_async(asset, transformation, derivation)
            return {"status": "processing", "batch_id": new_public_id(), **entry}
        derived = await anyio.to_thread.run_sync(store.derive, asset, transformation, derivation)
        facts = await anyio.to_thread.run_sync(lambda: probe(derived, ffprobe=settings.ffprobe))
        return {
            **entry,
            "width": facts.width,
            "height": facts.height,
            "bytes": derived.stat().st_size,
            "duration": facts.duration,
            "format": format,
        }

    def _asset_json(request: Request, asset: Asset) -> dict[str, Any]:
        facts = asset.probe
        url = asset_url(request, asset, "", asset.format)
        body: dict[str, Any] = {
            "asset_id": asset.etag,
            "public_id": asset.public_id,
            "version": asset.version,
            "version_id": signing.response_signature(asset.public_id, asset.version, "")[:32],
            "signature": signing.response_signature(asset.public_id, asset.version, secret),
            "width": facts.width,
            "height": facts.height,
            "format": asset.format,
            "resource_type": "video",
            "created_at": asset.created_at,
            "tags": [],
            "pages": 0,
            "bytes": asset.bytes,
            "type": "upload",
            "etag": asset.etag,
            "placeholder": False,
            "url": url,
            "secure_url": url,
            "audio": facts.audio_json() or {},
            "video": facts.video_json() or {},
            "is_audio": facts.video_codec is None,
            "frame_rate": facts.frame_rate,
            "bit_rate": facts.bit_rate,
            "duration": facts.duration,
            "rotation": 0,
            "original_filename": asset.original_filename,
            "api_key": settings.api_key,
        }
        return body

    async def deliver(request: Request) -> Response:
        if request.path_params["cloud"] != settings.cloud_name:
            return cdn_error(404, f"Invalid cloud_name {request.path_params['cloud']}")
        store: AssetStore = request.app.state.store
        found = _locate(store, request.path_params["path"])
        if found is None:
            return cdn_error(404, f"Resource not found - {request.path_params['path']}")
        asset, transformation, format = found
        format = format or asset.format
        if not transformation and format == asset.format:
            return FileResponse(store.original(asset), media_type=CONTENT_TYPES.get(format))
        try:
            derivation = parse(transformation, format)
        except TransformationError as refused:
            return cdn_error(400, str(refused))
        state, reason = store.derived_state(asset, transformation, format)
        if state == "processing":
            return cdn_error(423, "Video is still being processed, please try again later")
        if state == "failed":
            return cdn_error(400, f"Error in transformation: {reason}")
        if state == "absent" and asset.bytes > settings.max_sync_transform_bytes:
            return cdn_error(
                400,
                "Video is too large to process synchronously, please use an eager transformation "
                "with eager_async=true to resolve",
            )
        try:
            derived = await anyio.to_thread.run_sync(store.derive, asset, transformation, derivation)
        except RuntimeError as failed:
            return cdn_error(400, f"Error in transformation: {failed}")
        return FileResponse(derived, media_type=CONTENT_TYPES[format])

    async def destroy(request: Request) -> Response:
        """The Upload API's ``destroy``: the asset and its derived files go (``{"result": "ok"|"not found"}``)."""
        if request.path_params["cloud"] != settings.cloud_name:
            return error(401, f"Invalid cloud_name {request.path_params['cloud']}")
        async with request.form(max_files=0, max_fields=50) as form:
            params = _params(form)
        try:
            signing.verify(params, api_key=settings.api_key, api_secret=secret, tolerance_s=settings.timestamp_tolerance_s)
        except signing.SignatureError as refused:
            return error(401, str(refused))
        public_id = _text(params.get("public_id"))
        if not public_id:
            return error(400, "Missing required parameter - public_id")
        store: AssetStore = request.app.state.store
        try:
            gone = await anyio.to_thread.run_sync(store.destroy, public_id)
        except StoreError as refused:
            return error(400, str(refused))
        return JSONResponse({"result": "ok" if gone else "not found"})

    async def outage(request: Request) -> Response:
        requests = int(request.query_params.get("requests", "1"))
        switch.set(requests)
        return JSONResponse({"outage_requests": switch.remaining})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "cloud_name": settings.cloud_name})

    app = Starlette(
        routes=[
            Route("/v1_1/{cloud}/{resource_type}/upload", _guard(upload), methods=["POST"]),
            Route("/v1_1/{cloud}/{resource_type}/destroy", _guard(destroy), methods=["POST"]),
            Route("/{cloud}/video/upload/{path:path}", _guard(deliver), methods=["GET", "HEAD"]),
            Route("/_local/outage", outage, methods=["POST"]),
            Route("/_local/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.outage = switch
    app.add_middleware(_OutageMiddleware, switch=switch, retry_after=settings.outage_retry_after)
    return app


def _guard(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Answer unexpected failures with Cloudinary's 500 JSON instead of a bare traceback."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception:
            log.exception("local Cloudinary failed on %s", request.url.path)
            return error(500, "General Error")

    return guarded


def _params(form: FormData) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            continue
        if name.endswith("[]"):
            params.setdefault(name[:-2], []).append(value)
        else:
            params[name] = value
    return params


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _public_id(params: dict[str, Any]) -> str:
    """``<folder>/<public_id>``; a random id when none is given. (Of a chunked upload,
    the first chunk's id counts: later chunks repeat the id the first answer carried.)"""
    public_id = _text(params.get("public_id")) or new_public_id()
    folder = _text(params.get("folder")).strip("/")
    return f"{folder}/{public_id}" if folder else public_id


def _locate(store: AssetStore, path: str) -> tuple[Asset, str, str | None] | None:
    """Split a delivery path into (asset, transformation, format)."""
    segments = [s for s in path.split("/") if s]
    versioned = [i for i, segment in enumerate(segments) if _VERSION.match(segment)]
    splits = [(segments[:i], segments[i + 1 :]) for i in versioned[:1]]
    splits += [(segments[:i], segments[i:]) for i in range(len(segments))]
    for head, tail in splits:
        if not tail:
            continue
        name = "/".join(tail)
        for public_id, format in ((name.rpartition(".")[0], name.rpartition(".")[2]), (name, None)):
            asset = store.get(public_id) if public_id else None
            if asset is not None:
                return asset, "/".join(head), format.lower() if format else None
    return None
