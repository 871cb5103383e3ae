"""Protocol-level readiness probes from the host, and the parallel wait loop.

A TCP connect proves nothing: Docker's proxy accepts on the published port before the service
inside listens. Each probe speaks the service's protocol and wants the service's own answer.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .config.catalog import ProbeSpec

#: numbers in a server's answer, ASCII digits only (str.isdigit() also takes `²` and `٥`)
_STATUS = re.compile(r"[1-9][0-9]{2}")
_WHOLE = re.compile(r"[1-9][0-9]{0,9}")

POLL_SECONDS = 0.1
PROBE_TIMEOUT = 1.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


@dataclass(frozen=True)
class TlsRoute:
    """Probe through the HTTPS proxy: TLS to the proxy's published port with this server
    name (SNI and Host), trusting only devenv's CA. The name is never resolved (glibc does
    not resolve *.localhost): the connection goes to the target's host."""

    server_name: str
    port: int
    cafile: str


def probe_http(host: str, port: int, path: str, timeout: float = PROBE_TIMEOUT,
               any_status: bool = False, tls: TlsRoute | None = None) -> ProbeResult:
    """GET `path`; a 2xx status line is an answer (any status line with `any_status`: a
    server behind a tunnel answers even with 404). HTTP/1.0 by hand: http.client would
    cost `devenv ports` the import of the email package. With `tls`, through the proxy."""
    host = host.strip("[]")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is not None:
        port, authority = tls.port, f"{tls.server_name}:{tls.port}"
    request = (f"GET {path} HTTP/1.0\r\nHost: {authority}\r\n"
               "User-Agent: devenv-probe\r\n\r\n").encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = _tls_wrap(raw, tls) if tls is not None else raw
            sock.sendall(request)
            line = _recv_line(sock)
    except (OSError, EOFError) as exc:
        return ProbeResult(False, f"GET {path}: {_why(exc)}")
    parts = line.split(" ", 2)
    # three ASCII digits: isdigit() also takes `²00`, which int() refuses
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _STATUS.fullmatch(parts[1]):
        return ProbeResult(False, f"GET {path}: not an HTTP answer: {line[:60]!r}")
    status = int(parts[1])
    if 200 <= status < 300 or any_status:
        return ProbeResult(True, f"GET {path} -> {status}")
    return ProbeResult(False, f"GET {path} -> {line.split(' ', 1)[1]}")


def _tls_wrap(sock: socket.socket, tls: TlsRoute) -> socket.socket:
    import ssl

    context = ssl.create_default_context(cafile=tls.cafile)
    return context.wrap_socket(sock, server_hostname=tls.server_name)


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


# --- PostgreSQL login: the client side of its authentication --------------------------
#: SQLSTATEs that mean "these credentials do not open this database"
LOGIN_REFUSED = {"28P01": "password", "28000": "role", "3D000": "database"}


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    detail: str
    #: the server's SQLSTATE when it refused (28P01 wrong password, 28000 no such role or
    #: no pg_hba entry, 3D000 no such database); "" when it let us in or never answered
    code: str = ""

    @property
    def refused(self) -> bool:
        """The server answered and refused these credentials (not: it was unreachable)."""
        return self.code in LOGIN_REFUSED


class ScramClient:
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) as a PostgreSQL client speaks it, without
    channel binding. PostgreSQL takes the user from the startup message, so the SCRAM
    user name may stay empty."""

    def __init__(self, password: str, user: str = "", nonce: str | None = None):
        import base64
        import secrets

        self.password = password
        self.nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}"
        self._server_signature = b""

    def first(self) -> str:
        return "n,," + self.first_bare

    def final(self, server_first: str) -> str:
        import base64
        import hashlib
        import hmac

        fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
        nonce, salt, iterations = fields.get("r", ""), fields.get("s", ""), fields.get("i", "")
        if not nonce.startswith(self.nonce) or not salt or not _WHOLE.fullmatch(iterations):
            raise ValueError(f"not a SCRAM server-first message: {server_first[:80]!r}")
        salted = hashlib.pbkdf2_hmac("sha256", saslprep(self.password).encode(),
                                     base64.b64decode(salt), int(iterations))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={base64.b64encode(b'n,,').decode()},r={nonce}"
        auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify(self, server_final: str) -> bool:
        """The server proved it knows the password too (v=...)."""
        import base64
        import hmac

        fields = dict(item.split("=", 1) for item in server_final.split(",") if "=" in item)
        try:
            sent = base64.b64decode(fields.get("v", ""), validate=True)
        except ValueError:
            return False
        return bool(self._server_signature) and hmac.compare_digest(sent,
                                                                    self._server_signature)


def saslprep(password: str) -> str:
    """The password as PostgreSQL's SCRAM uses it (RFC 4013 SASLprep, as pg_saslprep):
    non-ASCII spaces become spaces, "mapped to nothing" characters go, then NFKC. A
    password with a prohibited or unassigned character (or broken bidi) is used as is."""
    import stringprep
    import unicodedata

    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch for ch in password
                     if not stringprep.in_table_b1(ch))
    text = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
                  stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
                  stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
                  stringprep.in_table_c9, stringprep.in_table_a1)
    if any(check(ch) for ch in text for check in prohibited):
        return password
    # RFC 3454 section 6: a right-to-left string has no left-to-right character and starts
    # and ends with a right-to-left one
    right_to_left = any(stringprep.in_table_d1(ch) for ch in text)
    if right_to_left and (any(stringprep.in_table_d2(ch) for ch in text) or not (
            stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1]))):
        return password
    return text


def md5_password(user: str, password: str, salt: bytes) -> str:
    """PostgreSQL's md5 answer: 'md5' + md5(md5(password + user) + salt)."""
    import hashlib

    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def _pg_message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", 4 + len(payload)) + payload


def _pg_read(sock: socket.socket) -> tuple[bytes, bytes]:
    kind = _recv_exact(sock, 1)
    length = struct.unpack("!i", _recv_exact(sock, 4))[0]
    if not 4 <= length < 1 << 20:
        raise EOFError(f"implausible message length {length}")
    return kind, _recv_exact(sock, length - 4)


def postgres_login(host: str, port: int, user: str, password: str, database: str,
                   timeout: float = 3.0) -> LoginResult:
    """Log in as the app would (cleartext, md5 or SCRAM-SHA-256, whatever the server
    asks), then say goodbye. A refusal carries the server's SQLSTATE and words."""
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", user), ("database", database),
                                   ("application_name", "devenv-login-check"))) + b"\0"
    startup = struct.pack("!ii", 8 + len(params), 196608) + params
    scram: ScramClient | None = None
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            sock.sendall(startup)
            while True:
                kind, body = _pg_read(sock)
                if kind == b"E":
                    fields = _error_fields(body)
                    code = fields.get("C", "")
                    return LoginResult(False, f"{fields.get('M', 'error')} ({code})", code)
                if kind == b"Z":  # ReadyForQuery: logged in
                    sock.sendall(_pg_message(b"X", b""))
                    return LoginResult(True, "logged in")
                if kind != b"R":
                    continue  # ParameterStatus, BackendKeyData, notices
                auth = struct.unpack("!i", body[:4])[0]
                if auth == 0:  # AuthenticationOk; wait for ReadyForQuery
                    continue
                if auth == 3:  # cleartext
                    sock.sendall(_pg_message(b"p", password.encode() + b"\0"))
                elif auth == 5:  # md5 with a 4-byte salt
                    answer = md5_password(user, password, body[4:8])
                    sock.sendall(_pg_message(b"p", answer.encode() + b"\0"))
                elif auth == 10:  # SASL: the mechanisms the server offers
                    mechanisms = [m.decode() for m in body[4:].split(b"\0") if m]
                    if "SCRAM-SHA-256" not in mechanisms:
                        return LoginResult(False, f"no supported SASL mechanism in "
                                           f"{', '.join(mechanisms)}")
                    scram = ScramClient(password)
                    first = scram.first().encode()
                    sock.sendall(_pg_message(b"p", b"SCRAM-SHA-256\0"
                                             + struct.pack("!i", len(first)) + first))
                elif auth == 11 and scram is not None:  # SASLContinue: server-first
                    sock.sendall(_pg_message(b"p", scram.final(body[4:].decode()).encode()))
                elif auth == 12 and scram is not None:  # SASLFinal: the server's proof
                    if not scram.verify(body[4:].decode()):
                        return LoginResult(False, "the server's SCRAM signature is wrong")
                else:
                    return LoginResult(False, f"unsupported authentication request {auth}")
    except (OSError, EOFError, ValueError, struct.error) as exc:
        return LoginResult(False, f"login: {_why(exc) if isinstance(exc, OSError) else exc}")


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


def probe_tcp(host: str, port: int, timeout: float = PROBE_TIMEOUT,
              hold: float = 0.2) -> ProbeResult:
    """A TCP service with no protocol devenv speaks, that keeps a connection open.

    Docker's proxy accepts while nothing listens inside, then closes at once; through an
    ssh forward a connect always succeeds and ssh closes it at once when the far end
    refused. So the service answers when the connection stays open for `hold` seconds or
    data arrives: 0.2 s is enough for Docker's proxy, a tunnel waits 0.5 s (ssh's round
    trip to the far end)."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            sock.settimeout(hold)
            try:
                data = sock.recv(1)
            except TimeoutError:
                return ProbeResult(True, f"connection held {hold:g} s")
    except (OSError, EOFError) as exc:
        return ProbeResult(False, f"connect: {_why(exc)}")
    if data:
        return ProbeResult(True, "answers")
    return ProbeResult(False, "connection closed at once (nothing accepted it)")


def run_login(spec: ProbeSpec, host: str, port: int, user: str, password: str,
              values: Mapping[str, str]) -> LoginResult:
    """Log in with the protocol of the service's probe (only PostgreSQL's checks logins)."""
    if spec.kind == "postgres":
        return postgres_login(host, port, user, password,
                              spec.arg("database", values, "postgres"))
    raise ValueError(f"no login check for probe kind {spec.kind!r}")


def run_probe(spec: ProbeSpec, host: str, port: int, values: Mapping[str, str]) -> ProbeResult:
    if spec.kind == "http":
        return probe_http(host, port, spec.path)
    if spec.kind == "postgres":
        return probe_postgres(host, port, spec.arg("user", values, "postgres"),
                              spec.arg("database", values, "postgres"))
    if spec.kind == "redis":
        return probe_redis(host, port)
    if spec.kind == "tcp":
        return probe_tcp(host, port)
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
    #: through the HTTPS proxy (an HTTP service while DEVENV_HTTPS is on)
    tls: TlsRoute | None = None


def probe_target(target: Target, values: Mapping[str, str]) -> ProbeResult:
    if target.tls is not None and target.probe.kind == "http":
        return probe_http(target.host, target.port, target.probe.path, tls=target.tls)
    return run_probe(target.probe, target.host, target.port, values)


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
        results[target.service] = probe_target(target, values)

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
    poll: float = POLL_SECONDS,
) -> WaitResult:
    """Probe every target in parallel, every POLL_SECONDS, until all answer or the deadline.

    check_alive() returns {service: why} for containers that exited or restarted; the wait
    then fails at once instead of running into the deadline. Times are reported from
    `since` (a time.monotonic() value, e.g. when `up` began), else from the wait's start.
    The loop is _ParallelProbes; what the end means (and says) is _judge.
    """
    emit = on_event or (lambda event: None)
    now = time.monotonic()
    clock = _Clock(start=since if since is not None else now, deadline=now + timeout)
    for target in targets:
        emit(WaitEvent(target.service, "waiting", clock.elapsed(),
                       f"{target.host}:{target.port}"))
    probes = _ParallelProbes(targets, values, clock, emit, poll)
    exited = probes.run(check_alive, alive_interval)
    return _judge(targets, probes, exited, clock, timeout, emit)


@dataclass(frozen=True)
class _Clock:
    start: float  # what elapsed times count from
    deadline: float

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def over(self) -> bool:
        return time.monotonic() >= self.deadline


class _ParallelProbes:
    """One thread per target probing until it answers, the deadline passes or the wait is
    cancelled; the calling thread meanwhile asks check_alive whether a container died."""

    def __init__(self, targets: Sequence[Target], values: Mapping[str, str], clock: _Clock,
                 emit: Callable[[WaitEvent], None], poll: float = POLL_SECONDS):
        self.poll = poll
        self.targets = targets
        self.values = values
        self.clock = clock
        self.emit = emit
        self.last: dict[str, ProbeResult] = {}
        self.ready: dict[str, float] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._all_done = threading.Event()
        self._remaining = len(targets)

    def run(self, check_alive: Callable[[], dict[str, str]] | None,
            alive_interval: float) -> dict[str, str]:
        """Wait for every thread; returns {service: why} of those whose container died."""
        exited: dict[str, str] = {}
        if not self.targets:
            self._all_done.set()
        for target in self.targets:
            threading.Thread(target=self._watch, args=(target,), daemon=True,
                             name=f"probe-{target.service}").start()
        try:
            while not self._all_done.wait(alive_interval):
                if check_alive is None:
                    continue
                with self._lock:
                    waiting = {t.service for t in self.targets} - set(self.ready)
                dead = {s: why for s, why in check_alive().items() if s in waiting}
                if dead:
                    exited.update(dead)
                    break
        finally:
            self._cancel.set()
            self._all_done.wait(PROBE_TIMEOUT + 0.5)
        return exited

    def _stop(self, _state: object) -> bool:
        return self._cancel.is_set() or self.clock.over()

    def _attempt(self, target: Target) -> ProbeResult:
        result = probe_target(target, self.values)
        with self._lock:
            self.last[target.service] = result
        return result

    def _watch(self, target: Target) -> None:
        from tenacity import RetryError, Retrying, retry_if_result, wait_fixed

        try:
            result = Retrying(stop=self._stop, wait=wait_fixed(self.poll),
                              retry=retry_if_result(lambda r: not r.ok))(
                                  self._attempt, target)
            elapsed = self.clock.elapsed()
            with self._lock:
                self.ready[target.service] = elapsed
            self.emit(WaitEvent(target.service, "ready", elapsed, result.detail))
        except RetryError:
            pass
        finally:
            with self._lock:
                self._remaining -= 1
                if self._remaining == 0:
                    self._all_done.set()


def _judge(targets: Sequence[Target], probes: _ParallelProbes, exited: dict[str, str],
           clock: _Clock, timeout: float, emit: Callable[[WaitEvent], None]) -> WaitResult:
    """A container that died fails the wait at once, and the others were cut short, not
    timed out; otherwise whatever did not answer timed out, with its last probe's words."""
    elapsed = clock.elapsed()
    for service, why in exited.items():
        emit(WaitEvent(service, "failed", elapsed, why))
    timed_out = {}
    for target in targets:
        if target.service in probes.ready or target.service in exited:
            continue
        last = probes.last.get(target.service)
        detail = last.detail if last is not None else "no answer yet"
        timed_out[target.service] = detail
        if not exited:
            emit(WaitEvent(target.service, "failed", elapsed,
                           f"not ready after {timeout:g} s; last probe: {detail}"))
    if exited:
        timed_out = {}
    return WaitResult(ready=dict(probes.ready), exited=exited, timed_out=timed_out)
