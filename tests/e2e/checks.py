"""The tests' own probes: what a user would check by hand (psql, redis PING, a browser)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def http_json(url: str) -> dict:
    status, body = http_get(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def psql(url: str, sql: str) -> str:
    """Run SQL through the real psql client with a full postgresql:// URL."""
    result = subprocess.run(["psql", url, "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def redis_cmd(host: str, port: int, *words: str) -> str:
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload.encode())
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2
                                              and not data.startswith(b"$-1")):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def redis_ping(host: str, port: int) -> str:
    return redis_cmd(host, port, "PING")
