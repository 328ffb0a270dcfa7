"""Auth, status, queue list, cancellation and owner isolation, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from api.settings import DEV_JWT_SECRET
from handlers.providers.simulated import SimulatedProvider
from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
PREFIX = "/api/video-processing"

PUBLIC_ENDPOINTS = [
    ("GET", f"{PREFIX}/status/{{qid}}"),
    ("DELETE", f"{PREFIX}/status/{{qid}}"),
    ("GET", f"{PREFIX}/queue"),
    ("GET", f"{PREFIX}/status/{{qid}}/events"),
    ("GET", f"{PREFIX}/status/{{qid}}/stream"),
    ("GET", f"{PREFIX}/status/{{qid}}/transcript?format=srt"),
    ("POST", f"{PREFIX}/upload"),
    ("GET", "/api/notifications"),
]


def token(claims: dict[str, Any], secret: str = DEV_JWT_SECRET) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256")


def test_every_public_endpoint_refuses_missing_bad_and_expired_tokens_and_other_roles(
    served: Served, clients: Clients
) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    before = pipeline.event_names(qid)
    bad_tokens = {
        "expired": token({"sub": "tutor-a", "role": "tutor", "exp": int(time.time()) - 3600}),
        "badly signed": token({"sub": "tutor-a", "role": "tutor"}, secret="another-secret-of-at-least-32-bytes!!"),
        "not a JWT": "not-a-jwt",
        "no sub": token({"role": "tutor"}),
        "no exp": jwt.encode({"sub": "tutor-a", "role": "tutor"}, DEV_JWT_SECRET, algorithm="HS256"),
        "alg none": jwt.encode({"sub": "tutor-a", "role": "tutor", "exp": int(time.time()) + 60}, None, algorithm="none"),
    }
    student = token({"sub": "student-1", "role": "student"})
    for method, template in PUBLIC_ENDPOINTS:
        path = template.format(qid=qid)
        response = tutor.http.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert "missing bearer token" in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        for why, bad in bad_tokens.items():
            response = tutor.http.request(method, path, headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401, (why, method, path, response.text)
            assert response.json()["error"]
        response = tutor.http.request(method, path, headers={"Authorization": f"Bearer {student}"})
        assert response.status_code == 403, (method, path, response.text)
        assert "tutor" in response.json()["error"] and "'student'" in response.json()["error"]
    expired = tutor.http.get(f"{PREFIX}/queue", headers={"Authorization": f"Bearer {bad_tokens['expired']}"})
    assert "expired" in expired.json()["error"]
    assert pipeline.event_names(qid)[: len(before)] == before
    assert "Cancelled" not in pipeline.event_names(qid)


def test_status_list_and_pagination_for_the_owner(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    queue_ids = [tutor.upload(fake_video(seed=i)).json()["queue_id"] for i in range(3)]
    for qid in queue_ids:
        row = tutor.wait_for(qid)
        assert row["status"] == "completed" and row["progress_percentage"] == 100
        assert row["queue_id"] == qid and row["owner_id"] == "tutor-a"
        assert [s["step"] for s in row["steps"]] == ["compress", "audio-convert", "transcribe", "embed"]
        assert all(s["status"] == "completed" for s in row["steps"])
    page = tutor.get(f"{PREFIX}/queue", params={"limit": 2}).json()
    assert [q["queue_id"] for q in page["items"]] == queue_ids[::-1][:2]
    assert page["has_more"] is True and page["limit"] == 2
    rest = tutor.get(f"{PREFIX}/queue", params={"limit": 2, "offset": 2}).json()
    assert [q["queue_id"] for q in rest["items"]] == queue_ids[:1] and rest["has_more"] is False
    assert tutor.get(f"{PREFIX}/queue", params={"status": "failed"}).json()["items"] == []
    assert len(tutor.get(f"{PREFIX}/queue", params={"status": "completed"}).json()["items"]) == 3
    bad = tutor.get(f"{PREFIX}/queue", params={"status": "bogus", "limit": 0})
    assert bad.status_code == 422 and "status" in bad.json()["error"] and "limit" in bad.json()["error"]
    for missing in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = tutor.get(f"{PREFIX}/status/{missing}")
        assert response.status_code == 404 and "does not exist" in response.json()["error"]


def test_cancel_is_idempotent_and_a_finished_queue_answers_409(served: Served, clients: Clients) -> None:
    pipeline = served({"compress": SimulatedProvider(seconds=30, ticks=30)})
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    tutor.wait_for(qid, ("processing",))
    first = tutor.delete(f"{PREFIX}/status/{qid}")
    assert first.status_code == 200 and first.json() == {"queue_id": qid, "status": "cancelled", "changed": True}
    again = tutor.delete(f"{PREFIX}/status/{qid}")
    assert again.status_code == 200 and again.json()["changed"] is False
    assert tutor.wait_for(qid)["status"] == "cancelled"
    assert pipeline.event_names(qid).count("Cancelled") == 1


def test_cancelling_a_completed_queue_answers_409_and_changes_nothing(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    done = tutor.upload().json()["queue_id"]
    tutor.wait_for(done)
    events = pipeline.event_names(done)
    refused = tutor.delete(f"{PREFIX}/status/{done}")
    assert refused.status_code == 409
    assert "already completed" in refused.json()["error"]
    assert pipeline.event_names(done) == events


def test_another_tutor_gets_404_for_everything_and_nothing_changes(served: Served, clients: Clients) -> None:
    pipeline = served({"compress": SimulatedProvider(seconds=30, ticks=30)})
    owner, intruder = clients(pipeline, "tutor-a"), clients(pipeline, "tutor-b")
    qid = owner.upload().json()["queue_id"]
    owner.wait_for(qid, ("processing",))
    events_before = pipeline.event_names(qid)
    for method, template in PUBLIC_ENDPOINTS:
        if "{qid}" not in template:
            continue
        response = intruder.request(method, template.format(qid=qid))
        assert response.status_code == 404, (method, template, response.text)
        assert response.json() == {"error": f"processing queue {qid} does not exist"}
    listing = intruder.get(f"{PREFIX}/queue").json()
    assert listing["items"] == []
    assert intruder.get("/api/notifications").json()["items"] == []
    assert pipeline.event_names(qid)[: len(events_before)] == events_before
    assert "Cancelled" not in pipeline.event_names(qid)
    assert owner.status(qid)["status"] == "processing"
    assert owner.delete(f"{PREFIX}/status/{qid}").json()["changed"] is True


@pytest.mark.parametrize("claim", ["role", "app_metadata.role"])
def test_the_role_claim_path_is_configurable(served: Served, clients: Clients, claim: str) -> None:
    pipeline = served(VIDPIPE_JWT_ROLE_CLAIM=claim)
    tutor = clients(pipeline, "tutor-a")
    assert tutor.get(f"{PREFIX}/queue").status_code == 200
    supabase = token({"sub": "u1", "role": "authenticated", "app_metadata": {"role": "tutor"}})
    response = tutor.http.get(f"{PREFIX}/queue", headers={"Authorization": f"Bearer {supabase}"})
    assert response.status_code == (200 if claim == "app_metadata.role" else 403)
