"""The small process that runs one host app: `python -m devenv.hostapps.supervisor`.

It leads the app's process group (the runtime starts it in a new session), runs
`sh -c COMMAND` in it, copies the app's output into the log with secrets masked (the
secrets come on stdin, never on a command line) and the log bounded (one older file kept),
and keeps a record beside it: its own and the app's pid with their start times, then the
app's exit code once it ends. It outlives the command that started it, as a container does.

SIGTERM, SIGINT and SIGHUP reach the whole group (`down` signals the group): the app ends
as it chooses, and the supervisor stays until it has, to record the exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from ..files import write_atomic
from ..report import mask

RECORD_SCHEMA = "devenv.hostapp/1"
#: seconds what the app left in its group has after SIGTERM, before SIGKILL
LEFTOVER_SECONDS = 3.0


def _started(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - it may have ended already
        return None


class BoundedLog:
    """Appends to `path`; past `limit` bytes the file becomes `path.1` (one kept)."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit = path, limit
        self.handle = self._open()

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab", buffering=0)

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        if self.handle.tell() > self.limit:
            self.handle.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self.handle = self._open()


def _record(path: Path, data: dict[str, object]) -> None:
    write_atomic(path, json.dumps(data, sort_keys=True) + "\n", 0o600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devenv-hostapp")
    parser.add_argument("--record", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--meta", default="{}")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    secrets = [s for s in json.loads(sys.stdin.read() or "[]") if isinstance(s, str)]
    sys.stdin.close()
    stopping: list[int] = []
    # A Python handler, not SIG_IGN: an ignored signal would stay ignored in the app.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: stopping.append(number))
    log = BoundedLog(args.log, args.max_bytes)
    record: dict[str, object] = {
        "schema": RECORD_SCHEMA, **json.loads(args.meta),
        "supervisor_pid": os.getpid(), "supervisor_started": _started(os.getpid()),
        "pgid": os.getpgid(0), "since": time.time(), "state": "starting",
    }
    try:
        app = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, close_fds=True)
    except OSError as exc:
        log.write(f"devenv: cannot run {command[0]}: {exc.strerror}\n".encode())
        _record(args.record, {**record, "state": "exited", "exit_code": 127,
                              "ended": time.time()})
        return 127
    _record(args.record, {**record, "state": "running", "pid": app.pid,
                          "started": _started(app.pid)})
    assert app.stdout is not None
    pump = threading.Thread(target=_pump, args=(app.stdout, log, secrets), daemon=True)
    pump.start()
    code = app.wait()
    pump.join(1.0)  # what the app printed last, unless a leftover holds the pipe open
    _record(args.record, {**record, "state": "exited", "pid": app.pid, "exit_code": code,
                          "signalled": bool(stopping), "ended": time.time()})
    _end_leftovers()
    return 0


def _pump(stream: IO[bytes], log: BoundedLog, secrets: list[str]) -> None:
    for line in iter(stream.readline, b""):
        text = line.decode("utf-8", errors="replace")
        log.write(mask(text, secrets).encode() if secrets else line)


def _others_in_group() -> bool:
    me, group = os.getpid(), os.getpgid(0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                rest = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(rest) > 2 and rest[2] == str(group) and rest[0] not in ("Z", "X"):
            return True
    return False


def _end_leftovers() -> None:
    """The app ended; what it started in its group (a bundler's helper, a file watcher)
    ends with it: SIGTERM, then SIGKILL, which ends this supervisor too (its record is
    written)."""
    if not _others_in_group():
        return
    with contextlib.suppress(OSError):
        os.killpg(0, signal.SIGTERM)  # this process only notes it (its handler)
    deadline = time.monotonic() + LEFTOVER_SECONDS
    while time.monotonic() < deadline and _others_in_group():
        time.sleep(0.05)
    if _others_in_group():
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
