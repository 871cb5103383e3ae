"""Probes against tiny local servers that speak (or fail to speak) each protocol."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from devenv.catalog import ProbeSpec
from devenv.probes import Target, probe_http, probe_postgres, probe_redis, wait_until_ready

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
        time.sleep(0.4)
        conn.sendall(b"+PONG\r\n")

    with server(slow_ready) as a, server(slow_ready) as b, server(slow_ready) as c:
        start = time.monotonic()
        result = wait_until_ready([Target(n, ProbeSpec("redis"), "127.0.0.1", p)
                                   for n, p in (("a", a), ("b", b), ("c", c))], VALUES, timeout=5)
        elapsed = time.monotonic() - start
    assert result.ok and set(result.ready) == {"a", "b", "c"}
    assert elapsed < 1.0  # three 0.4 s answers, not one after another
