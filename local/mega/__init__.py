"""A fake MEGA server on loopback: the unmodified ``mega`` client (mega.py-v2) works against it.

It speaks the parts of MEGA's protocol the client uses, with MEGA's own
cryptography on the account side: the JSON-RPC ``/cs`` API (prelogin and
login with real key derivation and RSA-encrypted session ids, listing, upload
and download URLs, folders, delete, move), and transfer URLs that take and
serve the client-side AES-CTR encrypted bytes, kept on disk as they came. Build
it with ``create_app(Settings(...))`` or run ``python -m local.mega``; point a
client at it with ``MEGA_API_URL=http://127.0.0.1:8090`` (see
``handlers.storage.mega``).
"""

from local.mega.app import FakeMega, create_app
from local.mega.settings import Settings

__all__ = ["FakeMega", "Settings", "create_app"]
