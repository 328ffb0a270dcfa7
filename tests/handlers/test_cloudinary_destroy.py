"""A deleted lecture's asset on Cloudinary is destroyed (the SDK's ``destroy`` against the local server)."""

from __future__ import annotations

import httpx
import pytest

from handlers.errors import PermanentError
from handlers.providers.cloudinary import CloudinaryAssets, CloudinaryAudioConverter, CloudinaryCompressor
from local.cloudinary.threaded import ThreadedCloudinary
from tests.handlers.test_cloudinary_providers import (  # noqa: F401 - fixtures
    OWNER,
    QUEUE,
    Progress,
    config_for,
    job_for,
    server,
    video,
)


def test_destroy_removes_the_asset_and_its_derived_files(server, storage, video) -> None:  # noqa: F811
    config = config_for(server, eager_async=False)
    outputs = CloudinaryCompressor(storage, config).run(job_for(storage, video), Progress().context).outputs
    original = f"{server.url}/{config.cloud_name}/video/upload/v{outputs['cloudinary_version']}/{outputs['cloudinary_public_id']}.mp4"
    assert httpx.get(original).status_code == 200

    assert CloudinaryAssets(config).destroy_lecture(OWNER, QUEUE) is True

    assert httpx.get(original).status_code == 404
    assert CloudinaryAssets(config).destroy_lecture(OWNER, QUEUE) is False  # nothing left: "not found"


def test_destroy_removes_the_audio_steps_own_asset_too(server, storage, video) -> None:  # noqa: F811
    config = config_for(server, eager_async=False)
    outputs = CloudinaryAudioConverter(storage, config).run(
        job_for(storage, video, "audio-convert"), Progress().context).outputs
    assert outputs["cloudinary_public_id"].endswith("-audio")
    assert CloudinaryAssets(config).destroy_lecture(OWNER, QUEUE) is True
    assert CloudinaryAssets(config).destroy_lecture(OWNER, QUEUE) is False


def test_destroy_with_bad_credentials_is_permanent(server: ThreadedCloudinary) -> None:  # noqa: F811
    with pytest.raises(PermanentError, match="CLOUDINARY_URL"):
        CloudinaryAssets(config_for(server, api_secret="wrong")).destroy_lecture(OWNER, QUEUE)
