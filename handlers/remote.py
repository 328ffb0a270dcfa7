"""What every client of a remote model server shares: waking it, closing it."""

from __future__ import annotations

import logging
from typing import Self

import httpx

from handlers.http_errors import RemoteServer

logger = logging.getLogger(__name__)


class RemoteClient:
    """Base of the Whisper and embedding clients (``_http`` and ``server`` set by their :meth:`_connect`)."""

    _http: httpx.Client
    server: RemoteServer
    ping_fallback_path = "/v1/models"
    """Asked when the server has no ``/health``."""

    def _connect(self, server: RemoteServer, *, api_key: str | None, timeout: float, connect_timeout: float,
                 transport: httpx.BaseTransport | None) -> None:
        """Set ``server`` and the HTTP client to its URL (a bearer ``api_key`` when one is given)."""
        self.server = server
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=server.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )

    def ping(self, timeout: float = 5.0) -> bool:
        """A cheap request that wakes a sleeping server; True if it answered healthy. Never raises."""
        try:
            response = self._http.get("/health", timeout=timeout)
            if response.status_code == 404:
                response = self._http.get(self.ping_fallback_path, timeout=timeout)
        except Exception:  # noqa: BLE001 - waking is best effort
            logger.debug("ping of %s failed", self.server, exc_info=True)
            return False
        return response.is_success

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
