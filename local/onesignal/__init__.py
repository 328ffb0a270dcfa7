"""A local stand-in for OneSignal's REST API: the part ``onesignal-sdk`` uses to push.

``POST /api/v1/notifications`` (create), ``GET /api/v1/notifications/{id}`` and
``GET /api/v1/notifications`` (view), with OneSignal's authentication
(``Authorization: Basic|Key <REST API key>``), app id check, validation of
content and targeting, and its error shape ``{"errors": [...]}``. Pushes are
kept in memory and go nowhere. Used by the tests and by ``python -m
local.onesignal`` in development (set ``ONESIGNAL_API_URL`` to it).
"""

from local.onesignal.app import create_app
from local.onesignal.settings import Settings

__all__ = ["Settings", "create_app"]
