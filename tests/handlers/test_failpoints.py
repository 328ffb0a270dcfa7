"""Failpoints: parsing ``VIDPIPE_FAILPOINTS`` and dying where armed (in a child process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.failpoints import ENV_VAR, Arming, FailpointConfigError, parse

ROOT = Path(__file__).resolve().parents[2]


def test_parse_probabilities_and_hit_numbers() -> None:
    armed = parse(" step.after_completed=0.2, upload.after_store=@3 ,projection.in_transaction=1,")
    assert armed == {
        "step.after_completed": Arming(probability=0.2),
        "upload.after_store": Arming(nth=3),
        "projection.in_transaction": Arming(probability=1.0),
    }
    assert parse("") == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("step.after_completed", "not name=probability or name=@N"),
        ("step.after_completed=", "not name=probability or name=@N"),
        ("=0.5", "not name=probability or name=@N"),
        ("step.after_complete=0.5", "unknown failpoint 'step.after_complete'"),
        ("step.after_completed=often", "'often' is not a probability"),
        ("step.after_completed=1.5", "between 0 and 1"),
        ("step.after_completed=nan", "between 0 and 1"),
        ("step.after_completed=@0", "the hit number, 1 or more"),
        ("step.after_completed=@x", "the hit number, 1 or more"),
        ("step.after_completed=0.1,step.after_completed=@1", "armed twice"),
    ],
)
def test_malformed_values_are_refused_with_the_entry_named(value: str, message: str) -> None:
    with pytest.raises(FailpointConfigError, match=ENV_VAR) as raised:
        parse(value)
    assert message in str(raised.value)


def _hits(value: str | None, hits: int) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter passes ``upload.after_store`` ``hits`` times, printing each pass."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if value is not None:
        env[ENV_VAR] = value
    code = (
        "from handlers.failpoints import failpoint\n"
        f"for i in range({hits}):\n"
        "    failpoint('upload.after_store')\n"
        "    print('passed', i + 1, flush=True)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_unset_or_other_failpoints_never_fire() -> None:
    for value in (None, "", "step.after_completed=1"):
        done = _hits(value, 5)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[-2] == "passed 5"


def test_the_nth_hit_kills_the_process_with_sigkill_and_says_so() -> None:
    done = _hits("upload.after_store=@3", 5)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["passed", "1", "passed", "2"]
    assert "vidpipe failpoint upload.after_store fired: SIGKILL pid" in done.stderr


def test_probability_one_fires_at_the_first_hit_and_zero_never() -> None:
    assert _hits("upload.after_store=1", 3).returncode == -signal.SIGKILL
    assert _hits("upload.after_store=1", 3).stdout == ""
    assert _hits("upload.after_store=0", 3).returncode == 0


def test_the_api_refuses_to_start_with_a_malformed_value(tmp_path: Path) -> None:
    env = {**os.environ, ENV_VAR: "step.after_completed=sometimes", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    done = subprocess.run([sys.executable, "-m", "api"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "configuration error" in done.stderr and "'sometimes' is not a probability" in done.stderr
