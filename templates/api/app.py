#!/usr/bin/env python3
"""cirkelline reference api: the backend devenv runs when a team has no image of its own.
Standard library only, so the image needs nothing but python3 >= 3.9 and builds offline."""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO, NamedTuple
from urllib.parse import unquote, urlsplit

SERVICE = "cirkelline reference api"
VERSION = "1.0.0"
CHECK_TIMEOUT = 1.0
DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379}
KNOWN_PATHS = ("/", "/health", "/metrics")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class CheckError(Exception):
    """A dependency problem whose message is safe and useful to show verbatim in /health."""


class Target(NamedTuple):
    host: str
    port: int
    user: str
    password: str
    name: str  # database name for PostgreSQL, database number for Redis


def log(message: str) -> None:
    print(time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) + message, flush=True)


def read_int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name) or default)
    except ValueError:
        log(f"ignoring {name}={env.get(name)!r}: not an integer, using {default}")
        return default


def parse_url(url: str, scheme: str) -> Target:
    """Parse DATABASE_URL (scheme "postgresql") or REDIS_URL (scheme "redis")."""
    if not url:
        raise CheckError("not configured")
    parts = urlsplit(url)
    if parts.scheme not in (("postgresql", "postgres") if scheme == "postgresql" else (scheme,)):
        raise CheckError(f"unsupported URL scheme {parts.scheme!r}, expected {scheme}://")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:  # its message quotes the "port", maybe a piece of an unencoded password
        raise CheckError("malformed URL (is the password percent-encoded?)") from None
    user, name = unquote(parts.username or ""), unquote(parts.path.strip("/"))
    if scheme == "redis":
        return Target(parts.hostname or "localhost", port, user, unquote(parts.password or ""),
                      name or "0")
    return Target(parts.hostname or "localhost", port, user or "postgres",
                  unquote(parts.password or ""), name or user or "postgres")


def describe_target(url: str, scheme: str) -> dict[str, object]:
    try:
        target = parse_url(url, scheme)
    except CheckError as exc:
        return {"error": str(exc)}
    return {"host": target.host, "port": target.port, "name": target.name}


def open_stream(target: Target) -> BinaryIO:
    try:
        sock = socket.create_connection((target.host, target.port), timeout=CHECK_TIMEOUT)
    except socket.gaierror as exc:
        raise CheckError(f"cannot resolve {target.host}: {exc.strerror}") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CheckError(f"cannot connect to {target.host}:{target.port}: {reason}") from None
    with sock:  # the stream keeps its own reference; closing it closes the connection
        return sock.makefile("rwb")  # type: ignore[return-value]


def read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise CheckError("connection closed by server")
    return data


def hash_md5_password(user: str, password: str, salt: bytes) -> str:
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def prepare_scram_password(password: str) -> bytes:
    # PostgreSQL SASLprep-normalises passwords: the identity for ASCII; mapping odd spaces
    # and NFKC covers what people actually type otherwise.
    spaced = "".join(" " if unicodedata.category(c) == "Zs" else c for c in password)
    return (password if password.isascii() else unicodedata.normalize("NFKC", spaced)).encode()


def make_client_first(user: str, nonce: str) -> str:
    return f"n,,n={user.replace('=', '=3D').replace(',', '=2C')},r={nonce}"


def parse_scram_attributes(message: str) -> dict[str, str]:
    return {key: value for key, _, value in (item.partition("=") for item in message.split(","))}


def compute_client_final(password: str, client_first_bare: str, server_first: str,
                         client_nonce: str) -> tuple[str, str]:
    """Return the client-final message and the signature the server must answer with."""
    attrs = parse_scram_attributes(server_first)
    nonce = attrs.get("r", "")
    if not nonce.startswith(client_nonce) or nonce == client_nonce:
        raise CheckError("SCRAM server nonce does not extend the client nonce")
    salted = hashlib.pbkdf2_hmac("sha256", prepare_scram_password(password),
                                 base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    without_proof = f"c=biws,r={nonce}"  # biws = base64("n,,"): no channel binding
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    client_signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message,
                                hashlib.sha256).digest()
    proof = int.from_bytes(client_key, "big") ^ int.from_bytes(client_signature, "big")
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    return (f"{without_proof},p={base64.b64encode(proof.to_bytes(32, 'big')).decode()}",
            base64.b64encode(server_signature).decode())


def format_pg_error(body: bytes) -> str:
    fields = {c[:1]: c[1:].decode("utf-8", "replace") for c in body.split(b"\0") if c}
    severity = fields.get(b"V") or fields.get(b"S") or "ERROR"
    return f"{severity} {fields.get(b'C', '?????')}: {fields.get(b'M', 'unknown error')}"


def send_pg_message(stream: BinaryIO, kind: bytes, body: bytes) -> None:
    stream.write(kind + struct.pack("!I", len(body) + 4) + body)
    stream.flush()


def read_pg_message(stream: BinaryIO) -> tuple[bytes, bytes]:
    while True:
        kind, length = struct.unpack("!cI", read_exact(stream, 5))
        if not 4 <= length <= 1 << 20:
            raise CheckError("not a PostgreSQL server (implausible message length)")
        body = read_exact(stream, length - 4)
        if kind == b"E":
            raise CheckError(format_pg_error(body))
        if kind != b"N":  # notices are chatter, not answers
            return kind, body


def authenticate_pg(stream: BinaryIO, target: Target) -> None:
    nonce = client_first_bare = server_signature = ""
    while True:
        kind, body = read_pg_message(stream)
        code = struct.unpack("!I", body[:4])[0] if kind == b"R" else -1
        if code == 0:
            return
        if code in (3, 5, 10) and not target.password:
            raise CheckError("server asks for a password but DATABASE_URL has none")
        if code == 3:
            send_pg_message(stream, b"p", target.password.encode() + b"\0")
        elif code == 5:
            md5 = hash_md5_password(target.user, target.password, body[4:8])
            send_pg_message(stream, b"p", md5.encode() + b"\0")
        elif code == 10 and b"SCRAM-SHA-256" in body[4:].split(b"\0"):
            nonce = base64.b64encode(secrets.token_bytes(18)).decode()
            # PostgreSQL takes the user from the startup message; libpq leaves it empty too.
            first = make_client_first("", nonce)
            client_first_bare = first[3:]
            initial = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first.encode()
            send_pg_message(stream, b"p", initial)
        elif code == 11:
            final, server_signature = compute_client_final(
                target.password, client_first_bare, body[4:].decode(), nonce)
            send_pg_message(stream, b"p", final.encode())
        elif code == 12:
            # Unchecked, an impostor could accept any password and pass for a healthy database.
            received = parse_scram_attributes(body[4:].decode()).get("v", "")
            if not hmac.compare_digest(received, server_signature):
                raise CheckError("SCRAM server signature mismatch")
        else:
            raise CheckError(f"unsupported authentication request {kind!r} {code} {body[4:40]!r}")


def run_sql(url: str, sql: str, application_name: str = "health-check") -> None:
    """Run SQL (one or more statements: one implicit transaction) with the simple query
    protocol; an ErrorResponse raises CheckError."""
    target = parse_url(url, "postgresql")
    params = {"user": target.user, "database": target.name,
              "application_name": application_name}
    startup = struct.pack("!I", 196608) + b"".join(  # 196608: protocol 3.0
        f"{key}\0{value}\0".encode() for key, value in params.items()) + b"\0"
    with open_stream(target) as stream:
        send_pg_message(stream, b"", startup)
        authenticate_pg(stream, target)
        while read_pg_message(stream)[0] != b"Z":  # parameters and key data, then ready
            pass
        send_pg_message(stream, b"Q", sql.encode() + b"\0")
        while read_pg_message(stream)[0] != b"Z":
            pass
        send_pg_message(stream, b"X", b"")


def check_database(url: str) -> None:
    run_sql(url, "SELECT 1")


# The reference API's schema, applied by `python3 /app/app.py migrate` (DEVENV_API_MIGRATE).
# Each step is idempotent and records itself in schema_migrations in the same transaction.
MIGRATIONS = (
    ("0001_agents", "CREATE TABLE IF NOT EXISTS agents (id serial PRIMARY KEY, "
                    "name text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now())"),
)


def migrate(env: Mapping[str, str], wait_seconds: float = 30.0) -> int:
    url = env.get("DATABASE_URL", "")
    deadline = time.monotonic() + wait_seconds
    while True:  # the database may still be starting
        try:
            run_sql(url, "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY "
                         "KEY, applied_at timestamptz NOT NULL DEFAULT now())", "migrate")
            break
        except CheckError as exc:
            if time.monotonic() > deadline or "ERROR" in str(exc):
                log(f"migrate: cannot reach the database: {exc}")
                return 1
            time.sleep(0.5)
    for version, sql in MIGRATIONS:
        try:
            run_sql(url, f"{sql}; INSERT INTO schema_migrations (version) VALUES "
                         f"('{version}') ON CONFLICT DO NOTHING", "migrate")
        except CheckError as exc:
            log(f"migrate: {version} failed: {exc}")
            return 1
        log(f"migrate: {version} applied")
    return 0


def encode_redis_command(*args: str) -> bytes:
    # Bulk strings, unlike inline commands, keep passwords with spaces or quotes intact.
    encoded = [arg.encode() for arg in args]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded)


def check_cache(url: str) -> None:
    target = parse_url(url, "redis")
    commands: list[tuple[str, ...]] = [("PING",)]
    if target.name != "0":
        commands.insert(0, ("SELECT", target.name))
    if target.password:  # with a user name it is a Redis 6 ACL login, else requirepass
        commands.insert(0, ("AUTH", target.user, target.password) if target.user
                        else ("AUTH", target.password))
    with open_stream(target) as stream:
        for command in commands:
            stream.write(encode_redis_command(*command))
            stream.flush()
            reply = stream.readline(4096).rstrip(b"\r\n")
            if not reply:
                raise CheckError("connection closed by server")
            if reply.startswith(b"-"):
                raise CheckError(reply[1:].decode("utf-8", "replace"))
    if reply != b"+PONG":
        raise CheckError(f"unexpected reply to PING: {reply[:40]!r}")


def run_checks(checks: dict[str, Callable[[], None]]) -> dict[str, dict]:
    """Run the checks in parallel, so /health takes CHECK_TIMEOUT at most, not their sum."""
    results: dict[str, dict] = {}

    def run(name: str, check: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            check()
            result: dict[str, object] = {"status": "ok"}
        except Exception as exc:  # a health check reports failures, it never raises them
            result = {"status": "down", "error": str(exc) or type(exc).__name__}
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = result

    # Daemon threads: a lookup stuck in getaddrinfo must hold up neither the reply nor exit.
    threads = [threading.Thread(target=run, args=item, daemon=True) for item in checks.items()]
    deadline = time.monotonic() + CHECK_TIMEOUT + 0.2
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = {"status": "down", "error": f"no answer within {CHECK_TIMEOUT:g} s"}
    return {name: results.get(name, late) for name in checks}


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.buckets: dict[str, list[int]] = {}  # path -> cumulative count per bucket
        self.sums: dict[str, float] = {}
        self.dependency_up = {"database": 0, "cache": 0}

    def observe(self, method: str, path: str, code: int, seconds: float) -> None:
        with self.lock:
            self.requests[method, path, code] = self.requests.get((method, path, code), 0) + 1
            counts = self.buckets.setdefault(path, [0] * len(BUCKETS))
            for index, bound in enumerate(BUCKETS):
                counts[index] += seconds <= float(bound)
            self.sums[path] = self.sums.get(path, 0.0) + seconds

    def render(self) -> str:
        def family(name: str, kind: str, text: str) -> list[str]:
            return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]

        lines = family("http_requests_total", "counter", "HTTP requests answered.")
        with self.lock:
            lines += [f'http_requests_total{{method="{m}",path="{p}",code="{c}"}} {n}'
                      for (m, p, c), n in sorted(self.requests.items())]
            lines += family("http_request_duration_seconds", "histogram", "Time to answer.")
            for path, counts in sorted(self.buckets.items()):
                name = "http_request_duration_seconds"
                lines += [f'{name}_bucket{{path="{path}",le="{BUCKETS[i]}"}} {n}'
                          for i, n in enumerate(counts)]
                lines.append(f'{name}_sum{{path="{path}"}} {self.sums[path]}')
                lines.append(f'{name}_count{{path="{path}"}} {counts[-1]}')
            lines += family("api_dependency_up", "gauge", "1 if the last /health reached it.")
            lines += [f'api_dependency_up{{dependency="{dependency}"}} {up}'
                      for dependency, up in self.dependency_up.items()]
        lines += family("process_start_time_seconds", "gauge", "Start time, Unix epoch seconds.")
        lines.append(f"process_start_time_seconds {self.started:.3f}")
        lines += family("api_info", "gauge", "Version of the reference API.")
        lines.append(f'api_info{{version="{VERSION}"}} 1')
        return "\n".join(lines) + "\n"


class App:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.database_url = env.get("DATABASE_URL", "")
        self.redis_url = env.get("REDIS_URL", "")
        self.pool_size = read_int(env, "DB_POOL_SIZE", 20)
        self.db_slots = threading.BoundedSemaphore(max(1, self.pool_size))
        self.metrics = Metrics()

    def check_database(self) -> None:
        # A /health storm must not open more connections than the pool the team budgeted.
        if not self.db_slots.acquire(timeout=CHECK_TIMEOUT):
            raise CheckError(f"DB_POOL_SIZE ({self.pool_size}) checks already running")
        try:
            check_database(self.database_url)
        finally:
            self.db_slots.release()

    def health(self) -> tuple[int, dict]:
        results = run_checks({"database": self.check_database,
                              "cache": lambda: check_cache(self.redis_url)})
        healthy = all(result["status"] == "ok" for result in results.values())
        with self.metrics.lock:
            for name, result in results.items():
                self.metrics.dependency_up[name] = int(result["status"] == "ok")
        return (200 if healthy else 503), {"status": "ok" if healthy else "degraded", **results}

    def describe(self) -> dict[str, object]:
        return {"service": SERVICE, "version": VERSION, "db_pool_size": self.pool_size,
                "database": describe_target(self.database_url, "postgresql"),
                "cache": describe_target(self.redis_url, "redis")}

    def route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, METRICS_TYPE, self.metrics.render().encode()
        if path == "/health":
            code, payload = self.health()
        elif path == "/":
            code, payload = 200, self.describe()
        else:
            code, payload = 404, {"error": "not found", "path": path}
        return code, JSON_TYPE, json.dumps(payload).encode() + b"\n"


class Handler(BaseHTTPRequestHandler):
    server_version = f"cirkelline-reference-api/{VERSION}"
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections must not pin threads forever

    def do_GET(self) -> None:
        self.answer(send_body=True)

    def do_HEAD(self) -> None:
        self.answer(send_body=False)

    def reject_method(self) -> None:
        self.answer(send_body=True, result=(405, JSON_TYPE, b'{"error": "method not allowed"}\n'))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = reject_method

    def answer(self, send_body: bool, result: tuple[int, str, bytes] | None = None) -> None:
        started = time.perf_counter()
        path = urlsplit(self.path).path  # query strings stay out of logs and metrics
        app: App = self.server.app  # type: ignore[attr-defined]
        try:
            code, content_type, body = result or app.route(path)
        except Exception as exc:  # one broken request must not take the service down
            log(f"error answering {path}: {exc!r}")
            code, content_type, body = 500, JSON_TYPE, b'{"error": "internal error"}\n'
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if code == 405:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        self.wfile.write(body if send_body else b"")
        elapsed = time.perf_counter() - started
        app.metrics.observe(self.command, path if path in KNOWN_PATHS else "other", code, elapsed)
        log(f'{self.client_address[0]} "{self.command} {path}" {code} {elapsed * 1000:.1f}ms')

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # answer() logs each request once, with its duration

    def log_message(self, format: str, *args: object) -> None:
        log(f"{self.client_address[0]} {format % args}")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls getfqdn(), a DNS round trip that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


def choose_bind_address(hostname: str) -> str:
    # Docker sets HOSTNAME to the container id, which is no address to bind to.
    try:
        return str(ipaddress.ip_address(hostname.strip("[]")))
    except ValueError:
        return "0.0.0.0"


def main() -> int:
    app = App(os.environ)
    host = choose_bind_address(os.environ.get("HOSTNAME", "0.0.0.0"))
    port = read_int(os.environ, "PORT", 7777)
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = Server((host, port), Handler)
    except OSError as exc:
        log(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    server.app = app  # type: ignore[attr-defined]

    # As PID 1 in a container SIGTERM has no default action. shutdown() waits for
    # serve_forever() to return, so it must not run on the main thread that serves.
    def request_stop(signum: int, _frame: object) -> None:
        log(f"received {signal.Signals(signum).name}, shutting down")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log(f"{SERVICE} {VERSION} listening on {host}:{port}: {json.dumps(app.describe())}")
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(migrate(os.environ) if sys.argv[1:] == ["migrate"] else main())
