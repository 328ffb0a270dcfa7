"""The outage gate tells a database that is down from one that is busy, and refuses at once only the first."""

from __future__ import annotations

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from projections.database import DatabaseUrl
from projections.outage_gate import DatabaseDown, OutageGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Server:
    """The probe's answer: up (connects) or down (raises as psycopg does)."""

    def __init__(self) -> None:
        self.up = True
        self.probes = 0

    def probe(self) -> None:
        self.probes += 1
        if not self.up:
            raise psycopg.OperationalError("connection refused")


@pytest.fixture
def parts() -> tuple[OutageGate, Server, Clock]:
    server, clock = Server(), Clock()
    return OutageGate(server.probe, "db", probe_interval=1.0, clock=clock), server, clock


def test_a_busy_pool_is_not_an_outage(parts: tuple[OutageGate, Server, Clock]) -> None:
    gate, server, _ = parts
    gate.failed()  # a pool timeout while the server is up
    assert not gate.down and server.probes == 1
    gate.admit()  # requests still wait for the pool


def test_a_server_that_is_down_is_refused_at_once_without_probing_each_time(
    parts: tuple[OutageGate, Server, Clock],
) -> None:
    gate, server, clock = parts
    server.up = False
    gate.failed()
    assert gate.down and server.probes == 1
    for _ in range(10):  # the library's retries within a second: refused, no probe
        with pytest.raises(DatabaseDown) as refused:
            gate.admit()
        clock.now += 0.05
    assert server.probes == 1 and gate.refused == 10
    assert isinstance(refused.value, OperationalError)  # what every 503 handler already knows
    assert "unreachable" in str(refused.value)


def test_one_probe_a_second_finds_the_server_back(parts: tuple[OutageGate, Server, Clock]) -> None:
    gate, server, clock = parts
    server.up = False
    gate.failed()
    clock.now += 1.0
    with pytest.raises(DatabaseDown):
        gate.admit()  # probed again: still down
    assert server.probes == 2
    server.up = True
    with pytest.raises(DatabaseDown):
        gate.admit()  # within the second: not probed yet
    clock.now += 1.0
    gate.admit()  # probed: back
    assert not gate.down and server.probes == 3


def test_a_connection_taken_from_the_pool_opens_the_gate(parts: tuple[OutageGate, Server, Clock]) -> None:
    gate, server, _ = parts
    server.up = False
    gate.failed()
    gate.succeeded()
    assert not gate.down


def test_postgres_waits_for_a_connection_a_bounded_time() -> None:
    env = DatabaseUrl.parse("postgresql://postgres@127.0.0.1/vidpipe").event_store_env()
    assert int(env["POSTGRES_CONNECT_TIMEOUT"]) <= 3  # the pool's wait per try; the gate refuses later tries
