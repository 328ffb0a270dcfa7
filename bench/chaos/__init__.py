"""Fault injection (``make chaos``): the service keeps its promises when
processes die, servers sleep, the database restarts and many tutors upload at once.

Every scenario runs on Postgres against real processes (:class:`~bench.chaos.harness.ChaosStack`:
the processes ``make run`` starts) and ends with the same invariant checks
(:func:`~bench.chaos.harness.check_invariants`): every queue is ``completed``,
``failed`` with a reason or ``cancelled``; no step has more than one
``StepCompleted``; the projections equal a rebuild from event 0; no artifact of
a completed queue is missing from storage; no ffmpeg started by the run is left.

Each scenario is a module with ``NAME`` and ``run(database_url, workdir, *,
reduced) -> row``; ``reduced=True`` is the smaller form ``make test`` runs.
A row holds the invariant counts plus ``server_errors`` (5xx answers public
clients saw), ``recovery_seconds``, ``details`` and ``problems`` (anything the
scenario itself found wrong; empty when it kept its promises).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# key (for --only) -> module, in the order the table shows them; imported when run
SCENARIOS = {
    "deaths": "bench.chaos.deaths",
    "qstash-restart": "bench.chaos.qstash_restart",
    "postgres-restart": "bench.chaos.postgres_restart",
    "model-servers": "bench.chaos.model_servers",
    "load": "bench.chaos.load",
    "flow-control": "bench.chaos.flow_control",
    "bad-input": "bench.chaos.bad_input",
    "storage-sweep": "bench.chaos.storage_sweep",
    "long-outage": "bench.chaos.long_outage",
    "follower-failover": "bench.chaos.follower_failover",
}


def scenario(key: str) -> ModuleType:
    return importlib.import_module(SCENARIOS[key])
