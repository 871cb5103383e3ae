"""The small process that runs one host app: `python -m devenv.hostapps.supervisor`.

It leads the app's process group (the runtime starts it in a new session), runs
`sh -c COMMAND` in it, copies the app's output into the log with secrets masked (the
secrets come on stdin, never on a command line) and the log bounded (one older file kept),
and keeps a record beside it: its own and the app's pid with their start times, then the
app's exit code once it ends. It outlives the command that started it, as a container does.

SIGTERM, SIGINT and SIGHUP reach the whole group (`down` signals the group): the app ends
as it chooses, and the supervisor stays until it has, to record the exit code. The app is
started first, before anything else is imported: the supervisor's own start is time the
user waits for.

    python -m devenv.hostapps.supervisor RECORD LOG MAX_BYTES META_JSON -- COMMAND...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ..processes import started_at

RECORD_SCHEMA = "devenv.hostapp/1"
#: seconds what the app left in its group has after SIGTERM, before SIGKILL
LEFTOVER_SECONDS = 3.0


class BoundedLog:
    """Appends to `path`; past `limit` bytes the file becomes `path.1` (one kept)."""

    def __init__(self, path: str, limit: int):
        self.path, self.limit = path, limit
        self.handle = self._open()

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab", buffering=0)

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        if self.handle.tell() > self.limit:
            self.handle.close()
            os.replace(self.path, self.path + ".1")
            self.handle = self._open()


def _record(path: str, data: dict[str, object]) -> None:
    from pathlib import Path

    from ..files import write_atomic

    write_atomic(Path(path), json.dumps(data, sort_keys=True) + "\n", 0o600)


def main(argv: list[str]) -> int:
    record_path, log_path, limit, meta = argv[0], argv[1], int(argv[2]), json.loads(argv[3])
    command = argv[5:] if argv[4] == "--" else argv[4:]
    stopping: list[int] = []
    # A Python handler, not SIG_IGN: an ignored signal would stay ignored in the app.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: stopping.append(number))
    secrets = [s for s in json.loads(sys.stdin.read() or "[]") if isinstance(s, str)]
    sys.stdin.close()
    record: dict[str, object] = {
        "schema": RECORD_SCHEMA, **meta, "supervisor_pid": os.getpid(),
        "supervisor_started": started_at(os.getpid()), "pgid": os.getpgid(0),
        "since": time.time(), "state": "starting"}
    try:
        app = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, close_fds=True)
    except OSError as exc:
        with open(log_path, "ab") as log:
            log.write(f"devenv: cannot run {command[0]}: {exc.strerror}\n".encode())
        _record(record_path, {**record, "state": "exited", "exit_code": 127,
                              "ended": time.time()})
        return 127
    _record(record_path, {**record, "state": "running", "pid": app.pid,
                          "started": started_at(app.pid)})
    import threading

    log = BoundedLog(log_path, limit)
    assert app.stdout is not None
    pump = threading.Thread(target=_pump, args=(app.stdout, log, secrets), daemon=True)
    pump.start()
    code = app.wait()
    pump.join(1.0)  # what the app printed last, unless a leftover holds the pipe open
    _record(record_path, {**record, "state": "exited", "pid": app.pid, "exit_code": code,
                          "signalled": bool(stopping), "ended": time.time()})
    _end_leftovers()
    return 0


def _pump(stream, log: BoundedLog, secrets: list[str]) -> None:  # type: ignore[no-untyped-def]
    from ..report import mask

    for line in iter(stream.readline, b""):
        text = line.decode("utf-8", errors="replace")
        log.write(mask(text, secrets).encode() if secrets else line)


def _end_leftovers() -> None:
    """The app ended; what it started in its group (a bundler's helper, a file watcher)
    ends with it: SIGTERM, then SIGKILL, which ends this supervisor too (its record is
    written)."""
    from ..processes import group_alive  # late: the app starts before anything is imported

    me, group = os.getpid(), os.getpgid(0)
    if not group_alive(group, exclude=me):
        return
    try:
        os.killpg(0, signal.SIGTERM)  # this process only notes it (its handler)
    except OSError:
        return
    deadline = time.monotonic() + LEFTOVER_SECONDS
    while time.monotonic() < deadline and group_alive(group, exclude=me):
        time.sleep(0.05)
    if group_alive(group, exclude=me):
        os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
