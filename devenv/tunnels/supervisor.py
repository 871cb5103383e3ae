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

ssh's messages reach the log through a pipe the supervisor reads, never through a file
ssh holds itself: every write is the supervisor's, so the log is trimmed as it grows and
stays within LOG_LIMIT even while one ssh stays connected for weeks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
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
#: the log never holds more than LOG_LIMIT bytes: past it, only the last LOG_KEEP stay
LOG_LIMIT = 1 << 20
LOG_KEEP = 256 << 10
#: how much of ssh's output is read (and written to the log) at once; below LOG_KEEP
CHUNK = 64 << 10
#: how much of this run's ssh output is kept in memory for its last line
TAIL = 4 << 10
#: the line that starts each run of ssh in the log
_START = re.compile(rf"^{re.escape(LOG_PREFIX)} \S+ starting: ", re.MULTILINE)


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
        size = path.stat().st_size
        if size <= limit:
            return
        with open(path, "rb") as handle:
            handle.seek(max(0, size - keep))
            tail = handle.read(keep)
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


def last_line(text: str) -> str:
    """The last line ssh wrote (not the supervisor's own)."""
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith(LOG_PREFIX)]
    return lines[-1] if lines else ""


def this_run(text: str) -> str:
    """The log from the last line that started ssh on (all of it when none is left)."""
    starts = list(_START.finditer(text))
    return text[starts[-1].start():] if starts else text


def _open_log(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


class Supervisor:
    def __init__(self, record_path: Path, log_path: Path, port: int, command: list[str],
                 meta: dict[str, Any]):
        self.record_path = record_path
        self.log_path = log_path
        self.port = port
        self.command = command
        self.stopping = False
        self.confirmed = False
        self._log_lock = threading.Lock()
        #: the end of this run's ssh output (for its last line once ssh exits)
        self._tail = b""
        self.record: dict[str, Any] = {
            **meta, "schema": RECORD_SCHEMA, "port": port, "command": command,
            "supervisor_pid": os.getpid(), "supervisor_started": _create_time(os.getpid()),
            "ssh_pid": None, "ssh_started": None, "state": "connecting", "restarts": 0,
            "since": time.time(), "last_error": "",
        }

    def log(self, message: str) -> None:
        self._append(f"{LOG_PREFIX} {time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n"
                     .encode(errors="replace"))

    def _append(self, data: bytes) -> None:
        """Write to the log, trimming it first when this write would pass LOG_LIMIT."""
        data = data[-LOG_KEEP:]
        with self._log_lock:
            try:
                size = self.log_path.stat().st_size
            except OSError:
                size = 0
            if size + len(data) > LOG_LIMIT:
                trim_log(self.log_path, limit=LOG_LIMIT - len(data))
                self._follow_log()
            with contextlib.suppress(OSError):
                fd = _open_log(self.log_path)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)

    def _follow_log(self) -> None:
        """Point this process's stderr (where `tunnel up` sent it) at the trimmed log, not
        at the file the trim replaced."""
        with contextlib.suppress(OSError):
            fd = _open_log(self.log_path)
            os.dup2(fd, 2)
            os.close(fd)

    def _pump(self, stream: Any) -> None:
        """Copy ssh's stderr to the log until ssh (and whatever it started) closes it."""
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                break
            if not chunk:
                break
            self._append(chunk)
            self._tail = (self._tail + chunk)[-TAIL:]
        stream.close()

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
            self.log(f"starting: {' '.join(self.command)}")
            self._tail = b""
            proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    preexec_fn=_die_with_parent)
            pump = threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True)
            pump.start()
            began = time.monotonic()
            self.save(ssh_pid=proc.pid, ssh_started=_create_time(proc.pid))
            while proc.poll() is None and not self.stopping:
                if self.confirmed and self.record["state"] != "up" and listening(proc.pid,
                                                                                  self.port):
                    self.save(state="up", since=time.time())
                    self.log(f"up on 127.0.0.1:{self.port}")
                time.sleep(TICK)
            self._end_ssh(proc)
            pump.join(2)  # a ProxyCommand ssh started may hold the pipe a moment longer
            if self.stopping:
                break
            why = (f"ssh exited with {proc.returncode}: "
                   f"{last_line(self._tail.decode(errors='replace'))}")
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
