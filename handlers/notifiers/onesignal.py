"""Pushes through OneSignal's REST API with the official ``onesignal-sdk`` client.

The SDK posts to ``<api root>/notifications`` with ``Authorization: Basic <REST
API key>``; the target is the owner's external user id (the frontend calls
``OneSignal.login(<user id>)``), so no device ids are stored here.
"""

from __future__ import annotations

import logging

import httpx
from onesignal_sdk.client import Client
from onesignal_sdk.error import OneSignalHTTPError

from handlers.notifiers import PushFailed, PushMessage, PushReceipt, PushRefused

logger = logging.getLogger(__name__)


class OneSignalNotifier:
    name = "onesignal"

    def __init__(self, app_id: str, rest_api_key: str, api_url: str) -> None:
        self.client = Client(app_id=app_id, rest_api_key=rest_api_key, options={"API_ROOT": api_url.rstrip("/")})

    def body(self, message: PushMessage) -> dict[str, object]:
        return {
            "target_channel": "push",
            "include_aliases": {"external_id": [message.external_user_id]},
            "headings": {"en": message.heading},
            "contents": {"en": message.text},
            "data": message.data,
        }

    def send(self, message: PushMessage) -> PushReceipt:
        try:
            response = self.client.send_notification(self.body(message))
        except OneSignalHTTPError as error:
            status = error.status_code
            text = f"OneSignal answered {status}: {error.message}"
            if status >= 500 or status == 429:
                raise PushFailed(text) from None
            raise PushRefused(text) from None
        except (httpx.HTTPError, ValueError) as error:
            # unreachable, timed out, or an answer that is not JSON (a proxy's error page)
            raise PushFailed(f"OneSignal unreachable: {type(error).__name__}: {error}") from None
        body = response.body if isinstance(response.body, dict) else {}
        errors = body.get("errors")
        if errors:
            # 200 with errors: typically "All included players are not subscribed"
            return PushReceipt(provider_id=body.get("id") or None, detail=f"accepted with errors: {errors}")
        return PushReceipt(provider_id=body.get("id") or None)
