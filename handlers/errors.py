"""Why a step's work failed, and whether trying again could help.

    VidpipeError
    ├── ProviderError            a provider (ffmpeg, Cloudinary, a model server, storage) failed
    │   ├── TransientError       sleep, 5xx, timeout, refused connection: retry later
    │   │   └── ServerSleeping   the server said it is loading/asleep (503 + estimated_time)
    │   └── PermanentError       4xx input error, bad credentials, unsupported media: fail now
    │       └── MediaError       the upload itself is unusable (not a video, no audio, too long)
    └── StepCancelled            the tutor cancelled while the step ran

Every message is written for the person who will read it: a tutor for
``PermanentError``/``MediaError`` (it ends up as the queue's error), an operator
for the transient ones (they end up in ``StepRetried.reason``).
"""

from __future__ import annotations

from domain.errors import VidpipeError


class ProviderError(VidpipeError):
    """A provider failed; ``transient`` says whether a later attempt may succeed."""

    transient: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """The server's own hint (Retry-After, estimated_time), in seconds."""


class TransientError(ProviderError):
    transient = True


class ServerSleeping(TransientError):
    """The model server is asleep or loading; ``retry_after`` is its estimate."""


class PermanentError(ProviderError):
    transient = False


class MediaError(PermanentError):
    """The uploaded media cannot be processed; the message tells the tutor why."""


class StepCancelled(VidpipeError):
    """The queue was cancelled while the step was running."""
