"""Failpoints: named places where a process can be made to die, for fault injection.

The technique of FoundationDB's *buggify* and TiKV's *fail-rs*: the code
marks the moments where a crash is interesting (``failpoint("step.after_completed")``),
and the environment variable ``VIDPIPE_FAILPOINTS`` arms some of them::

    VIDPIPE_FAILPOINTS="step.after_completed=0.2,upload.after_store=@1"

- ``name=P`` (``0 <= P <= 1``): each time the code passes the point, the
  process dies with probability ``P``;
- ``name=@N`` (``N >= 1``): the process dies the ``N``-th time it passes the
  point (once; a restarted process counts afresh).

Dying means ``SIGKILL`` to the own process, so no ``finally``, no shutdown
hook, no flush runs, as when the kernel's OOM killer or a lost machine ends
it. Just before, one line goes to stderr (``vidpipe failpoint <name> fired:
SIGKILL pid <pid>``) so whoever restarts the process can tell why it died.

For fault injection only: never set it in production. Unset (the default),
:func:`failpoint` costs one dictionary lookup on an empty dictionary. The
variable is read once, at the first call (or by :func:`armed` at startup),
and a malformed value raises :class:`FailpointConfigError` naming the entry.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Final

from domain.errors import VidpipeError

ENV_VAR: Final = "VIDPIPE_FAILPOINTS"
NAMES: Final = frozenset({
    "upload.mid_upload",
    "upload.after_store",
    "step.after_completed",
    "dispatcher.before_publish",
    "dispatcher.after_publish",
    "projection.in_transaction",
})
"""Every failpoint the code has; arming another name is a configuration error (a typo would arm nothing)."""


class FailpointConfigError(VidpipeError):
    """``VIDPIPE_FAILPOINTS`` cannot be parsed."""


@dataclass
class Arming:
    """How one failpoint fires: with ``probability`` per hit, or on hit number ``nth``."""

    probability: float = 0.0
    nth: int | None = None
    hits: int = 0


def parse(value: str) -> dict[str, Arming]:
    """``"a=0.5,b=@2"`` → the armed failpoints; raises :class:`FailpointConfigError` on anything else."""
    armed: dict[str, Arming] = {}
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        name, sep, spec = (s.strip() for s in entry.partition("="))
        if not sep or not name or not spec:
            raise FailpointConfigError(f"{ENV_VAR}: {entry!r} is not name=probability or name=@N")
        if name not in NAMES:
            raise FailpointConfigError(f"{ENV_VAR}: unknown failpoint {name!r}; known: {', '.join(sorted(NAMES))}")
        if name in armed:
            raise FailpointConfigError(f"{ENV_VAR}: failpoint {name!r} is armed twice")
        if spec.startswith("@"):
            if not spec[1:].isdigit() or int(spec[1:]) < 1:
                raise FailpointConfigError(f"{ENV_VAR}: {entry!r}: after @ comes the hit number, 1 or more")
            armed[name] = Arming(nth=int(spec[1:]))
            continue
        try:
            probability = float(spec)
        except ValueError:
            raise FailpointConfigError(f"{ENV_VAR}: {entry!r}: {spec!r} is not a probability") from None
        if not 0.0 <= probability <= 1.0:  # also refuses nan
            raise FailpointConfigError(f"{ENV_VAR}: {entry!r}: the probability must be between 0 and 1")
        armed[name] = Arming(probability=probability)
    return armed


_armed: dict[str, Arming] | None = None
_lock = threading.Lock()
_random = random.Random()


def armed() -> dict[str, Arming]:
    """The failpoints armed in this process, read from the environment once (call at startup to fail fast)."""
    global _armed  # noqa: PLW0603 - parsed once per process
    if _armed is None:
        with _lock:
            if _armed is None:
                _armed = parse(os.environ.get(ENV_VAR, ""))
    return _armed


def failpoint(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if ``name`` is armed and its turn has come; else do nothing."""
    arming = (_armed if _armed is not None else armed()).get(name)
    if arming is None:
        return
    with _lock:
        arming.hits += 1
        fire = arming.hits == arming.nth if arming.nth is not None else _random.random() < arming.probability
    if fire:
        sys.stderr.write(f"vidpipe failpoint {name} fired: SIGKILL pid {os.getpid()}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
