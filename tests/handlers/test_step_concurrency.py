"""A burst of step deliveries: a bounded number of steps run at once and the public API keeps answering.

Real QStash delivers as many messages at once as are due (the local server
caps itself at 16). Before ``VIDPIPE_MAX_CONCURRENT_STEPS``, every delivery ran
its step in the thread pool that also serves the public API's synchronous
endpoints (40 threads): 44 concurrent deliveries ran 40 steps at once (40
ffmpeg processes with the real providers) and a tutor's status request waited
for one of them to finish.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from api.token import mint
from handlers.dispatcher import step_url
from handlers.steps import StepContext, StepJob, StepResult
from local.qstash.settings import DEV_CURRENT_SIGNING_KEY
from local.qstash.signing import sign
from tests.handlers.conftest import Pipeline

DELIVERIES = 44  # more than the 40 threads of the shared pool
LIMIT = 8
STEP_SECONDS = 2.0


@dataclass
class CountingProvider:
    """A step that takes ``STEP_SECONDS`` and remembers how many ran at once."""

    name: str = "counting"
    running: int = 0
    most: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            context.wait(STEP_SECONDS)
        finally:
            with self._lock:
                self.running -= 1
        return StepResult(outputs={"video": f"compressed/{job.queue_id}.mp4"})


def test_a_burst_of_deliveries_runs_a_bounded_number_of_steps_and_status_still_answers(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    compress = CountingProvider()
    pipeline = pipeline_factory({"compress": compress}, VIDPIPE_MAX_CONCURRENT_STEPS=LIMIT, VIDPIPE_RUN_FOLLOWERS=False)
    queues = [pipeline.start(owner="tutor-1") for _ in range(DELIVERIES)]
    url = step_url(pipeline.settings.public_base_url, "compress")

    def deliver(index: int) -> int:
        body = json.dumps({"queue_id": queues[index], "step": "compress", "attempt": 1}).encode()
        headers = {
            "Upstash-Signature": sign(url=url, body=body, key=DEV_CURRENT_SIGNING_KEY),
            "Upstash-Message-Id": f"msg-burst-{index}",
            "Content-Type": "application/json",
        }
        with httpx.Client(timeout=120) as client:
            return client.post(pipeline.api.url + "/api/video-processing/steps/compress", content=body,
                               headers=headers).status_code

    token = mint(pipeline.settings, "tutor-1", "tutor")
    with ThreadPoolExecutor(DELIVERIES) as pool:
        answers = [pool.submit(deliver, i) for i in range(DELIVERIES)]
        time.sleep(0.25 * STEP_SECONDS)  # the burst has arrived; the first steps run
        status = httpx.get(f"{pipeline.api.url}/api/video-processing/status/{queues[0]}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=120)
        # ordering, not speed: the answer came while the burst was still being worked off
        # (44 deliveries, 8 at a time, 2 s each), not after the steps ahead of it
        running_when_answered = compress.running
        unanswered_deliveries = sum(not a.done() for a in answers)
        codes = [a.result() for a in answers]

    assert status.status_code == 200, status.text
    assert running_when_answered > 0 and unanswered_deliveries > LIMIT, (
        f"the status request waited behind running steps ({running_when_answered} running, "
        f"{unanswered_deliveries} deliveries unanswered when it answered)"
    )
    assert compress.most == LIMIT
    assert codes == [200] * DELIVERIES
    completed = [q for q in queues if "StepCompleted" in pipeline.event_names(q)]
    assert len(completed) == DELIVERIES
