"""A QStash-compatible local server: the official SDK and ``qstash.Receiver`` work against it.

See ``/work/shared/contracts/qstash.md`` for the wire contract and
``local/qstash/README.md`` for which official SDK call is supported. Build the app
with ``create_app(Settings(...))`` or run ``python -m local.qstash``.
"""

from local.qstash.app import create_app
from local.qstash.settings import Settings

__all__ = ["Settings", "create_app"]
