"""The dashboard's pure parts, its security rules and its reconnect logic, at the seams
(a fake hub for the server, a fake engine for the hub). The real page against the real
engine in a real browser is tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devenv.config.projectfile import builtin_catalog
from devenv.context import Context
from devenv.dashboard import model
from devenv.dashboard.hub import Hub
from devenv.dashboard.server import make_app
from devenv.engine import Container, EventStream, LogDemuxer, Published
from devenv.engine.dockercontext import EngineTarget
from devenv.engine.transport import _Stream
from devenv.errors import DockerUnavailableError
from devenv.ports.plan import Blocker, Holder, PortChoice

TARGET = EngineTarget(host="unix:///x", context="", source="DOCKER_HOST")
PORT = 40123
TOKEN = "t0ken-for-tests"


# --- documents ---------------------------------------------------------------------------
def test_service_entry_running_exited_and_absent():
    running = {"Name": "/p-redis-1", "RestartCount": 2,
               "State": {"Status": "running", "StartedAt": "2026-11-26T10:00:00Z",
                         "Health": {"Status": "healthy"}}}
    entry = model.service_entry("redis", running, (True, "PING -> +PONG"), "redis://x:1")
    assert entry["state"] == "running" and entry["health"] == "healthy"
    assert entry["probe"] == {"ok": True, "detail": "PING -> +PONG"}
    assert entry["restarts"] == 2 and entry["container"] == "p-redis-1"
    assert entry["started_at"] == "2026-11-26T10:00:00Z" and entry["exit_code"] is None
    exited = {"Name": "/p-redis-1", "State": {"Status": "exited", "ExitCode": 137}}
    gone = model.service_entry("redis", exited, (False, "refused"), "redis://x:1")
    assert gone["state"] == "exited" and gone["exit_code"] == 137
    assert gone["probe"] is None and gone["started_at"] is None
    assert model.service_entry("api", None, None, "")["state"] == "absent"


def test_port_entries_carry_the_reason_as_data_and_the_spec_columns():
    blocker = Blocker(6379, holder=Holder("process", "nginx (pid 812)"))
    choice = PortChoice("redis", 6380, 6379, "next free", blocker)
    rows = {r["service"]: r for r in model.port_entries({"redis": choice.as_data()},
                                                        {"redis": 6380}, {"redis": 6380})}
    redis = rows["redis"]
    assert redis["wanted"] == 6379 and redis["here"] == 6380 and redis["moved"]
    assert redis["reason"] == {"port": 6379, "kind": "process", "by": "nginx (pid 812)",
                               "text": "6379 is taken by nginx (pid 812)"}
    assert (redis["dev"], redis["staging"], redis["prod"]) == (6379, 6379, 6379)
    assert rows["grafana"]["staging"] == 3100 and rows["grafana"]["prod"] is None
    assert rows["frontend"]["kind"] == "host app" and rows["frontend"]["wanted"] == 3000


def test_blocker_kinds():
    assert Blocker(3000, reserved_for="the frontend").as_data()["kind"] == "reserved"
    assert Blocker(1, other_service="api").as_data()["kind"] == "stack"
    held = Blocker(1, holder=Holder("container", "container x (project y)")).as_data()
    assert held["kind"] == "container" and held["by"] == "container x (project y)"


def test_graph_layers_and_edges():
    g = model.graph([{"service": "redis", "state": "running"}])
    layers = {n["id"]: n["layer"] for n in g["nodes"]}
    assert layers == {"api": 1, "postgres": 0, "redis": 0, "adminer": 1, "prometheus": 0,
                      "grafana": 1}
    assert {"from": "grafana", "to": "prometheus"} in g["edges"]
    states = {n["id"]: n["state"] for n in g["nodes"]}
    assert states["redis"] == "running" and states["api"] == "absent"


def test_critical_chain_follows_the_slowest_need():
    assert model.critical_chain({"api": 3.0, "postgres": 2.5, "redis": 0.4}) == ["api",
                                                                                 "postgres"]
    assert model.critical_chain({"redis": 0.4, "prometheus": 0.9}) == ["prometheus"]
    assert model.critical_chain({"redis": None}) == []


def test_stats_entry_as_docker_stats():
    raw = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 110_000,
                         "online_cpus": 2},
           "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 100_000},
           "memory_stats": {"usage": 10_000_000, "limit": 1 << 30,
                            "stats": {"inactive_file": 2_000_000}}}
    entry = model.stats_entry("redis", raw)
    assert entry["cpu_percent"] == 40.0  # 2000 / 10000 * 2 cpus * 100
    assert entry["memory_bytes"] == 8_000_000 and entry["memory_limit_bytes"] == 1 << 30


# --- the engine seam -------------------------------------------------------------------------
def test_log_demuxer_handles_frames_split_anywhere():
    def frame(stream: int, text: bytes) -> bytes:
        return bytes([stream, 0, 0, 0]) + len(text).to_bytes(4, "big") + text

    raw = frame(1, b"hello\nwor") + frame(2, b"ld\n") + frame(1, b"last\n")
    for cut in range(1, len(raw)):
        demux = LogDemuxer()
        lines = demux.feed(raw[:cut]) + demux.feed(raw[cut:])
        assert lines == ["hello", "world", "last"], cut
    tty = LogDemuxer()
    assert tty.feed(b"plain tty output\nnext") == ["plain tty output"]
    assert tty.feed(b" line\n") == ["next line"]


def test_event_stream_parses_split_events_and_says_when_the_engine_goes():
    chunks = iter([b'{"Action": "start"}\n{"Act', b'ion": "die"}\n'])
    events = EventStream(_Stream(200, chunks, lambda: None), TARGET)
    seen = []
    with pytest.raises(DockerUnavailableError):
        for event in events:
            seen.append(event["Action"])
    assert seen == ["start", "die"]


def test_unix_socket_stream_delivers_the_body_as_it_arrives(tmp_path: Path):
    import socket as _socket

    from devenv.engine.transport import _UnixSocket

    path = str(tmp_path / "engine.sock")
    server = _socket.socket(_socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    go_on = threading.Event()

    def engine() -> None:
        conn, _ = server.accept()
        request = conn.recv(4096)
        assert request.startswith(b"GET /events?filters=x HTTP/1.0")
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: appl")  # headers split...
        conn.sendall(b"ication/json\r\n\r\n{\"Action\": \"start\"}\n")
        go_on.wait(5)  # ...the first event must arrive before the stream ends
        conn.sendall(b'{"Action": "die"}\n')
        conn.close()

    thread = threading.Thread(target=engine, daemon=True)
    thread.start()
    stream = _UnixSocket(path).stream("/events", {"filters": "x"}, None)
    assert stream.status == 200
    events = iter(EventStream(stream, TARGET))
    assert next(events)["Action"] == "start"
    go_on.set()
    assert next(events)["Action"] == "die"
    with pytest.raises(DockerUnavailableError, match="ended the event stream"):
        next(events)
    server.close()


# --- the hub: reconnects at the seam ---------------------------------------------------------
class FakeEvents:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self) -> Any:
        self.closed.wait(10)
        raise DockerUnavailableError("the engine went away")

    def close(self) -> None:
        self.closed.set()


class FakeEngine:
    remote_host = None

    def __init__(self) -> None:
        self.events_given: list[FakeEvents] = []

    def containers(self, project: str | None = None, all: bool = True) -> list[Container]:
        return [Container("c1", "p-redis-1", "p", "redis", "running", "", "Up",
                          (Published("127.0.0.1", 1, 6379),))]

    def inspect(self, container_id: str) -> dict[str, Any]:
        return {"Name": "/p-redis-1", "RestartCount": 0,
                "State": {"Status": "running", "StartedAt": "2026-11-26T10:00:00Z"}}

    def port_bindings(self, container: Container) -> list[int]:
        return [1]

    def events(self, project: str | None = None) -> FakeEvents:
        stream = FakeEvents()
        self.events_given.append(stream)
        return stream

    def follow_logs(self, container_id: str, tail: int = 100, since: float | None = None,
                    limit: int = 0):
        return EventStream(_Stream(200, iter(()), lambda: None), TARGET)  # ends at once


def test_hub_says_the_engine_is_lost_and_recovers(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("devenv.dashboard.hub.RECONNECT_FIRST", 0.05)
    engine = FakeEngine()
    calls = {"n": 0}

    def connect(environ: Any) -> FakeEngine:
        calls["n"] += 1
        if calls["n"] in (2, 3):  # gone for two tries after the first stream breaks
            raise DockerUnavailableError("cannot reach the Docker engine at unix:///x")
        return engine

    published: list[tuple[str, dict]] = []
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p"})
    hub = Hub(ctx, lambda kind, data: published.append((kind, data)), connect=connect)
    hub.start()
    try:
        _until(lambda: any(k == "state" for k, _ in published))
        assert hub.engine_status["connected"]
        engine.events_given[0].close()  # the stream breaks: the engine went away
        _until(lambda: len(engine.events_given) == 2)
        _until(lambda: hub.engine_status["connected"])
        seen = [d["connected"] for k, d in published if k == "engine"]
        changes = [c for i, c in enumerate(seen) if i == 0 or seen[i - 1] != c]
        assert changes == [True, False, True]
        errors = [d["error"] for k, d in published if k == "engine" and not d["connected"]]
        assert errors[0] == "the engine went away"  # the stream broke...
        assert "cannot reach the Docker engine" in errors[-1]  # ...and reconnecting failed
        _until(lambda: sum(k == "state" for k, _ in published) >= 2)  # refreshed on return
        redis = next(s for s in hub.state["services"] if s["service"] == "redis")
        assert redis["state"] == "running"
    finally:
        hub.stop()


class WritingEngine(FakeEngine):
    """redis writes a progress bar redrawn with carriage returns, then one 4 MB JSON
    document without a newline, a generated secret where the page's line limit cuts it."""

    SECRET = "Zq3-x_9LkP0aQ2rT5vW8"

    def follow_logs(self, container_id: str, tail: int = 100, since: float | None = None,
                    limit: int = 0):
        from devenv.dashboard.hub import LOG_LINE_BYTES
        from devenv.engine import LogStream

        bar = [b"".join(b"\rloading %3d%%" % i for i in range(101)) + b"\n"]
        head = b'{"token": "x", "blob": "' + b"A" * (LOG_LINE_BYTES - 30)
        document = [head + self.SECRET.encode()] + [b"B" * 65536] * 64 + [b'"}\n']
        stream = _Stream(200, iter(bar + document + [b"after it\n"]), lambda: None)
        return LogStream(stream, TARGET, limit) if limit else LogStream(stream, TARGET)


def test_the_hub_holds_a_bounded_line_of_a_service_that_writes_without_newlines(tmp_path):
    from devenv.dashboard.hub import LOG_LINE_BYTES

    engine = WritingEngine()
    published: list[tuple[str, dict]] = []
    ctx = Context(project_dir=tmp_path, environ={
        "DEVENV_PROJECT": "p", "DEVENV_POSTGRES_PASSWORD": WritingEngine.SECRET})
    hub = Hub(ctx, lambda kind, data: published.append((kind, data)),
              connect=lambda environ: engine)
    hub.start()
    try:
        _until(lambda: len(hub.logs["redis"]) == 3)
    finally:
        hub.stop()
    bar, document, after = [e["line"] for e in hub.logs["redis"]]
    assert bar == "loading 100%" and after == "after it"
    assert len(document.encode()) < LOG_LINE_BYTES + 100, "the page got the whole document"
    assert document.endswith("[... cut: the line is longer than 8 KiB]")
    assert document.startswith('{"token": "x", "blob": "AAA')
    assert "***" in document and "Zq3" not in document  # the secret the cut split in two
    assert [d["line"] for k, d in published if k == "log"] == [bar, document, after]


def _until(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- the server's security rules ------------------------------------------------------------
class FakeHub:
    project = "p"
    #: what the server asks of the hub's settings: the catalog, to know a service
    settings = type("FakeSettings", (), {"catalog": builtin_catalog()})()
    engine_status = {"connected": True, "since": 0, "error": ""}
    state = {"schema": model.STATE_SCHEMA, "project": "p", "services": []}

    def __init__(self) -> None:
        self.restarted: list[str] = []

    def log_document(self, service: str | None = None) -> dict:
        return {"schema": model.LOGS_SCHEMA, "project": "p", "lines": []}

    def secrets(self) -> dict:
        return {"schema": model.SECRETS_SCHEMA, "urls": {}, "logins": {}}

    def restart(self, service: str) -> dict:
        self.restarted.append(service)
        return {"schema": model.ACTION_SCHEMA, "ok": True, "service": service}

    def snapshots(self) -> dict:
        return model.snapshots_document("p", "/snaps", [], None)

    def snapshot(self, name: str | None) -> dict:
        self.restarted.append(f"snapshot {name}")
        return {"schema": model.ACTION_SCHEMA, "ok": True}

    def restore(self, name: str) -> dict:
        self.restarted.append(f"restore {name}")
        return {"schema": model.ACTION_SCHEMA, "ok": True}


def _requests(calls: list[tuple[str, str, dict[str, str]]], hub: FakeHub | None = None
              ) -> list[tuple[int, dict[str, str], str]]:
    app = make_app(hub or FakeHub(), TOKEN, PORT)  # type: ignore[arg-type]

    async def go() -> list[tuple[int, dict[str, str], str]]:
        out = []
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for method, path, headers in calls:
                response = await client.request(method, path, headers={
                    "Host": f"127.0.0.1:{PORT}", **headers})
                out.append((response.status, dict(response.headers),
                            await response.text() if path != "/api/events?token=" + TOKEN
                            else ""))
                response.close()
        return out

    return asyncio.run(go())


PATHS = ["/", "/static/app.js", "/static/style.css", "/api/state", "/api/events",
         "/api/logs", "/api/stats", "/api/secrets", "/api/snapshots"]


def test_every_request_without_the_token_is_refused():
    results = _requests([("GET", path, {}) for path in PATHS]
                        + [("GET", path + "?token=wrong", {}) for path in PATHS]
                        + [("POST", "/api/services/redis/restart", {})])
    for status, headers, body in results:
        assert status == 403 and "forbidden" in body
        assert not any(k.lower().startswith("access-control") for k in headers)


def test_a_host_that_is_not_the_loopback_address_is_refused():
    ok = {"X-Devenv-Token": TOKEN}
    results = _requests([("GET", "/api/state", {**ok, "Host": "evil.example:40123"}),
                         ("GET", "/api/state", {**ok, "Host": "127.0.0.1:80"}),
                         ("GET", "/api/state", {**ok, "Host": "localhost:40123"}),
                         ("GET", "/api/state", ok)])
    assert [r[0] for r in results] == [403, 403, 200, 200]
    assert "host not allowed" in results[0][2]


def test_cross_origin_requests_are_refused_and_get_no_cors_headers():
    ok = {"X-Devenv-Token": TOKEN}
    results = _requests([
        ("POST", "/api/services/redis/restart", {**ok, "Origin": "http://evil.example"}),
        ("GET", "/api/events?token=" + TOKEN, {"Origin": "http://127.0.0.1:9999"}),
        ("GET", "/api/state", {**ok, "Sec-Fetch-Site": "cross-site"}),
        ("OPTIONS", "/api/services/redis/restart", {"Origin": "http://evil.example",
                                                    "Access-Control-Request-Method": "POST"}),
    ])
    for status, headers, _body in results:
        assert status == 403
        assert not any(k.lower().startswith("access-control") for k in headers)


def test_only_opening_the_page_itself_may_come_from_another_site():
    """The launch page of `dashboard --open` is a file://: the browser's navigation from it
    is cross-site. That navigation to / (with the token) is let through; nothing else."""
    navigate = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                "Sec-Fetch-Dest": "document"}
    results = _requests([
        ("GET", "/?token=" + TOKEN, navigate),
        ("GET", "/?token=wrong", navigate),
        ("GET", "/api/state?token=" + TOKEN, navigate),
        ("GET", "/?token=" + TOKEN, {**navigate, "Sec-Fetch-Dest": "iframe"}),
        ("GET", "/?token=" + TOKEN, {**navigate, "Sec-Fetch-Mode": "no-cors"}),
        ("POST", "/api/snapshots", {**navigate, "X-Devenv-Token": TOKEN}),
    ])
    assert [r[0] for r in results] == [200, 403, 403, 403, 403, 403]
    assert results[0][1]["X-Frame-Options"] == "DENY"


def test_restart_needs_a_post_with_the_token_in_the_header():
    hub = FakeHub()
    results = _requests([
        ("GET", "/api/services/redis/restart?token=" + TOKEN, {}),
        ("POST", "/api/services/redis/restart?token=" + TOKEN, {}),
        ("POST", "/api/services/redis/restart", {"X-Devenv-Token": TOKEN,
                                                 "Origin": f"http://127.0.0.1:{PORT}"}),
        ("POST", "/api/services/nosuch/restart", {"X-Devenv-Token": TOKEN}),
    ], hub)
    assert [r[0] for r in results] == [405, 403, 200, 404]
    assert hub.restarted == ["redis"]
    assert json.loads(results[2][2])["schema"] == model.ACTION_SCHEMA


def test_the_page_carries_its_token_and_no_secret_and_strict_headers():
    results = _requests([("GET", "/?token=" + TOKEN, {})])
    status, headers, body = results[0]
    assert status == 200 and f"/static/app.js?token={TOKEN}" in body
    assert "password" not in body.lower()
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


# --- snapshot and restore --------------------------------------------------------------------
def test_snapshot_and_restore_have_the_restart_endpoints_security():
    hub = FakeHub()
    ok = {"X-Devenv-Token": TOKEN}
    same = {**ok, "Origin": f"http://127.0.0.1:{PORT}"}
    calls = []
    for path in ("/api/snapshots", "/api/snapshots/base/restore"):
        calls += [
            ("POST", path, {}),                                          # no token
            ("POST", path + "?token=" + TOKEN, {}),                      # token not in header
            ("POST", path, {"X-Devenv-Token": "wrong"}),
            ("POST", path, {**ok, "Origin": "http://evil.example"}),
            ("POST", path, {**ok, "Sec-Fetch-Site": "cross-site"}),
            ("POST", path, {**ok, "Host": "evil.example:40123"}),
        ]
    calls += [("GET", "/api/snapshots/base/restore?token=" + TOKEN, {}),  # POST only
              ("GET", "/api/snapshots", {}),
              ("POST", "/api/snapshots", same),
              ("POST", "/api/snapshots/base/restore", same)]
    results = _requests(calls, hub)
    assert [r[0] for r in results] == [403] * 12 + [405, 403, 200, 200]
    for _status, headers, _body in results:
        assert not any(k.lower().startswith("access-control") for k in headers)
    assert hub.restarted == ["snapshot None", "restore base"]  # only the allowed two ran


def _store(ctx: Context, name: str, redis: bytes, postgres: bytes | None = None) -> Path:
    from devenv.data import snapshots

    root = ctx.settings().snapshot_dir
    work = snapshots.new_workdir(root, name)
    (work / "redis.tar").write_bytes(redis)
    if postgres is not None:
        (work / "postgres.tar").write_bytes(postgres)
    snapshots.commit(work, root, name, pg_major="15" if postgres else "", database="app",
                     project="p", auto=name.startswith("auto-"))
    return root / name


def _hub(tmp_path: Path) -> tuple[Hub, list[tuple[str, dict]]]:
    published: list[tuple[str, dict]] = []
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p"})
    return Hub(ctx, lambda kind, data: published.append((kind, data))), published


def test_the_snapshot_list_is_versioned_json_with_name_size_date_and_contents(tmp_path):
    hub, _ = _hub(tmp_path)
    _store(hub.ctx, "base", b"r" * 1500, b"p" * 3000)
    _store(hub.ctx, "auto-20261126-101010", b"r" * 10)
    status, _headers, body = _requests([("GET", "/api/snapshots",
                                         {"X-Devenv-Token": TOKEN})], hub)[0]
    doc = json.loads(body)
    assert status == 200 and doc["schema"] == model.SNAPSHOTS_SCHEMA == \
        "devenv.dashboard.snapshots/1"
    assert doc["project"] == "p" and doc["busy"] is None
    assert doc["directory"] == str(hub.settings.snapshot_dir)
    by_name = {s["name"]: s for s in doc["snapshots"]}
    assert set(by_name) == {"base", "auto-20261126-101010"}
    base = by_name["base"]
    assert base["bytes"] == 4500 and base["size"] == "4.5 kB"
    assert base["holds"] == ["postgres", "redis"] and base["postgres_major"] == "15"
    assert base["created"].endswith("Z") and base["auto"] is False
    assert by_name["auto-20261126-101010"]["auto"] is True
    assert by_name["auto-20261126-101010"]["holds"] == ["redis"]


def test_a_second_action_while_one_runs_is_refused_with_409(tmp_path, monkeypatch):
    from devenv.data import ops as data

    hub, published = _hub(tmp_path)
    release = threading.Event()
    taken: list[str | None] = []

    def slow_snapshot(ctx: Context, name: str | None = None, force: bool = False) -> Any:
        taken.append(name)
        assert release.wait(10)
        return data.snapshots.load(ctx.settings().snapshot_dir,
                                   _store(ctx, name or "x", b"r").name)

    monkeypatch.setattr(data, "snapshot", slow_snapshot)
    monkeypatch.setattr(data, "restore", lambda ctx, name: pytest.fail("restore ran"))
    app = make_app(hub, TOKEN, PORT)
    headers = {"Host": f"127.0.0.1:{PORT}", "X-Devenv-Token": TOKEN}

    async def go() -> tuple[int, dict, int, dict, int, dict, int]:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            first = asyncio.ensure_future(client.post("/api/snapshots", headers=headers,
                                                      json={"name": "one"}))
            while hub.busy is None:  # the first runs in a thread
                await asyncio.sleep(0.01)
            # the event loop still serves while it runs
            listing = await client.get("/api/snapshots", headers=headers)
            listed = await listing.json()
            second = await client.post("/api/snapshots", headers=headers, json={"name": "two"})
            third = await client.post("/api/snapshots/one/restore", headers=headers)
            release.set()
            done = await first
            return (second.status, await second.json(), third.status, await third.json(),
                    done.status, await done.json(), listing.status if listed else 0)

    s2, b2, s3, b3, s1, b1, listed = asyncio.run(go())
    assert listed == 200
    assert (s2, s3, s1) == (409, 409, 200)
    assert b2["busy"] and b3["busy"] and b2["ok"] is False
    assert b2["error"] == "a snapshot is running; a snapshot was not started"
    assert b3["error"].startswith("a snapshot is running; the restore of one was not")
    assert b1["ok"] and b1["snapshot"]["name"] == "one" and taken == ["one"]
    assert hub.busy is None  # free again
    busy_seen = [d["busy"] for k, d in published if k == "snapshots"]
    assert busy_seen[0] == "a snapshot" and busy_seen[-1] is None


def test_a_bad_name_or_a_damaged_snapshot_answers_one_line(tmp_path):
    hub, _ = _hub(tmp_path)
    damaged = _store(hub.ctx, "broken", b"r" * 100)
    (damaged / "redis.tar").write_bytes(b"r" * 10)
    ok = {"X-Devenv-Token": TOKEN}
    results = _requests([("POST", "/api/snapshots/..hidden/restore", ok),
                         ("POST", "/api/snapshots/nosuch/restore", ok),
                         ("POST", "/api/snapshots/broken/restore", ok)],
                        hub)
    assert [r[0] for r in results] == [400, 400, 409]
    bodies = [json.loads(r[2]) for r in results]
    for body in bodies:
        assert body["ok"] is False and not body["busy"] and "\n" not in body["error"]
        assert "Traceback" not in json.dumps(body)
    assert "is not a snapshot name" in bodies[0]["error"]
    assert bodies[1]["error"].startswith("no snapshot named nosuch")
    assert bodies[2]["error"] == ("snapshot broken is damaged: redis.tar has 10 bytes, its "
                                  "manifest says 100")
    assert (damaged / "redis.tar").stat().st_size == 10  # nothing touched


def test_a_snapshot_request_body_must_be_a_name(tmp_path, monkeypatch):
    from devenv.data import ops as data

    hub, _ = _hub(tmp_path)
    names: list[str | None] = []

    def record(ctx: Context, name: str | None = None, force: bool = False) -> Any:
        names.append(name)
        raise RuntimeError("engine exploded\nsecond line")

    monkeypatch.setattr(data, "snapshot", record)
    app = make_app(hub, TOKEN, PORT)
    headers = {"Host": f"127.0.0.1:{PORT}", "X-Devenv-Token": TOKEN}

    async def go() -> list[tuple[int, str]]:
        out = []
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for body in ("", '{"name": "mine"}', '{"name": 5}', '["mine"]', "not json"):
                response = await client.post("/api/snapshots", headers=headers, data=body)
                out.append((response.status, await response.text()))
        return out

    results = asyncio.run(go())
    assert [r[0] for r in results] == [500, 500, 400, 400, 400]
    # an unexpected error is one line on the page, never a traceback
    assert json.loads(results[0][1])["error"] == \
        "snapshot failed: RuntimeError: engine exploded"
    assert names == [None, "mine"]  # no body: a default name


# --- malformed requests: a 4xx and one line, never a 500 and a traceback ------------------
def _raw(requests: list[bytes], hub: Any = None) -> tuple[list[bytes], list[str], str]:
    """Each raw request on its own connection to the app served as `devenv dashboard`
    serves it (its AppRunner and logger): the status lines, what the dashboard told its
    terminal, and what reached stderr through Python's logging."""
    import io
    import logging as logging_module

    from aiohttp import web

    from devenv.dashboard.server import RequestLog, server_logger

    told: list[str] = []
    stray = io.StringIO()
    catch_all = logging_module.StreamHandler(stray)
    logging_module.getLogger().addHandler(catch_all)
    log = RequestLog(told.append)

    async def go() -> list[bytes]:
        app = make_app(hub or FakeHub(), TOKEN, PORT, log)  # type: ignore[arg-type]
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               logger=server_logger(log))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        statuses = []
        try:
            for raw in requests:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(raw)
                await writer.drain()
                statuses.append((await reader.read(65536)).split(b"\r\n")[0])
                writer.close()
        finally:
            await runner.cleanup()
        return statuses

    try:
        statuses = asyncio.run(go())
    finally:
        logging_module.getLogger().removeHandler(catch_all)
    return statuses, told, stray.getvalue()


def _get_raw(target: bytes, *headers: bytes) -> bytes:
    return (b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % PORT
            + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n")


def test_a_token_that_is_not_utf8_is_a_400_logged_once_and_the_server_goes_on():
    statuses, told, stray = _raw([
        _get_raw(b"/api/state", b"X-Devenv-Token: \xff\xfe" + TOKEN.encode()),
        _get_raw(b"/api/state", b"X-Devenv-Token: t\xc3\xa9"),
        _get_raw(b"/api/state?token=%FF%FE"),
        _get_raw(b"/api/state", b"X-Devenv-Token: " + TOKEN.encode()),
    ])
    assert [s.split(b" ", 2)[1] for s in statuses] == [b"400", b"400", b"400", b"200"]
    assert told == ["dashboard: refused a malformed request (a token that is not ASCII) "
                    "with 400 (more of the kind are not logged)"]
    assert "Traceback" not in stray


def test_a_request_line_aiohttp_cannot_parse_is_one_line_without_the_token():
    statuses, told, stray = _raw([
        _get_raw(b"/api/st\xffate?token=" + TOKEN.encode()),
        _get_raw(b"/api/state?token=" + TOKEN.encode() + b"\xff"),
        _get_raw(b"/api/state", b"X-Devenv-Token: " + TOKEN.encode()),
    ])
    assert [s.split(b" ", 2)[1] for s in statuses] == [b"400", b"400", b"200"]
    assert told == ["dashboard: refused a request it could not read (InvalidURLError) "
                    "with 400 (more of the kind are not logged)"]
    assert "Traceback" not in stray and TOKEN not in stray


def test_a_handler_that_fails_is_a_500_in_one_line_and_the_server_goes_on():
    class Broken(FakeHub):
        def secrets(self) -> dict:
            raise KeyError("DEVENV_X")

    statuses, told, stray = _raw([
        _get_raw(b"/api/secrets", b"X-Devenv-Token: " + TOKEN.encode()),
        _get_raw(b"/api/state", b"X-Devenv-Token: " + TOKEN.encode()),
    ], Broken())
    assert [s.split(b" ", 2)[1] for s in statuses] == [b"500", b"200"]
    assert told == ["dashboard: GET /api/secrets failed: KeyError: 'DEVENV_X' "
                    "(more of the kind are not logged)"]
    assert "Traceback" not in stray


# --- --open: the browser's command line carries no token --------------------------------
def test_open_hands_the_browser_a_private_page_not_the_tokened_url(tmp_path, monkeypatch):
    """Every local user can read a process's arguments: the browser gets the file:// URL
    of a 0600 page that leads on to the tokened URL; the page goes once the dashboard
    has served itself, and only the file devenv wrote is removed."""
    import stat
    import urllib.parse
    import webbrowser

    from click.testing import CliRunner

    import devenv.dashboard as dashboard_package
    from devenv.cli.main import cli
    from devenv.dashboard.launch import LaunchPage

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    pages: list[Path] = []

    def serve(ctx: Context, on_ready: Any, features: Any = None, open_page: bool = False):
        url = f"http://127.0.0.1:{PORT}/?token={TOKEN}"
        page = LaunchPage(ctx.settings().state_dir, PORT)
        open_url = page.write(url) if open_page else ""
        pages.append(page.path)
        on_ready(dashboard_package.Served(url, PORT, TOKEN, "p", PortChoice(
            "dashboard", PORT, PORT, "configured"), open_url))
        _until(lambda: opened)  # the browser is started in a thread

    monkeypatch.setattr(dashboard_package, "serve", serve)
    result = CliRunner().invoke(cli, ["--project-dir", str(tmp_path), "dashboard", "--open"])
    assert result.exit_code == 0, result.output
    [argument] = opened
    assert TOKEN not in argument and argument.startswith("file:///")
    page = Path(urllib.parse.unquote(urllib.parse.urlparse(argument).path))
    assert page == pages[0] and page.parent == tmp_path / ".devenv"
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert f'content="0; url=http://127.0.0.1:{PORT}/?token={TOKEN}"' in page.read_text()


def test_the_launch_page_is_removed_once_served_and_only_if_it_is_still_devenvs(tmp_path):
    from devenv.dashboard.launch import LaunchPage

    page = LaunchPage(tmp_path / ".devenv", 7780)
    page.write("http://127.0.0.1:1/?token=x")
    page.remove()
    assert not page.path.exists()
    page.remove()  # twice is fine
    page.write("http://127.0.0.1:1/?token=x")
    page.path.unlink()
    page.path.write_text("the user's own file, put there since")
    page.remove()
    assert page.path.read_text() == "the user's own file, put there since"


def test_the_app_uses_up_the_launch_page_when_it_serves_the_page():
    served: list[str] = []
    app = make_app(FakeHub(), TOKEN, PORT,  # type: ignore[arg-type]
                   on_page=lambda: served.append("page"))

    async def go() -> list[int]:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            statuses = []
            for path in ("/api/state?token=" + TOKEN, "/?token=wrong", "/?token=" + TOKEN):
                response = await client.get(path, headers={"Host": f"127.0.0.1:{PORT}"})
                statuses.append(response.status)
                response.close()
            return statuses

    assert asyncio.run(go()) == [200, 403, 200]
    assert served == ["page"]  # only a page served with the token counts
