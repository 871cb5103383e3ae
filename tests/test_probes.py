"""Probes against tiny local servers that speak (or fail to speak) each protocol."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from devenv.config.catalog import ProbeSpec
from devenv.probes import (
    ScramClient,
    Target,
    md5_password,
    postgres_login,
    probe_http,
    probe_postgres,
    probe_redis,
    saslprep,
    wait_until_ready,
)

VALUES = {"DEVENV_POSTGRES_USER": "postgres", "DEVENV_POSTGRES_DB": "db"}


@contextmanager
def server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def loop() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn, suppress(OSError):
                handle(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def accept_and_close(conn: socket.socket) -> None:
    """Docker's proxy while nothing listens inside the container."""


def pg_answer(kind: bytes, body: bytes) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        conn.recv(1024)
        conn.sendall(kind + struct.pack("!i", 4 + len(body)) + body)
        time.sleep(0.05)

    return handle


def test_bare_tcp_accept_is_not_ready_for_any_protocol():
    with server(accept_and_close) as port:
        assert not probe_postgres("127.0.0.1", port, "u", "d").ok
        assert not probe_redis("127.0.0.1", port).ok
        assert not probe_http("127.0.0.1", port, "/").ok


def test_postgres_auth_request_means_ready():
    with server(pg_answer(b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\0\0")) as port:
        result = probe_postgres("127.0.0.1", port, "u", "d")
    assert result.ok and result.detail == "accepting connections"


def test_postgres_starting_up_is_not_ready():
    body = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0"
    with server(pg_answer(b"E", body)) as port:
        result = probe_postgres("127.0.0.1", port, "u", "d")
    assert not result.ok and "starting up" in result.detail and "57P03" in result.detail


def test_redis_pong_loading_and_noauth():
    def answer(line: bytes) -> Callable[[socket.socket], None]:
        def handle(conn: socket.socket) -> None:
            conn.recv(64)
            conn.sendall(line)
        return handle

    with server(answer(b"+PONG\r\n")) as port:
        assert probe_redis("127.0.0.1", port).ok
    with server(answer(b"-LOADING Redis is loading the dataset in memory\r\n")) as port:
        assert not probe_redis("127.0.0.1", port).ok
    with server(answer(b"-NOAUTH Authentication required.\r\n")) as port:
        assert probe_redis("127.0.0.1", port).ok


def test_http_status_decides():
    def answer(status: str) -> Callable[[socket.socket], None]:
        def handle(conn: socket.socket) -> None:
            conn.recv(1024)
            conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        return handle

    with server(answer("200 OK")) as port:
        assert probe_http("127.0.0.1", port, "/health").ok
    with server(answer("503 Service Unavailable")) as port:
        result = probe_http("127.0.0.1", port, "/health")
    assert not result.ok and "503" in result.detail


def test_wait_times_out_with_the_last_probe_error():
    with server(accept_and_close) as port:
        result = wait_until_ready([Target("redis", ProbeSpec("redis"), "127.0.0.1", port)],
                                  VALUES, timeout=0.5)
    assert not result.ok and "redis" in result.timed_out
    assert "PING" in result.timed_out["redis"]


def test_wait_fails_at_once_when_a_container_dies():
    events = []
    with server(accept_and_close) as port:
        start = time.monotonic()
        result = wait_until_ready([Target("redis", ProbeSpec("redis"), "127.0.0.1", port)],
                                  VALUES, timeout=30,
                                  check_alive=lambda: {"redis": "its container stopped"},
                                  on_event=events.append)
        elapsed = time.monotonic() - start
    assert elapsed < 3
    assert result.exited == {"redis": "its container stopped"}
    assert [e.state for e in events] == ["waiting", "failed"]


def test_wait_runs_in_parallel():
    def slow_ready(conn: socket.socket) -> None:
        conn.recv(64)
        time.sleep(0.6)
        conn.sendall(b"+PONG\r\n")

    with server(slow_ready) as a, server(slow_ready) as b, server(slow_ready) as c:
        start = time.monotonic()
        result = wait_until_ready([Target(n, ProbeSpec("redis"), "127.0.0.1", p)
                                   for n, p in (("a", a), ("b", b), ("c", c))], VALUES, timeout=5)
        elapsed = time.monotonic() - start
    assert result.ok and set(result.ready) == {"a", "b", "c"}
    assert elapsed < 1.5  # three 0.6 s answers at once, not 1.8 s one after another


# --- PostgreSQL login: SCRAM-SHA-256, md5, cleartext -----------------------------------


def test_scram_client_matches_the_rfc_7677_example():
    """RFC 7677 section 3: user "user", password "pencil"."""
    client = ScramClient("pencil", user="user", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = ("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert client.final(server_first) == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert client.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert not client.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")


def test_scram_refuses_a_server_nonce_that_does_not_extend_ours():
    client = ScramClient("pencil", nonce="abc")
    with pytest.raises(ValueError):
        client.final("r=xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_md5_answer_is_postgres_formula():
    # md5(password + user) is what pg_authid stores: md532e12f21... for password/postgres
    assert hashlib.md5(b"passwordpostgres").hexdigest() == "32e12f215ba27cb750c9e093ce4b5127"
    salt = b"\x01\x02\x03\x04"
    expected = "md5" + hashlib.md5(b"32e12f215ba27cb750c9e093ce4b5127" + salt).hexdigest()
    assert md5_password("postgres", "password", salt) == expected


def _read_message(conn: socket.socket, startup: bool = False) -> tuple[bytes, bytes]:
    kind = b"" if startup else conn.recv(1)
    length = struct.unpack("!i", conn.recv(4))[0]
    body = b""
    while len(body) < length - 4:
        body += conn.recv(length - 4 - len(body))
    return kind, body


def _send(conn: socket.socket, kind: bytes, body: bytes) -> None:
    conn.sendall(kind + struct.pack("!i", 4 + len(body)) + body)


def _ok(conn: socket.socket) -> None:
    _send(conn, b"R", struct.pack("!i", 0))
    _send(conn, b"S", b"server_version\x0015.0\x00")
    _send(conn, b"Z", b"I")
    conn.recv(16)  # Terminate


def _refuse(conn: socket.socket, user: str) -> None:
    _send(conn, b"E", b"SFATAL\x00C28P01\x00Mpassword authentication failed for user \""
          + user.encode() + b"\"\x00\x00")


def fake_postgres(method: str, password: str) -> Callable[[socket.socket], None]:
    """A server that checks a password the way PostgreSQL does, by `method`."""

    def handle(conn: socket.socket) -> None:
        _kind, startup = _read_message(conn, startup=True)
        params = startup[4:].split(b"\0")
        user = params[params.index(b"user") + 1].decode()
        if method == "cleartext":
            _send(conn, b"R", struct.pack("!i", 3))
            _, body = _read_message(conn)
            return _ok(conn) if body == password.encode() + b"\0" else _refuse(conn, user)
        if method == "md5":
            salt = b"\x09\x08\x07\x06"
            _send(conn, b"R", struct.pack("!i", 5) + salt)
            _, body = _read_message(conn)
            stored = hashlib.md5((password + user).encode()).hexdigest()
            want = "md5" + hashlib.md5(stored.encode() + salt).hexdigest()
            return _ok(conn) if body == want.encode() + b"\0" else _refuse(conn, user)
        # SCRAM-SHA-256, the server side of RFC 5802, with what pg_authid stores
        salt, iterations = b"0123456789abcdef", 4096
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        _send(conn, b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\x00\x00")
        _, body = _read_message(conn)
        mechanism, rest = body.split(b"\0", 1)
        assert mechanism == b"SCRAM-SHA-256"
        client_first = rest[4:].decode()
        first_bare = client_first.split(",", 2)[2]
        nonce = dict(f.split("=", 1) for f in first_bare.split(","))["r"] + "SERVERNONCE"
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        _send(conn, b"R", struct.pack("!i", 11) + server_first.encode())
        _, body = _read_message(conn)
        final = body.decode()
        without_proof, proof = final.rsplit(",p=", 1)
        auth = f"{first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth, "sha256")
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if hashlib.sha256(client_key).digest() != stored_key:
            return _refuse(conn, user)
        verifier = base64.b64encode(hmac.digest(server_key, auth, "sha256")).decode()
        _send(conn, b"R", struct.pack("!i", 12) + f"v={verifier}".encode())
        _ok(conn)

    return handle


@pytest.mark.parametrize("method", ["cleartext", "md5", "scram"])


def test_login_with_each_method_and_a_wrong_password_is_refused(method):
    with server(fake_postgres(method, "s3cret p@ss")) as port:
        good = postgres_login("127.0.0.1", port, "postgres", "s3cret p@ss", "db")
        assert good.ok and not good.refused, good
        bad = postgres_login("127.0.0.1", port, "postgres", "password", "db")
        assert not bad.ok and bad.refused and bad.code == "28P01"
        assert "password authentication failed" in bad.detail


def test_login_to_nothing_is_not_a_refusal():
    with server(accept_and_close) as port:
        result = postgres_login("127.0.0.1", port, "postgres", "x", "db", timeout=0.5)
    assert not result.ok and not result.refused


@pytest.mark.parametrize("given, used", [
    ("I\u00adX", "IX"),  # RFC 4013 section 3 examples: soft hyphen mapped to nothing
    ("user", "user"),
    ("USER", "USER"),
    ("\u00aa", "a"),  # NFKC
    ("\u2168", "IX"),
    ("a\u00a0b", "a b"),  # non-ASCII space to space
    ("\u0007", "\u0007"),  # prohibited: PostgreSQL then uses the password as it is
    ("p@ss$w\"o'rd #1:x{y}\\z", "p@ss$w\"o'rd #1:x{y}\\z"),
])


def test_saslprep_as_postgres_applies_it(given, used):
    assert saslprep(given) == used


def test_tcp_wants_a_connection_the_service_keeps_or_answers():
    from devenv.probes import probe_tcp

    with server(lambda conn: time.sleep(0.5)) as port:  # keeps it open, says nothing
        assert probe_tcp("127.0.0.1", port).ok
    with server(lambda conn: conn.sendall(b"220 mail ready\r\n")) as port:
        assert probe_tcp("127.0.0.1", port).ok
    with server(lambda conn: None) as port:  # Docker's proxy with nothing inside: closes
        result = probe_tcp("127.0.0.1", port)
        assert not result.ok and "closed at once" in result.detail


def test_postgres_probe_takes_its_user_and_database_from_declared_arguments():
    spec = ProbeSpec("postgres", args={"user": "{DEVENV_POSTGRES_USER}", "database": "x"})
    assert spec.arg("user", {"DEVENV_POSTGRES_USER": "po st"}) == "po st"  # not URL-encoded
    assert spec.arg("database", {}) == "x" and spec.arg("other", {}, "d") == "d"


def test_http_probe_for_a_tunnel_takes_any_status_line():
    def not_found(conn: socket.socket) -> None:
        conn.recv(1024)
        conn.sendall(b"HTTP/1.0 404 Not Found\r\n\r\n")

    with server(not_found) as port:
        assert not probe_http("127.0.0.1", port, "/").ok
        assert probe_http("127.0.0.1", port, "/", any_status=True).ok


@pytest.mark.parametrize("status", ["\u00b200", "\u0662\u0660\u0660", "2000", "+20"])
def test_an_http_status_that_is_not_three_ascii_digits_is_not_an_answer(status):
    """What a far end says through a tunnel is not trusted: `²00` passed isdigit() and
    int() raised, ending `tunnel up` and `tunnel ls` in an internal error."""
    def odd(conn: socket.socket) -> None:
        conn.recv(1024)
        conn.sendall(f"HTTP/1.0 {status} OK\r\n\r\n".encode())

    with server(odd) as port:
        result = probe_http("127.0.0.1", port, "/", any_status=True)
    assert not result.ok and "not an HTTP answer" in result.detail


def test_scram_iterations_must_be_ascii_digits():
    client = ScramClient("pw", nonce="abc")
    with pytest.raises(ValueError, match="not a SCRAM server-first message"):
        client.final("r=abcdef,s=c2FsdA==,i=4\u00b2")


def test_tcp_probe_wants_the_connection_held_or_an_answer():
    from devenv.probes import probe_tcp

    def banner(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-x\r\n")

    def hold(conn: socket.socket) -> None:
        time.sleep(0.4)

    with server(accept_and_close) as port:  # what ssh does when the far end refused
        result = probe_tcp("127.0.0.1", port, hold=0.3)
        assert not result.ok and "closed at once" in result.detail
    with server(banner) as port:
        assert probe_tcp("127.0.0.1", port, hold=0.3).ok
    with server(hold) as port:
        assert probe_tcp("127.0.0.1", port, hold=0.2).detail == "connection held 0.2 s"
