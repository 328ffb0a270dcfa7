"""Audit trail, server-sent events and transcript downloads, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from handlers.providers.simulated import SimulatedProvider
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import artifact_key
from handlers.storage.local import LocalStorage
from tests.api.conftest import Client
from tests.handlers.conftest import Pipeline

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
PREFIX = "/api/video-processing"
STEPS = ["compress", "audio-convert", "transcribe", "embed"]
TRANSCRIPTS = {
    "json": '{"segments": [{"start": 0.0, "end": 2.5, "text": "Ask not"}]}',
    "srt": "1\n00:00:00,000 --> 00:00:02,500\nAsk not\n",
    "vtt": "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nAsk not\n",
    "txt": "Ask not\n",
}


@dataclass
class GatedTranscriber:
    """Writes the four transcript files to storage once ``release`` is set."""

    storage: LocalStorage
    name: str = "test-transcriber"
    release: threading.Event = field(default_factory=threading.Event)

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        while not self.release.is_set():
            context.wait(0.05)
        outputs = {}
        for fmt, text in TRANSCRIPTS.items():
            key = artifact_key(job.owner_id, job.queue_id, f"transcript_{fmt}")
            self.storage.put_stream(key, [text.encode()])
            outputs[f"transcript_{fmt}"] = key
        return StepResult(outputs=outputs, provider=self.name, model="tiny.en")


def test_the_audit_trail_lists_every_event_in_order(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    tutor.wait_for(qid)
    trail = tutor.get(f"{PREFIX}/status/{qid}/events").json()
    assert trail["queue_id"] == qid
    events = trail["events"]
    assert [e["position"] for e in events] == list(range(1, len(events) + 1))
    assert [e["event"] for e in events] == pipeline.event_names(qid)
    assert events[0]["event"] == "Created" and "owner_id=tutor-a" in events[0]["detail"]
    completed = [e["step"] for e in events if e["event"] == "StepCompleted"]
    # compress and audio-convert run side by side and finish in either order; the rest follow audio-convert
    assert sorted(completed) == sorted(STEPS)
    assert completed.index("audio-convert") < completed.index("transcribe") < completed.index("embed")
    assert events[-1]["event"] == "Completed"


def test_an_sse_client_sees_every_step_change_in_order_and_the_stream_ends(
    served: Served, clients: Clients
) -> None:
    slow = SimulatedProvider(seconds=0.4, ticks=2)
    pipeline = served({step: slow for step in STEPS}, VIDPIPE_STREAM_POLL_SECONDS=0.25)
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    received = tutor.sse(qid)  # returns when the server ends the stream
    timeline = [data for event, data in received if event == "timeline"]
    statuses = [data for event, data in received if event == "status"]
    log = pipeline.event_names(qid)
    assert [e["event"] for e in timeline] == log
    assert [e["position"] for e in timeline] == list(range(1, len(log) + 1))
    step_changes = [(e["event"], e["step"]) for e in timeline if e["event"] in ("StepStarted", "StepCompleted")]
    assert sorted(step_changes) == sorted((kind, step) for step in STEPS for kind in ("StepStarted", "StepCompleted"))
    graph = pipeline.events(qid)[0].graph  # compress and audio-convert run side by side
    for index, (kind, step) in enumerate(step_changes):
        if kind == "StepStarted":
            assert all(("StepCompleted", p) in step_changes[:index] for p in graph[step]), step_changes
    versions = [s["version"] for s in statuses]
    assert versions == sorted(set(versions)) and versions[-1] == len(log)
    progress = [s["progress_percentage"] for s in statuses]
    assert progress == sorted(progress)
    seen_steps = [s["current_step"] for s in statuses if s["current_step"]]
    assert any(s.get("running_steps") for s in statuses)
    for status in statuses:  # the first running step in pipeline order
        if status.get("running_steps"):
            assert status["current_step"] == status["running_steps"][0], status
    assert len(set(seen_steps)) >= 3  # polling at 250 ms catches the steps while they run
    assert statuses[-1]["status"] == "completed"

    replay = tutor.sse(qid, **{"Last-Event-ID": str(len(log) - 2)})
    assert [d["position"] for e, d in replay if e == "timeline"] == [len(log) - 1, len(log)]
    assert [d["status"] for e, d in replay if e == "status"] == ["completed"]


def test_transcripts_download_in_each_format_once_they_exist(
    served: Served, clients: Clients, tmp_path: Path
) -> None:
    transcriber = GatedTranscriber(LocalStorage(tmp_path / "storage"))
    pipeline = served({"transcribe": transcriber})
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    wait = tutor.wait_for(qid, ("processing",))
    assert wait["status"] == "processing"
    early = tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": "srt"})
    assert early.status_code == 404
    assert "does not exist yet" in early.json()["error"]
    transcriber.release.set()
    tutor.wait_for(qid)
    media_types = {"json": "application/json", "srt": "application/x-subrip", "vtt": "text/vtt", "txt": "text/plain"}
    for fmt, text in TRANSCRIPTS.items():
        response = tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": fmt})
        assert response.status_code == 200, response.text
        assert response.text == text
        assert response.headers["content-type"].startswith(media_types[fmt])
        assert f"transcript-{qid}.{fmt}" in response.headers["content-disposition"]
    assert tutor.get(f"{PREFIX}/status/{qid}/transcript").text == TRANSCRIPTS["json"]
    bad = tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": "docx"})
    assert bad.status_code == 422 and "format" in bad.json()["error"]


def test_a_queue_whose_transcribe_step_made_no_transcript_answers_404(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    tutor.wait_for(qid)
    response = tutor.get(f"{PREFIX}/status/{qid}/transcript", params={"format": "vtt"})
    assert response.status_code == 404
    assert "completed without it" in response.json()["error"]
