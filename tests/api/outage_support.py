"""A served pipeline on a private Postgres cluster that a test stops (a crash) and starts again.

Restarting the shared test server would break the other tests, so an outage
test runs on a cluster of its own. A test module takes the fixtures by
importing them: ``database_url`` then names the private cluster for that
module's served pipelines only::

    from tests.api.outage_support import Outage, database_url, outage, private_postgres  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from bench.chaos.private_postgres import PrivatePostgres
from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline
from tests.support import wait_until


@pytest.fixture
def private_postgres(postgres_available: None) -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture
def database_url(private_postgres: PrivatePostgres) -> str:
    """The served pipeline's database: the private cluster this test may stop."""
    return private_postgres.url


@dataclass
class Outage:
    """A tutor of a served pipeline whose first lecture completed before the database goes down."""

    server: PrivatePostgres
    tutor: Client
    done: str
    """A queue that completed before the outage."""

    def begin(self) -> None:
        """Stop the database as a crash would (``-m immediate``); the app keeps running."""
        self.server.stop("immediate")

    def end(self) -> None:
        """Start the database again and wait until the status endpoint answers 200 again."""
        self.server.start()
        wait_until(lambda: self.tutor.get(f"/api/video-processing/status/{self.done}").status_code == 200,
                   30, "the status endpoint to answer 200 again")

    def process(self, seed: int, timeout: float = 60) -> dict[str, object]:
        """Upload a new lecture and wait for it to complete: the whole pipeline works."""
        answer = self.tutor.upload(fake_video(seed=seed))
        assert answer.status_code == 202, answer.text
        return self.tutor.wait_for(answer.json()["queue_id"], ("completed",), timeout=timeout)


@pytest.fixture
def outage(
    private_postgres: PrivatePostgres, served: Callable[..., Pipeline], clients: Callable[..., Client],
) -> Outage:
    tutor = clients(served(), "tutor-outage")
    first = tutor.upload(fake_video(seed=1))
    assert first.status_code == 202, first.text
    done = first.json()["queue_id"]
    tutor.wait_for(done, ("completed",))
    return Outage(private_postgres, tutor, done)


def assert_database_unavailable(answer: httpx.Response, what: object = None) -> None:
    """The answer every public route gives while the database is down: 503, ``Retry-After``, ``{"error"}``."""
    assert answer.status_code == 503, (what, answer.text)
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.json()["error"].startswith("the database is unavailable")
