"""The status read path: one Postgres round trip per request, counted on the wire.

A small TCP proxy sits between the served app and the test Postgres server
and parses what the app sends (the frontend half of the protocol): every
``Sync`` (extended query) or ``Query`` (simple query) message is one round
trip, since the client waits for ``ReadyForQuery`` after it. The app runs
without followers so that only requests talk to the database. Counts, not
times, are asserted; the throughput is in ``bench/status_reads.py``.

Also here: the awaited readers the routes use return what the projection's
reader returns (SQLite and Postgres), a connection killed under the pool is
retried once on a new one, and the verified-token memory of ``api.auth``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import api.auth
from api.app import create_app
from api.auth import TokenVerifier
from api.errors import ApiError
from api.settings import Settings
from api.token import mint
from projections.database import DatabaseUrl
from tests.conftest import Store, drop_postgres_schema, make_postgres_schema, open_store
from tests.support import ServedApp, reserve_port

PREFIX = "/api/video-processing"
SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102


class CountingProxy:
    """A loopback TCP proxy to Postgres that counts the frontend's messages by type."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.messages: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self.messages["S"] + self.messages["Q"]

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.connections = 0

    def drop_all(self) -> None:
        """Close every proxied connection, as a server restart would."""
        with self._lock:
            doomed, self._sockets = self._sockets, []
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        self.drop_all()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
            threading.Thread(target=self._frontend, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _frontend(self, client: socket.socket, server: socket.socket) -> None:
        buffer, startup = b"", True
        try:
            while data := client.recv(65536):
                server.sendall(data)
                buffer += data
                while True:
                    if startup:  # untyped: SSL/GSS requests, then the startup message
                        if len(buffer) < 8:
                            break
                        (length,) = struct.unpack("!I", buffer[:4])
                        if len(buffer) < length:
                            break
                        (code,) = struct.unpack("!I", buffer[4:8])
                        buffer = buffer[length:]
                        startup = code in (SSL_REQUEST, GSSENC_REQUEST)
                        continue
                    if len(buffer) < 5:
                        break
                    kind = chr(buffer[0])
                    (length,) = struct.unpack("!I", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    buffer = buffer[1 + length:]
                    with self._lock:
                        self.messages[kind] += 1
        except OSError:
            pass
        finally:
            for sock in (client, server):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def seeded_postgres(postgres_available: None) -> Iterator[tuple[str, Store]]:
    url, schema = make_postgres_schema()
    store = open_store(url)
    try:
        yield url, store
    finally:
        store.close()
        drop_postgres_schema(schema)


@pytest.fixture
def proxied_app(
    seeded_postgres: tuple[str, Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[ServedApp, CountingProxy, Settings, dict[str, str]]]:
    """The app on Postgres through the counting proxy, followers off; two tutors' queues in the view."""
    url, store = seeded_postgres
    queues = {
        "own": str(store.app.start_processing("tutor-reads", "lecture-1")),
        "own-2": str(store.app.start_processing("tutor-reads", "lecture-2")),
        "other": str(store.app.start_processing("tutor-else", "lecture-3")),
    }
    store.follower.catch_up()
    monkeypatch.setenv("PGSSLMODE", "disable")  # keep the wire readable (plain protocol)
    monkeypatch.setenv("PGGSSENCMODE", "disable")
    parsed = DatabaseUrl.parse(url)
    proxy = CountingProxy((parsed.host, parsed.port))
    settings = Settings(
        DATABASE_URL=url.replace(f":{parsed.port}/", f":{proxy.port}/", 1),
        VIDPIPE_RUN_FOLLOWERS=False,
        VIDPIPE_STORAGE_DIR=str(tmp_path / "storage"),
    )
    served = ServedApp(create_app(settings), reserve_port())
    try:
        yield served, proxy, settings, queues
    finally:
        served.stop()
        proxy.close()


@pytest.mark.postgres
def test_status_and_list_take_one_round_trip_each(
    proxied_app: tuple[ServedApp, CountingProxy, Settings, dict[str, str]],
) -> None:
    served, proxy, settings, queues = proxied_app
    token = mint(settings, "tutor-reads", "tutor")
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for _ in range(8):  # connect, set search_path, and let psycopg prepare both statements
            assert http.get(f"{PREFIX}/status/{queues['own']}").status_code == 200
            assert http.get(f"{PREFIX}/queue").status_code == 200

        proxy.reset()
        answers = [http.get(f"{PREFIX}/status/{queues['own']}") for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert answers[0].json()["queue_id"] == queues["own"]
        assert proxy.round_trips == 10, proxy.messages
        assert proxy.connections == 0  # the pooled connection served them all
        assert proxy.messages["P"] == 0  # prepared: no statement parsed again

        proxy.reset()
        foreign = [http.get(f"{PREFIX}/status/{queues['other']}") for _ in range(5)]
        assert [a.status_code for a in foreign] == [404] * 5  # another tutor's: not found, in the same one read
        assert proxy.round_trips == 5, proxy.messages

        proxy.reset()
        pages = [http.get(f"{PREFIX}/queue", params={"limit": 1}) for _ in range(5)]
        assert all(p.status_code == 200 and len(p.json()["items"]) == 1 and p.json()["has_more"] for p in pages)
        assert proxy.round_trips == 5, proxy.messages


@pytest.mark.postgres
def test_a_connection_broken_under_the_pool_is_retried_once_on_a_new_one(
    proxied_app: tuple[ServedApp, CountingProxy, Settings, dict[str, str]],
) -> None:
    served, proxy, settings, queues = proxied_app
    token = mint(settings, "tutor-reads", "tutor")
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        assert http.get(f"{PREFIX}/status/{queues['own']}").status_code == 200
        proxy.drop_all()  # the pooled connection dies, as in a server restart
        time.sleep(0.2)  # let the app's side of the socket see the close
        proxy.reset()
        answer = http.get(f"{PREFIX}/status/{queues['own']}")
        assert answer.status_code == 200, answer.text  # not a 503: one retry on a fresh connection
        assert answer.json()["queue_id"] == queues["own"]
        assert proxy.connections >= 1
        assert http.get(f"{PREFIX}/queue").status_code == 200


def test_awaited_reads_return_what_the_projection_reader_returns(store: Store) -> None:
    ids = [str(store.app.start_processing("tutor-same", f"lecture-{i}")) for i in range(3)]
    store.app.start_step(ids[0], "compress", 1)
    store.app.report_progress(ids[0], "compress", 1, 40)
    store.app.start_processing("tutor-other", "lecture-x")
    store.follower.catch_up()
    reads = store.reader

    async def both() -> tuple[Any, Any, Any, Any]:
        return (
            await reads.astatus(ids[0]),
            await reads.astatus("no-such-queue"),
            await reads.alist_for_owner("tutor-same", limit=2, offset=1),
            await reads.alist_for_owner("tutor-same", status="processing"),
        )

    one, missing, page, processing = anyio.run(both)
    assert one == store.reader.status(ids[0]) and one is not None and one["progress_percentage"] > 0
    assert missing is None
    assert page == store.reader.list_for_owner("tutor-same", limit=2, offset=1) and len(page) == 2
    assert [r["queue_id"] for r in processing] == [ids[0]]


def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    verifier = TokenVerifier(settings)
    decoded: list[str] = []
    decode = verifier._decode  # noqa: SLF001 - counted, not replaced
    monkeypatch.setattr(verifier, "_decode", lambda token: decoded.append(token) or decode(token))
    clock = [time.time()]
    monkeypatch.setattr(api.auth, "time", type("Clock", (), {"time": staticmethod(lambda: clock[0])}))
    token = mint(settings, "tutor-cache", "tutor", ttl_seconds=30, now=clock[0])
    assert verifier.remembered(token) is None
    caller = verifier.verify(token)
    assert caller.owner_id == "tutor-cache"
    assert verifier.remembered(token) == caller
    assert verifier.verify(token) == caller and len(decoded) == 1  # the second time from memory

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(ApiError) as refused:
        verifier.verify(tampered)
    assert refused.value.status == 401 and verifier.remembered(tampered) is None

    clock[0] += 31  # past exp: no longer taken on trust
    assert verifier.remembered(token) is None
    verifier.verify(token)  # (the real clock still lets PyJWT accept it)
    assert decoded == [token, tampered, token]  # verified in full again
    assert verifier.remembered(token) is None  # and not remembered past its exp


def test_verified_tokens_are_remembered_for_a_minute_at_most_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    verifier = TokenVerifier(settings)
    clock = [time.time()]
    monkeypatch.setattr(api.auth, "time", type("Clock", (), {"time": staticmethod(lambda: clock[0])}))
    monkeypatch.setattr(api.auth, "VERIFIED_TOKENS", 3)
    tokens = [mint(settings, f"tutor-{i}", "tutor", now=clock[0]) for i in range(4)]  # each valid for a day
    for token in tokens:
        verifier.verify(token)
    assert verifier.remembered(tokens[0]) is None  # the oldest was forgotten
    assert all(verifier.remembered(t) is not None for t in tokens[1:])
    clock[0] += api.auth.VERIFIED_SECONDS + 1
    assert all(verifier.remembered(t) is None for t in tokens)  # verified again after a minute
    assert verifier.verify(tokens[1]).owner_id == "tutor-1"
    forbidden = mint(settings, "a-student", "student")
    for _ in range(2):
        with pytest.raises(ApiError) as refused:
            verifier.verify(forbidden)
        assert refused.value.status == 403  # refusals are never remembered as callers
    assert verifier.remembered(forbidden) is None
