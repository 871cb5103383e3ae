"""Protocol-level readiness probes from the host, and the parallel wait loop.

A TCP connect proves nothing: Docker's proxy accepts on the published port before the service
inside listens. Each probe speaks the service's protocol and wants the service's own answer.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .catalog import ProbeSpec

POLL_SECONDS = 0.1
PROBE_TIMEOUT = 1.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


def probe_http(host: str, port: int, path: str, timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """GET `path`; a 2xx status line is an answer. HTTP/1.0 by hand: http.client would
    cost `devenv ports` the import of the email package."""
    host = host.strip("[]")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (f"GET {path} HTTP/1.0\r\nHost: {authority}\r\n"
               "User-Agent: devenv-probe\r\n\r\n").encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            line = _recv_line(sock)
    except (OSError, EOFError) as exc:
        return ProbeResult(False, f"GET {path}: {_why(exc)}")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return ProbeResult(False, f"GET {path}: not an HTTP answer: {line[:60]!r}")
    status = int(parts[1])
    if 200 <= status < 300:
        return ProbeResult(True, f"GET {path} -> {status}")
    return ProbeResult(False, f"GET {path} -> {line.split(' ', 1)[1]}")


def probe_postgres(host: str, port: int, user: str, database: str,
                   timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """Send a StartupMessage; the server is ready when it asks us to authenticate.

    This is pg_isready's test: 'R' (an authentication request) means the postmaster accepts
    connections; SQLSTATE 57P03 means it is still starting (or shutting down).
    """
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", user), ("database", database),
                                   ("application_name", "devenv-probe"))) + b"\0"
    startup = struct.pack("!ii", 8 + len(params), 196608) + params
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            sock.sendall(startup)
            kind = _recv_exact(sock, 1)
            length = struct.unpack("!i", _recv_exact(sock, 4))[0]
            body = _recv_exact(sock, max(0, length - 4)) if length < 65536 else b""
            if kind == b"R":
                # Close without answering: the server ends the session silently, where a
                # Terminate message during authentication would log a FATAL line.
                return ProbeResult(True, "accepting connections")
    except (OSError, EOFError) as exc:
        return ProbeResult(False, f"startup: {_why(exc)}")
    if kind == b"E":
        fields = _error_fields(body)
        code, message = fields.get("C", ""), fields.get("M", "error")
        if code == "57P03":
            return ProbeResult(False, f"{message} ({code})")
        # Any other early error (pg_hba, too many clients) still means the server answers.
        return ProbeResult(True, f"answers: {message} ({code})")
    return ProbeResult(False, f"startup: unexpected message {kind!r}")


def probe_redis(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            line = _recv_line(sock)
    except (OSError, EOFError) as exc:
        return ProbeResult(False, f"PING: {_why(exc)}")
    if line == "+PONG":
        return ProbeResult(True, "PING -> +PONG")
    if line.startswith("-NOAUTH"):
        return ProbeResult(True, "answers (password required)")
    return ProbeResult(False, f"PING -> {line[:80]}")


def run_probe(spec: ProbeSpec, host: str, port: int, values: Mapping[str, str]) -> ProbeResult:
    if spec.kind == "http":
        return probe_http(host, port, spec.path)
    if spec.kind == "postgres":
        return probe_postgres(host, port, values["DEVENV_POSTGRES_USER"],
                              values["DEVENV_POSTGRES_DB"])
    if spec.kind == "redis":
        return probe_redis(host, port)
    raise ValueError(f"unknown probe kind {spec.kind!r}")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed before the service answered")
        data += chunk
    return data


def _recv_line(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data and len(data) < 4096:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("connection closed before the service answered")
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def _error_fields(body: bytes) -> dict[str, str]:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "no answer within 1 s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset (nothing listens inside the container yet)"
    return str(exc) or type(exc).__name__


# --- the parallel wait ----------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    service: str
    probe: ProbeSpec
    host: str
    port: int


@dataclass(frozen=True)
class WaitEvent:
    service: str
    state: str  # waiting | ready | failed
    elapsed: float
    detail: str


def probe_all(targets: Sequence[Target], values: Mapping[str, str],
              timeout: float = PROBE_TIMEOUT) -> dict[str, ProbeResult]:
    """One probe of each target, all at once: what `ports` and `status` check."""
    results: dict[str, ProbeResult] = {}

    def one(target: Target) -> None:
        results[target.service] = run_probe(target.probe, target.host, target.port, values)

    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 1)
    return {t.service: results.get(t.service, ProbeResult(False, "no answer")) for t in targets}


@dataclass(frozen=True)
class WaitResult:
    ready: dict[str, float]  # service -> seconds to ready
    exited: dict[str, str]  # service -> why its container stopped (exit, restart)
    timed_out: dict[str, str]  # service -> its last probe error at the deadline

    @property
    def ok(self) -> bool:
        return not self.exited and not self.timed_out


def wait_until_ready(
    targets: Sequence[Target],
    values: Mapping[str, str],
    timeout: float,
    check_alive: Callable[[], dict[str, str]] | None = None,
    on_event: Callable[[WaitEvent], None] | None = None,
    alive_interval: float = 0.25,
    since: float | None = None,
) -> WaitResult:
    """Probe every target in parallel, every POLL_SECONDS, until all answer or the deadline.

    check_alive() returns {service: why} for containers that exited or restarted; the wait
    then fails at once instead of running into the deadline. Times are reported from
    `since` (a time.monotonic() value, e.g. when `up` began), else from the wait's start.
    """
    from tenacity import RetryError, Retrying, retry_if_result, wait_fixed

    deadline = time.monotonic() + timeout
    start = since if since is not None else time.monotonic()
    cancel = threading.Event()
    all_done = threading.Event()
    lock = threading.Lock()
    last: dict[str, ProbeResult] = {}
    ready: dict[str, float] = {}
    exited: dict[str, str] = {}
    remaining = [len(targets)]
    emit = on_event or (lambda event: None)

    def stop(_state: object) -> bool:
        return cancel.is_set() or time.monotonic() >= deadline

    def watch(target: Target) -> None:
        def attempt() -> ProbeResult:
            result = run_probe(target.probe, target.host, target.port, values)
            with lock:
                last[target.service] = result
            return result

        try:
            result = Retrying(stop=stop, wait=wait_fixed(POLL_SECONDS),
                              retry=retry_if_result(lambda r: not r.ok))(attempt)
            elapsed = time.monotonic() - start
            with lock:
                ready[target.service] = elapsed
            emit(WaitEvent(target.service, "ready", elapsed, result.detail))
        except RetryError:
            pass
        finally:
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    all_done.set()

    for target in targets:
        emit(WaitEvent(target.service, "waiting", time.monotonic() - start,
                       f"{target.host}:{target.port}"))
    if not targets:
        all_done.set()
    for target in targets:
        threading.Thread(target=watch, args=(target,), daemon=True,
                         name=f"probe-{target.service}").start()
    try:
        while not all_done.wait(alive_interval):
            if check_alive is None:
                continue
            with lock:
                waiting = {t.service for t in targets} - set(ready)
            dead = {s: why for s, why in check_alive().items() if s in waiting}
            if dead:
                exited.update(dead)
                break
    finally:
        cancel.set()
        all_done.wait(PROBE_TIMEOUT + 0.5)
    elapsed = time.monotonic() - start
    for service, why in exited.items():
        emit(WaitEvent(service, "failed", elapsed, why))
    timed_out = {}
    for target in targets:
        if target.service in ready or target.service in exited:
            continue
        detail = last[target.service].detail if target.service in last else "no answer yet"
        timed_out[target.service] = detail
        if not exited:
            emit(WaitEvent(target.service, "failed", elapsed,
                           f"not ready after {timeout:g} s; last probe: {detail}"))
    if exited:
        timed_out = {}  # the others were cut short, not timed out
    return WaitResult(ready=ready, exited=exited, timed_out=timed_out)
