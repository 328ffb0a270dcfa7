"""Errors the REST API answers with QStash's shape: ``{"error": "<message>"}``."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error for the caller, with a message saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
