"""The small process that keeps one tunnel's ssh running: `python -m devenv.tunnels.supervisor`.

`devenv tunnel up` starts it detached (its own session), and it runs ssh as its child. Its
record (JSON, 0600) says what runs: its own pid, ssh's pid, the port, the state and the
restarts. The record is the only thing `tunnel ls` and `tunnel down` read.

Before `devenv tunnel up` confirms the tunnel (SIGUSR1, once the far end answered through
it), an ssh exit is a failure: the record says so and the supervisor exits, so a wrong key
or host is reported, not retried. After that, an ssh exit is a dropped connection: ssh is
started again after a backoff of 1, 2, 4 ... 30 s (reset once a connection held 30 s), the
way autossh does. SIGTERM ends ssh and then the supervisor; ssh also gets SIGTERM from the
kernel if the supervisor dies (PR_SET_PDEATHSIG), so no ssh outlives its supervisor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RECORD_SCHEMA = 1
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
#: a connection that held this long resets the backoff
STABLE_SECONDS = 30.0
TICK = 0.2
LOG_PREFIX = "devenv-supervisor:"
LOG_LIMIT = 1 << 20
LOG_KEEP = 256 << 10


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def _create_time(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - gone already, or out of sight
        return None


def listening(pid: int, port: int) -> bool:
    """True when process `pid` listens on TCP `port` (ssh's side of the forward is open)."""
    try:
        import psutil

        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections(kind="tcp"))
    except Exception:  # noqa: BLE001 - exited meanwhile
        return False


def trim_log(path: Path, limit: int = LOG_LIMIT, keep: int = LOG_KEEP) -> None:
    """Keep a tunnel that reconnects for weeks from filling the disk: past `limit` bytes,
    only the last `keep` bytes stay (from a line start)."""
    try:
        if path.stat().st_size <= limit:
            return
        with open(path, "rb") as handle:
            handle.seek(-keep, os.SEEK_END)
            tail = handle.read()
        tail = tail[tail.find(b"\n") + 1:]
        tmp = path.with_name(f".{path.name}.trim")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(tail)
        os.replace(tmp, path)
    except OSError:
        pass


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask the kernel to send SIGTERM to ssh when the supervisor dies (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def last_error(log: Path, offset: int) -> str:
    """The last line ssh wrote to the log since `offset` (not the supervisor's own)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith(LOG_PREFIX)]
    return lines[-1] if lines else ""


class Supervisor:
    def __init__(self, record_path: Path, log_path: Path, port: int, command: list[str],
                 meta: dict[str, Any]):
        self.record_path = record_path
        self.log_path = log_path
        self.port = port
        self.command = command
        self.stopping = False
        self.confirmed = False
        self.record: dict[str, Any] = {
            **meta, "schema": RECORD_SCHEMA, "port": port, "command": command,
            "supervisor_pid": os.getpid(), "supervisor_started": _create_time(os.getpid()),
            "ssh_pid": None, "ssh_started": None, "state": "connecting", "restarts": 0,
            "since": time.time(), "last_error": "",
        }

    def log(self, message: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{LOG_PREFIX} {time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")

    def save(self, **changes: Any) -> None:
        self.record.update(changes)
        _write_record(self.record_path, self.record)

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _confirm(self, signum: int, frame: Any) -> None:
        self.confirmed = True

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(TICK)

    def _end_ssh(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _finish(self) -> int:
        self.log("stopped")
        with contextlib.suppress(OSError):
            self.record_path.unlink()
        return 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._stop)
        signal.signal(signal.SIGUSR1, self._confirm)
        self.save()
        delay = BACKOFF_FIRST
        while not self.stopping:
            trim_log(self.log_path)
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.log(f"starting: {' '.join(self.command)}")
            with open(self.log_path, "ab") as err:
                proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err,
                                        preexec_fn=_die_with_parent)
            began = time.monotonic()
            self.save(ssh_pid=proc.pid, ssh_started=_create_time(proc.pid))
            while proc.poll() is None and not self.stopping:
                if self.confirmed and self.record["state"] != "up" and listening(proc.pid,
                                                                                  self.port):
                    self.save(state="up", since=time.time())
                    self.log(f"up on 127.0.0.1:{self.port}")
                time.sleep(TICK)
            self._end_ssh(proc)
            if self.stopping:
                break
            why = f"ssh exited with {proc.returncode}: {last_error(self.log_path, offset)}"
            self.log(why)
            if not self.confirmed:
                self.save(state="failed", last_error=why, ssh_pid=None, exit_code=proc.returncode)
                return 1
            if time.monotonic() - began >= STABLE_SECONDS:
                delay = BACKOFF_FIRST
            self.save(state="reconnecting", ssh_pid=None, last_error=why,
                      restarts=self.record["restarts"] + 1)
            self.log(f"reconnecting in {delay:g} s")
            self._sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        return self._finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.tunnels.supervisor")
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--meta", default="{}", help="JSON kept in the record")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no ssh command given after --")
    return Supervisor(args.record, args.log, args.port, command, json.loads(args.meta)).run()


if __name__ == "__main__":
    sys.exit(main())
