"""The simulated provider's scripted failures, which the chaos scenarios rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.providers import build_step_providers
from api.settings import Settings
from handlers.errors import TransientError
from handlers.providers.simulated import SimulatedProvider
from handlers.steps import StepContext, StepJob
from handlers.storage.local import LocalStorage


def job(attempt: int) -> StepJob:
    return StepJob(queue_id="q", owner_id="tutor", attachment_id="a", step="compress",
                   attempt=attempt, options={}, inputs={})


def test_failing_attempts_fail_by_attempt_number_not_by_call_count() -> None:
    provider = SimulatedProvider(failing_attempts=2)
    context = StepContext(lambda percent, detail: None)
    for _ in range(2):  # the same early attempt fails however often it is run (a restarted process)
        with pytest.raises(TransientError, match="attempt 1"):
            provider.run(job(1), context)
    with pytest.raises(TransientError, match="attempt 2"):
        provider.run(job(2), context)
    assert provider.run(job(3), context).outputs == {"artifact": "tutor/q/compress"}


def test_the_setting_scripts_every_simulated_step(tmp_path: Path) -> None:
    settings = Settings(VIDPIPE_STEP_PROVIDERS="simulated", VIDPIPE_SIMULATED_TRANSIENT_FAILURES=1)
    providers = build_step_providers(settings, LocalStorage(tmp_path), view=None)  # type: ignore[arg-type]
    assert {step: p.failing_attempts for step, p in providers.items()} == {  # type: ignore[attr-defined]
        "compress": 1, "audio-convert": 1, "transcribe": 1, "embed": 1}
