"""Tests for the bundled reference API (templates/api/app.py).

The service runs as a real subprocess on a free localhost port. PostgreSQL and Redis are
never taken from the host: the protocol pieces are checked against published test vectors,
and the end-to-end happy path talks to small in-test servers that verify what they receive.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import pytest

APP_PATH = Path(__file__).resolve().parents[1] / "templates" / "api" / "app.py"
DOCKERFILE_PATH = APP_PATH.with_name("Dockerfile")
SPECIAL_PASSWORD = "p@ss$w\"o'rd #1:x"
SCRAM_ITERATIONS = 4096


@pytest.fixture(scope="module")
def app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_api_app", APP_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ next to app.py: templates/api/ is the image's build context.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningApp:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process, self.port, self.log_path = process, port, log_path

    def get(self, path: str, method: str = "GET") -> tuple[int, str, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def get_json(self, path: str) -> tuple[int, dict]:
        status, content_type, body = self.get(path)
        assert content_type == "application/json"
        return status, json.loads(body)

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., RunningApp]]:
    started: list[RunningApp] = []

    def start(**env: str) -> RunningApp:
        port = find_free_port()
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("DATABASE_URL", "REDIS_URL", "DB_POOL_SIZE", "HOSTNAME")}
        log_path = tmp_path / f"app-{port}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen([sys.executable, str(APP_PATH)], stdout=log_file,
                                       stderr=subprocess.STDOUT,
                                       env={**clean, "PORT": str(port), **env})
        app = RunningApp(process, port, log_path)
        started.append(app)
        wait_for_port(app)
        return app

    yield start
    for app in started:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait(timeout=5)


def wait_for_port(app: RunningApp, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            pytest.fail(f"app exited with {app.process.returncode}:\n{app.log()}")
        try:
            socket.create_connection(("127.0.0.1", app.port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"app did not listen on {app.port} within {timeout} s:\n{app.log()}")


def closed_port_urls() -> dict[str, str]:
    """URLs aimed at ports nothing listens on (bound once, then released)."""
    password = quote(SPECIAL_PASSWORD, safe="")
    return {"DATABASE_URL": f"postgresql://app:{password}@127.0.0.1:{find_free_port()}/appdb",
            "REDIS_URL": f"redis://:{password}@127.0.0.1:{find_free_port()}/0"}


# --- Prometheus text format -------------------------------------------------------------

SAMPLE_LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})?'
    r' (?P<value>\S+)(?: -?\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def parse_prometheus(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """Parse exposition format 0.0.4 strictly enough to catch what a scraper would reject."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = kind
        elif line.startswith("#") or not line.strip():
            continue
        else:
            match = SAMPLE_LINE.match(line)
            assert match, f"unparseable sample line: {line!r}"
            name = match["name"]
            family = next((name[: -len(suffix)] for kind in SUFFIXES.values() for suffix in kind
                           if name.endswith(suffix) and name[: -len(suffix)] in types), name)
            assert family in types, f"{name} has no # TYPE line before it"
            labels = dict(LABEL.findall(match["labels"] or ""))
            samples.append((name, labels, float(match["value"])))
    return types, samples


def sample_value(samples: list[tuple[str, dict[str, str], float]], name: str,
                 **labels: str) -> float | None:
    return next((value for sample_name, sample_labels, value in samples
                 if sample_name == name and sample_labels == labels), None)


# --- in-test servers for the end-to-end happy path ---------------------------------------

def serve_forever_in_thread(
        handle: Callable[[socket.socket], None]) -> tuple[int, Callable[[], None]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stopping = threading.Event()

    def accept_loop() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle_safely, args=(conn,), daemon=True).start()

    def handle_safely(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            # The client side of each test reports what went wrong.
            with contextlib.suppress(OSError, AssertionError, ValueError, KeyError):
                handle(conn)

    def stop() -> None:
        stopping.set()
        listener.close()

    threading.Thread(target=accept_loop, daemon=True).start()
    return listener.getsockname()[1], stop


def recv_all(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def pg_message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def pg_read(conn: socket.socket) -> tuple[bytes, bytes]:
    kind, length = struct.unpack("!cI", recv_all(conn, 5))
    return kind, recv_all(conn, length - 4)


def pg_error(code: str, message: str) -> bytes:
    return pg_message(b"E", f"SFATAL\0VFATAL\0C{code}\0M{message}\0\0".encode())


def make_fake_postgres(user: str, password: str, database: str,
                       impostor: bool = False) -> Callable[[socket.socket], None]:
    """A PostgreSQL 15 stand-in doing the server side of SCRAM-SHA-256 on its own.

    An impostor does not know the password: it accepts any proof and cannot sign.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted if not impostor else secrets.token_bytes(32), b"Server Key",
                          "sha256").digest()

    def handle(conn: socket.socket) -> None:
        (length,) = struct.unpack("!I", recv_all(conn, 4))
        startup = recv_all(conn, length - 4)
        assert startup[:4] == struct.pack("!I", 196608)
        fields = startup[4:].rstrip(b"\0").split(b"\0")
        params = dict(zip(fields[::2], fields[1::2], strict=True))
        if params.get(b"user") != user.encode() or params.get(b"database") != database.encode():
            conn.sendall(pg_error("28000", f"no pg_hba.conf entry for {params!r}"))
            return
        conn.sendall(pg_message(b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0"))
        kind, body = pg_read(conn)
        mechanism, _, rest = body.partition(b"\0")
        assert kind == b"p" and mechanism == b"SCRAM-SHA-256"
        client_first = rest[4:].decode()
        assert client_first.startswith("n,,")
        client_first_bare = client_first[3:]
        client_nonce = dict(item.split("=", 1) for item in client_first_bare.split(","))["r"]
        nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
        conn.sendall(pg_message(b"R", struct.pack("!I", 11) + server_first.encode()))
        kind, body = pg_read(conn)
        client_final = body.decode()
        without_proof, _, proof = client_final.rpartition(",p=")
        assert without_proof == f"c=biws,r={nonce}"
        auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if hashlib.sha256(client_key).digest() != stored_key and not impostor:
            conn.sendall(pg_error("28P01", f'password authentication failed for user "{user}"'))
            return
        verifier = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest())
        conn.sendall(pg_message(b"R", struct.pack("!I", 12) + b"v=" + verifier)
                     + pg_message(b"R", struct.pack("!I", 0))
                     + pg_message(b"S", b"server_version\x0015.18\0")
                     + pg_message(b"K", struct.pack("!II", 4242, 1))
                     + pg_message(b"Z", b"I"))
        kind, body = pg_read(conn)
        assert (kind, body) == (b"Q", b"SELECT 1\0")
        conn.sendall(pg_message(b"T", struct.pack("!H", 1) + b"?column?\0" + bytes(18))
                     + pg_message(b"D", struct.pack("!HI", 1, 1) + b"1")
                     + pg_message(b"C", b"SELECT 1\0")
                     + pg_message(b"Z", b"I"))
        assert pg_read(conn)[0] == b"X"

    return handle


def make_fake_redis(password: str) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        authenticated = False
        while line := reader.readline():
            assert line.startswith(b"*")
            args = []
            for _ in range(int(line[1:])):
                size = int(reader.readline()[1:])
                args.append(reader.read(size + 2)[:-2].decode())
            if args[0] == "AUTH":
                authenticated = args[1:] == [password]
                conn.sendall(b"+OK\r\n" if authenticated else b"-WRONGPASS invalid password\r\n")
            elif not authenticated:
                conn.sendall(b"-NOAUTH Authentication required.\r\n")
            elif args == ["PING"]:
                conn.sendall(b"+PONG\r\n")
            else:
                conn.sendall(b"-ERR unknown command\r\n")

    return handle


@pytest.fixture
def fake_backends() -> Iterator[dict[str, str]]:
    pg_port, stop_pg = serve_forever_in_thread(
        make_fake_postgres("app", SPECIAL_PASSWORD, "app db"))
    redis_port, stop_redis = serve_forever_in_thread(make_fake_redis(SPECIAL_PASSWORD))
    password = quote(SPECIAL_PASSWORD, safe="")
    yield {"DATABASE_URL": f"postgresql://app:{password}@127.0.0.1:{pg_port}/app%20db",
           "REDIS_URL": f"redis://:{password}@127.0.0.1:{redis_port}/0"}
    stop_pg()
    stop_redis()


# --- protocol unit tests -------------------------------------------------------------------

RFC7677_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_FIRST = ("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_scram_client_first_message(app_module: ModuleType) -> None:
    assert app_module.make_client_first("user", RFC7677_NONCE) == f"n,,n=user,r={RFC7677_NONCE}"
    assert app_module.make_client_first("a=b,c", "x") == "n,,n=a=3Db=2Cc,r=x"


def test_scram_client_final_matches_rfc7677_vector(app_module: ModuleType) -> None:
    client_first_bare = app_module.make_client_first("user", RFC7677_NONCE)[3:]
    client_final, server_signature = app_module.compute_client_final(
        "pencil", client_first_bare, RFC7677_SERVER_FIRST, RFC7677_NONCE)
    assert client_final == ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert server_signature == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_rejects_a_server_nonce_that_does_not_extend_ours(app_module: ModuleType) -> None:
    with pytest.raises(app_module.CheckError, match="nonce"):
        app_module.compute_client_final("pencil", f"n=user,r={RFC7677_NONCE}",
                                        "r=somethingElse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                                        RFC7677_NONCE)


@pytest.mark.parametrize(("user", "password", "salt", "expected"), [
    # Both expected values were computed by PostgreSQL 15's own md5() over the same inputs.
    ("postgres", "secret", bytes.fromhex("01020304"), "md5bb41a296aab6baccb36ff243a562abff"),
    ("md5user", SPECIAL_PASSWORD, bytes.fromhex("9a7fc3e0"), "md5deb131ef78400105501d2d5e3cfcbcc8"),
])
def test_md5_password_hash(app_module: ModuleType, user: str, password: str, salt: bytes,
                           expected: str) -> None:
    assert app_module.hash_md5_password(user, password, salt) == expected
    inner = hashlib.md5((password + user).encode()).hexdigest()
    assert expected == "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def test_database_url_is_percent_decoded(app_module: ModuleType) -> None:
    password = quote(SPECIAL_PASSWORD, safe="")
    target = app_module.parse_url(f"postgresql://us%40er:{password}@db.internal:6543/app%20db",
                                  "postgresql")
    assert target == ("db.internal", 6543, "us@er", SPECIAL_PASSWORD, "app db")
    assert app_module.parse_url("postgres://postgres@pg", "postgresql")[1:] == (
        5432, "postgres", "", "postgres")


def test_redis_url_forms(app_module: ModuleType) -> None:
    assert app_module.parse_url("redis://cache:6380", "redis") == ("cache", 6380, "", "", "0")
    assert app_module.parse_url("redis://:s%20cret@cache/2", "redis") == (
        "cache", 6379, "", "s cret", "2")


def test_malformed_url_errors_do_not_leak_the_password(app_module: ModuleType) -> None:
    with pytest.raises(app_module.CheckError) as raised:
        app_module.parse_url("postgresql://app:hunter2/x@db:5432/app", "postgresql")
    assert "hunter2" not in str(raised.value)
    with pytest.raises(app_module.CheckError, match="scheme"):
        app_module.parse_url("mysql://app@db/app", "postgresql")


def test_scram_rejects_a_server_that_cannot_prove_it_knows_the_password(
        app_module: ModuleType) -> None:
    port, stop = serve_forever_in_thread(make_fake_postgres("app", "secret", "app",
                                                            impostor=True))
    try:
        with pytest.raises(app_module.CheckError, match="signature"):
            app_module.check_database(f"postgresql://app:guess@127.0.0.1:{port}/app")
    finally:
        stop()


def test_postgres_error_response_is_formatted(app_module: ModuleType) -> None:
    body = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "app"\0\0'
    assert app_module.format_pg_error(body) == (
        'FATAL 28P01: password authentication failed for user "app"')


def test_redis_commands_are_sent_as_bulk_strings(app_module: ModuleType) -> None:
    encoded = app_module.encode_redis_command("AUTH", "a b\"c")
    assert encoded == b"*2\r\n$4\r\nAUTH\r\n$5\r\na b\"c\r\n"


@pytest.mark.parametrize(("hostname", "expected"), [
    ("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("[::]", "::"),
    ("3f4e5a6b7c8d", "0.0.0.0"), ("api.internal", "0.0.0.0"), ("", "0.0.0.0"),
])
def test_bind_address_only_trusts_ip_literals(app_module: ModuleType, hostname: str,
                                              expected: str) -> None:
    assert app_module.choose_bind_address(hostname) == expected


# --- the running service -------------------------------------------------------------------

def test_index_reports_configuration_without_secrets(start_app: Callable[..., RunningApp]) -> None:
    urls = closed_port_urls()
    app = start_app(DB_POOL_SIZE="7", HOSTNAME="3f4e5a6b7c8d", **urls)
    status, body = app.get_json("/")
    assert status == 200
    assert body["service"] == "cirkelline reference api"
    assert body["version"]
    assert body["db_pool_size"] == 7
    assert body["database"]["host"] == "127.0.0.1" and body["database"]["name"] == "appdb"
    assert body["cache"]["host"] == "127.0.0.1"
    app.get("/health")
    encoded = quote(SPECIAL_PASSWORD, safe="")
    for text in (json.dumps(body), app.log()):
        assert SPECIAL_PASSWORD not in text and encoded not in text


def test_missing_urls_are_reported_not_fatal(start_app: Callable[..., RunningApp]) -> None:
    app = start_app()
    status, body = app.get_json("/")
    assert status == 200
    assert body["database"] == body["cache"] == {"error": "not configured"}
    status, body = app.get_json("/health")
    assert status == 503 and body["database"]["error"] == "not configured"


def test_unknown_path_is_a_json_404(start_app: Callable[..., RunningApp]) -> None:
    app = start_app(**closed_port_urls())
    status, body = app.get_json("/does/not/exist?token=abc")
    assert status == 404 and body["error"] == "not found"
    assert app.get("/", method="POST")[0] == 405
    assert "token=abc" not in app.log()


def test_health_is_503_naming_both_dependencies_when_down(
        start_app: Callable[..., RunningApp]) -> None:
    app = start_app(**closed_port_urls())
    started = time.monotonic()
    status, body = app.get_json("/health")
    assert time.monotonic() - started < 2.5
    assert status == 503
    assert body["status"] == "degraded"
    assert body["database"]["status"] == "down" and "refused" in body["database"]["error"]
    assert body["cache"]["status"] == "down" and "refused" in body["cache"]["error"]
    assert app.process.poll() is None, "the service must keep running"
    assert app.get_json("/health")[0] == 503


def test_health_checks_run_in_parallel_with_short_timeouts(
        start_app: Callable[..., RunningApp]) -> None:
    # Listening sockets that are never accepted: connecting works, answers never come.
    silent = [socket.socket(), socket.socket()]
    for sock in silent:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
    try:
        db_port, redis_port = (sock.getsockname()[1] for sock in silent)
        app = start_app(DATABASE_URL=f"postgresql://app:pw@127.0.0.1:{db_port}/app",
                        REDIS_URL=f"redis://127.0.0.1:{redis_port}")
        started = time.monotonic()
        status, body = app.get_json("/health")
        elapsed = time.monotonic() - started
    finally:
        for sock in silent:
            sock.close()
    assert status == 503
    assert body["database"]["status"] == body["cache"]["status"] == "down"
    assert 0.8 < elapsed < 1.8, f"two 1 s checks took {elapsed:.2f} s: not parallel"


def test_health_is_200_against_servers_that_verify_the_protocol(
        start_app: Callable[..., RunningApp], fake_backends: dict[str, str]) -> None:
    app = start_app(**fake_backends)
    status, body = app.get_json("/health")
    assert (status, body["status"]) == (200, "ok"), body
    assert body["database"]["status"] == body["cache"]["status"] == "ok"
    _, samples = parse_prometheus(app.get("/metrics")[2].decode())
    assert sample_value(samples, "api_dependency_up", dependency="database") == 1
    assert sample_value(samples, "api_dependency_up", dependency="cache") == 1


def test_health_surfaces_authentication_errors(
        start_app: Callable[..., RunningApp], fake_backends: dict[str, str]) -> None:
    wrong = {name: url.replace(quote(SPECIAL_PASSWORD, safe=""), "wrong")
             for name, url in fake_backends.items()}
    app = start_app(**wrong)
    status, body = app.get_json("/health")
    assert status == 503
    assert body["database"]["error"] == 'FATAL 28P01: password authentication failed for user "app"'
    assert body["cache"]["error"].startswith("WRONGPASS")


def test_metrics_are_valid_prometheus_text(start_app: Callable[..., RunningApp]) -> None:
    app = start_app(**closed_port_urls())
    for path in ("/", "/health", "/nope", "/nope/again", "/metrics"):
        app.get(path)
    status, content_type, body = app.get("/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse_prometheus(body.decode())
    assert types["http_requests_total"] == "counter"
    assert types["http_request_duration_seconds"] in ("histogram", "summary")
    assert types["api_dependency_up"] == types["process_start_time_seconds"] == "gauge"
    assert sample_value(samples, "http_requests_total", method="GET", path="/", code="200") == 1
    assert sample_value(samples, "http_requests_total", method="GET", path="other",
                        code="404") == 2
    assert sample_value(samples, "http_requests_total", method="GET", path="/health",
                        code="503") == 1
    assert sample_value(samples, "api_dependency_up", dependency="database") == 0
    assert sample_value(samples, "api_dependency_up", dependency="cache") == 0
    assert 0 < (sample_value(samples, "process_start_time_seconds") or 0) <= time.time()
    assert any(name == "api_info" and "version" in labels and value == 1
               for name, labels, value in samples)
    assert not any("/nope" in labels.get("path", "") for _, labels, _ in samples)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_service_promptly(start_app: Callable[..., RunningApp],
                                           signum: signal.Signals) -> None:
    app = start_app(**closed_port_urls())
    assert app.get("/")[0] == 200
    app.process.send_signal(signum)
    # exits cleanly on the signal: a service that ignored it would still run after 5 s
    # (Docker's stop would then wait out its grace period and kill it)
    assert app.process.wait(timeout=5) == 0


def test_dockerfile_runs_app_unprivileged_without_installing_anything() -> None:
    lines = [line.strip() for line in DOCKERFILE_PATH.read_text().splitlines()]
    assert lines[:2] == ["ARG BASE_IMAGE=python:3.12-slim", "FROM ${BASE_IMAGE}"]
    assert "EXPOSE 7777" in lines
    assert 'CMD ["python3", "/app/app.py"]' in lines
    assert any(line.startswith("USER ") and "root" not in line and line != "USER 0"
               for line in lines)
    assert not any(line.startswith("RUN ") for line in lines)
