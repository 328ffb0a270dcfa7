"""A step message delivered again while its attempt still runs in this process.

QStash redelivers a message whose delivery it lost track of: its own process
was restarted mid-delivery, or the connection dropped. The handler that got the
first delivery is alive and still working; the redelivery must wait for that
work's answer instead of doing the step's work a second time.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from domain import STEPS, VideoProcessing
from handlers.providers.simulated import SimulatedProvider
from handlers.retry import RetryPolicy
from handlers.step_runner import Outcome, StepMessage, StepRunner
from projections.database import DatabaseUrl
from tests.support import wait_until


def test_a_redelivery_while_the_attempt_runs_here_waits_for_it_instead_of_running_it_again(tmp_path: Path) -> None:
    app = VideoProcessing(env=DatabaseUrl.parse(f"sqlite:///{tmp_path}/vidpipe.db").event_store_env())
    compress = SimulatedProvider(seconds=1.0)
    runner = StepRunner(app, {step: compress if step == "compress" else SimulatedProvider() for step in STEPS},
                        RetryPolicy(1, 8, 3), cancel_poll_seconds=0.2)
    try:
        qid = str(app.start_processing("tutor-1", "lecture"))
        message = StepMessage(qid, "compress", 1)
        outcomes: list[Outcome] = []
        first = threading.Thread(target=lambda: outcomes.append(runner.handle(message, "msg-1")))
        first.start()
        wait_until(lambda: app.get_queue(qid).step("compress").status == "running", 10, "compress to start")
        again = runner.handle(message, "msg-1")  # QStash lost the first delivery and sends it again
        first.join(10)
        assert compress.calls == 1
        assert again == outcomes[0] == Outcome(200, {"completed": "compress", "attempt": 1})
        completions = Counter(type(e).__name__ for e in app.queue_events(qid))["StepCompleted"]
        assert completions == 1
        assert runner.deliveries == Counter({("compress", "started"): 1, ("compress", "joined"): 1})
        assert runner.handle(message, "msg-1") == Outcome(200, {"ignored": "attempt 1 of compress is already done"})
        assert runner.deliveries[("compress", "completed")] == 1
    finally:
        runner.close()
        app.close()
