"""Running host apps: start one under its supervisor, read its record, stop it, read its log.

Each app of a project has a record and a log under .devenv/hostapps/<project>/ (0700;
files 0600), written by its supervisor (hostapps/supervisor.py). A record is read like
input: a damaged one is a fact to report, never a pid to signal. A process is signalled
only while it is the very one the record names (pid and start time), so a reused pid is
never touched, and a group only while such a process still leads or belongs to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StateError
from ..processes import group_alive, same_process
from ..processes import read_records as all_records

if TYPE_CHECKING:  # `ports` and `status` read records only: they import no more than that
    import subprocess

#: seconds `down` waits after SIGTERM before SIGKILL (the group's)
STOP_SECONDS = 5.0
#: bytes of output kept per app: the log, then one older file
LOG_LIMIT = 1 << 20
#: seconds the supervisor has to write its first record
RECORD_SECONDS = 10.0
POLL = 0.02


@dataclass(frozen=True)
class AppRecord:
    """What an app's record says, checked against the processes that run now.

    state: running | exited (the app ended; exit_code says how) | dead (its processes are
    gone without a word: killed with the supervisor, or the machine restarted) | damaged
    (the record is not one devenv wrote; nothing in it is trusted)."""

    name: str
    path: Path
    state: str
    port: int = 0
    exit_code: int | None = None
    since: float = 0.0
    #: the pids devenv started that still run as recorded (supervisor first, then the app)
    alive: tuple[int, ...] = ()
    pgid: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def describe(self) -> str:
        if self.state == "exited":
            code = self.exit_code
            how = f"killed by signal {-code}" if code is not None and code < 0 \
                else f"code {code}"
            return f"exited ({how})"
        return {"dead": "gone: its processes ended without a record (killed?)",
                "damaged": "unknown: its record under .devenv/ is damaged"}.get(
                    self.state, self.state)


def app_dir(state_dir: Path, project: str) -> Path:
    return state_dir / "hostapps" / project


def log_path(state_dir: Path, project: str, name: str) -> Path:
    return app_dir(state_dir, project) / f"{name}.log"


def read_record(path: Path) -> AppRecord | None:
    """The record at `path`; None when there is none."""
    name = path.stem
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return AppRecord(name, path, "damaged")
    try:
        port = data["port"]
        state = data["state"]
        if not isinstance(port, int) or not 1 <= port <= 65535 or state not in (
                "starting", "running", "exited") or not isinstance(data["pgid"], int):
            raise ValueError(state)
        code = data.get("exit_code")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
            raise ValueError(code)
    except (KeyError, TypeError, ValueError):
        return AppRecord(name, path, "damaged")
    alive = tuple(pid for pid, started in (
        (data.get("supervisor_pid"), data.get("supervisor_started")),
        (data.get("pid"), data.get("started"))) if same_process(pid, started))
    app_alive = bool(data.get("pid")) and data.get("pid") in alive
    if state == "exited":
        pass
    elif app_alive:
        state = "running"
    else:
        state = "dead"
    return AppRecord(name, path, state, port=port, exit_code=code,
                     since=float(data.get("since") or 0.0), alive=alive,
                     pgid=data["pgid"], meta=data)


def read_records(state_dir: Path, project: str) -> dict[str, AppRecord]:
    return all_records(app_dir(state_dir, project), read_record)


def env_digest(values: Mapping[str, str], salt: str) -> dict[str, str]:
    """Keyed hashes of the variables devenv gives an app: what changed can be named on the
    next `up` without keeping a secret in the record."""
    import hashlib
    import hmac

    return {key: hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]
            for key, value in sorted(values.items())}


def changes(record: AppRecord, command: str, cwd: str, port: int,
            values: Mapping[str, str]) -> list[str]:
    """What differs between the running app and the one `up` would start now."""
    meta = record.meta
    found = [what for what, old, new in (("the command", meta.get("command"), command),
                                         ("cwd", meta.get("cwd"), cwd),
                                         ("the port", meta.get("port"), port))
             if old != new]
    salt = meta.get("salt")
    old_env = meta.get("env")
    if not isinstance(salt, str) or not isinstance(old_env, dict):
        return [*found, "its record"]
    new_env = env_digest(values, salt)
    keys = sorted(set(old_env) | set(new_env))
    found.extend(key for key in keys if old_env.get(key) != new_env.get(key))
    return found


def start_app(name: str, command: str, cwd: Path, environ: Mapping[str, str],
              given: Mapping[str, str], port: int, folder: Path, secrets: Iterable[str],
              cwd_text: str = "") -> tuple[subprocess.Popen[bytes], AppRecord]:
    """Start the supervisor (a new session: its own process group) running `sh -c command`
    in `cwd` with `environ`; return once its record names the app's pid. `given` are the
    variables devenv sets (their keyed hashes go into the record)."""
    import secrets as _secrets
    import subprocess
    import sys

    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(f"cannot create {folder}: {exc.strerror}",
                         hint="check that the project directory is writable") from exc
    record_path = folder / f"{name}.json"
    log = folder / f"{name}.log"
    with contextlib.suppress(OSError):
        record_path.unlink()
    salt = _secrets.token_hex(8)
    meta = {"name": name, "port": port, "command": command, "cwd": cwd_text, "salt": salt,
            "env": env_digest(given, salt)}
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as stderr:
        stderr.write(f"--- devenv: starting {name} on port {port}: {command}\n".encode())
        stderr.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "devenv.hostapps.supervisor", str(record_path), str(log),
             str(LOG_LIMIT), json.dumps(meta), "--", "sh", "-c", command],
            cwd=cwd, env=dict(environ), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=stderr, start_new_session=True, close_fds=True)
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(sorted(set(secrets))).encode())
        proc.stdin.close()
    except OSError:
        pass  # it ended already: the wait below says so
    deadline = time.monotonic() + RECORD_SECONDS
    while time.monotonic() < deadline:
        record = read_record(record_path)
        if record is not None and record.state in ("running", "exited"):
            return proc, record
        if record is not None and record.state == "dead" and "pid" in record.meta:
            return proc, record
        if proc.poll() is not None and record is None:
            break
        time.sleep(POLL)
    stop_process(proc)
    raise StateError(f"{name}: its supervisor did not start (log {log})",
                     hint="read the log, and check that the project directory is writable")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """End a supervisor (and its group) this very process started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _ours(record: AppRecord) -> bool:
    """A process devenv started still runs in the recorded group: the group is ours."""
    for pid, started in ((record.meta.get("supervisor_pid"),
                          record.meta.get("supervisor_started")),
                         (record.meta.get("pid"), record.meta.get("started"))):
        if same_process(pid, started):
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == record.pgid:
                    return True
    return False


def stop_app(record: AppRecord, grace: float = STOP_SECONDS) -> str:
    """SIGTERM to the app's group, SIGKILL after `grace` seconds; the record and its
    processes are gone after. Returns how: "stopped", "killed" or "not running". A record
    that names no process devenv started (damaged, pid reused) signals nothing."""
    how = "not running"
    if record.state != "damaged" and record.pgid > 1 and _ours(record):
        how = "stopped"
        for sig, patience in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            if sig == signal.SIGKILL:
                if not _ours(record) and not group_alive(record.pgid):
                    break
                how = "killed"
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pgid, sig)
            deadline = time.monotonic() + patience
            while time.monotonic() < deadline and group_alive(record.pgid):
                time.sleep(POLL)
            if not group_alive(record.pgid):
                break
    with contextlib.suppress(OSError):
        record.path.unlink()
    return how


def tail(state_dir: Path, project: str, name: str, lines: int | None) -> list[str]:
    """The last `lines` lines of the app's log (the older file first), or all."""
    path = log_path(state_dir, project, name)
    text = ""
    for part in (path.with_name(path.name + ".1"), path):
        with contextlib.suppress(OSError):
            text += part.read_bytes().decode("utf-8", errors="replace")
    out = text.splitlines()
    return out if lines is None else out[-lines:] if lines else []


def listening_ports(pgid: int) -> set[int]:
    """TCP ports processes of the group listen on (psutil; empty when out of sight)."""
    try:
        import psutil

        pids = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid}
        return {c.laddr.port for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.pid in pids and c.laddr}
    except Exception:  # noqa: BLE001 - naming the port is a courtesy
        return set()


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1
