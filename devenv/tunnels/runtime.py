"""Running tunnels: start the supervisor, wait until the far end answers, read, stop.

Each tunnel of a project has a record and a log under .devenv/tunnels/<project>/, written by
its supervisor (tunnels/supervisor.py). A record is trusted only while its pid still
belongs to the process that wrote it (pid and start time), so a reused pid is never killed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotReadyError, SshError, StateError
from ..probes import ProbeResult, probe_http, probe_postgres, probe_redis, probe_tcp
from ..processes import moment, same_process, whole
from ..processes import read_records as all_records
from .ssh_failures import classify_failure, target_hopeless, target_refused
from .tables import Credentials, TunnelSpec

SERVER_ALIVE_INTERVAL = 15
SERVER_ALIVE_COUNT = 3
CONNECT_TIMEOUT = 10
STOP_SECONDS = 8.0
POLL = 0.1
#: the largest pid Linux hands out (pid_max can be at most 2^22)
PID_MAX = 1 << 22


@dataclass(frozen=True)
class TunnelRecord:
    """What a supervisor's record says, and whether its processes still run."""

    name: str
    path: Path
    port: int
    state: str  # connecting | up | reconnecting | failed | dead
    supervisor_pid: int
    ssh_pid: int | None
    restarts: int
    since: float
    last_error: str
    meta: dict[str, Any]
    #: the start times that tie each pid to the process devenv started (None: unknown)
    supervisor_started: float | None = None
    ssh_started: float | None = None

    @property
    def running(self) -> bool:
        return self.state in ("connecting", "up", "reconnecting")


STATES = ("connecting", "up", "reconnecting", "failed", "dead")


def tunnel_dir(state_dir: Path, project: str) -> Path:
    return state_dir / "tunnels" / project


def read_record(path: Path) -> TunnelRecord | None:
    """The record at `path`, every field checked; None when it cannot be read or is not a
    supervisor's record (then nothing it names is ever signalled)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    supervisor = whole(data.get("supervisor_pid"), 1, PID_MAX)
    port = whole(data.get("port"), 1, 65535)
    if supervisor is None or port is None:
        return None
    supervisor_started = moment(data.get("supervisor_started"))
    ssh_pid = whole(data.get("ssh_pid"), 1, PID_MAX)
    ssh_started = moment(data.get("ssh_started"))
    alive = same_process(supervisor, supervisor_started)
    ssh_alive = same_process(ssh_pid, ssh_started)
    state = data.get("state")
    state = state if state in STATES else "dead"
    if not alive and state != "failed":
        state = "dead"
    since = moment(data.get("since"))
    last_error = data.get("last_error")
    return TunnelRecord(name=path.stem, path=path, port=port, state=state,
                        supervisor_pid=supervisor,
                        ssh_pid=ssh_pid if ssh_alive else None,
                        restarts=whole(data.get("restarts"), 0, 1 << 31) or 0,
                        since=since or 0.0,
                        last_error=last_error if isinstance(last_error, str) else "",
                        meta=data, supervisor_started=supervisor_started,
                        ssh_started=ssh_started)


def read_records(state_dir: Path, project: str) -> dict[str, TunnelRecord]:
    return all_records(tunnel_dir(state_dir, project), read_record)


def foreground_options(ssh: str = "ssh") -> list[str]:
    """What keeps ssh devenv's own child, whatever the user's ssh config says: no connection
    sharing (a ControlPersist master forks away and keeps the port after ssh exits; a
    ControlPath client hands the forward to a master devenv did not start) and no fork
    after authentication. ssh keeps the first value it gets for an option and reads the
    command line before any config, so these come before every other option."""
    options = ["-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ControlPersist=no"]
    if knows_option(ssh, "ForkAfterAuthentication=no"):  # OpenSSH 8.7+; older: only -f forks
        options += ["-o", "ForkAfterAuthentication=no"]
    return options


@functools.lru_cache(maxsize=8)
def knows_option(ssh: str, option: str) -> bool:
    """Whether this ssh takes `-o option` (`ssh -G` evaluates it and connects to nothing;
    no config file is read, so nothing of the user's runs)."""
    try:
        return subprocess.run([ssh, "-G", "-F", "/dev/null", "-o", option, "devenv.invalid"],
                              capture_output=True, timeout=10,
                              stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ssh_command(spec: TunnelSpec, port: int, ssh: str = "ssh",
                ssh_config: str = "") -> list[str]:
    """The OpenSSH command for one forward. ssh takes the first value it gets for an
    option: ExitOnForwardFailure, BatchMode (a detached tunnel cannot prompt) and the
    foreground options come first, then the project's ssh_options, then defaults those
    options may override."""
    return [
        ssh, "-N", "-L", f"127.0.0.1:{port}:{spec.target}",
        "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes", *foreground_options(ssh),
        *(["-F", ssh_config] if ssh_config else []),
        *spec.ssh_options,
        "-o", f"ServerAliveInterval={SERVER_ALIVE_INTERVAL}",
        "-o", f"ServerAliveCountMax={SERVER_ALIVE_COUNT}",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        "--", spec.via,
    ]


def probe_tunnel(spec: TunnelSpec, port: int, creds: Credentials) -> ProbeResult:
    """The far end's own answer, through the tunnel."""
    if spec.kind == "postgres":
        return probe_postgres("127.0.0.1", port, creds.user, creds.database)
    if spec.kind == "redis":
        return probe_redis("127.0.0.1", port)
    if spec.kind == "http":
        return probe_http("127.0.0.1", port, spec.path, any_status=True)
    return probe_tcp("127.0.0.1", port, hold=0.5)


@dataclass(frozen=True)
class LogMark:
    """Where the log stood when a supervisor was started: its file and size then."""

    path: Path
    inode: int
    offset: int


def _log_since(mark: LogMark) -> str:
    """What the log holds of this start. The supervisor trims the log as it grows
    (replacing the file), and an offset into the old file means nothing in the new one:
    then it is the log from the last line that started ssh."""
    from .supervisor import this_run

    try:
        with open(mark.path, "rb") as handle:
            if os.fstat(handle.fileno()).st_ino == mark.inode:
                handle.seek(mark.offset)
                return handle.read().decode(errors="replace")
            return this_run(handle.read().decode(errors="replace"))
    except OSError:
        return ""


def start_tunnel(spec: TunnelSpec, port: int, folder: Path, creds: Credentials,
                 timeout: float, ssh: str = "ssh", ssh_config: str = "",
                 meta: dict[str, Any] | None = None,
                 notify: Callable[[str], None] = lambda message: None) -> TunnelRecord:
    """Start the supervisor and ssh; return once the far end answers through the tunnel.

    On any failure both processes are ended before the error is raised.
    """
    command = ssh_command(spec, port, ssh, ssh_config)
    proc, record_path, mark = launch_supervisor(spec.name, command, port, folder, meta)
    try:
        return _await_answer(spec, port, creds, timeout, proc, record_path, mark, notify)
    except BaseException:
        _end(proc)
        with contextlib.suppress(OSError):
            record_path.unlink()
        raise


def start_forward(name: str, command: list[str], ports: list[int], folder: Path,
                  timeout: float, label: str, via: str,
                  meta: dict[str, Any] | None = None) -> TunnelRecord:
    """Start a supervised ssh that only forwards (no far end of its own to probe); return
    once ssh listens on the first of `ports` (ExitOnForwardFailure: all, or ssh exits)."""
    from .supervisor import listening

    proc, record_path, mark = launch_supervisor(name, command, ports[0], folder, meta)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise classify_failure(label, via, ports[0], _log_since(mark))
            record = read_record(record_path)
            if record is not None and record.ssh_pid and listening(record.ssh_pid, ports[0]):
                proc.send_signal(signal.SIGUSR1)
                return _confirmed(record_path, proc, deadline)
            time.sleep(POLL)
        raise SshError(f"{label}: ssh did not connect within {timeout:g} s",
                       hint=f"run `ssh -v {via}` to see where it hangs")
    except BaseException:
        _end(proc)
        with contextlib.suppress(OSError):
            record_path.unlink()
        raise


def launch_supervisor(name: str, command: list[str], port: int, folder: Path,
                      meta: dict[str, Any] | None
                      ) -> tuple[subprocess.Popen[bytes], Path, LogMark]:
    """Start `python -m devenv.tunnels.supervisor` detached, with its record and log in
    `folder` (0700; files 0600). Returns the process, the record's path and where the log
    stood (trimmed first, as the supervisor would)."""
    from .supervisor import trim_log

    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(f"cannot create {folder}: {exc.strerror}",
                         hint="check that the project directory is writable") from exc
    record_path = folder / f"{name}.json"
    log_path = folder / f"{name}.log"
    with contextlib.suppress(OSError):
        record_path.unlink()
    trim_log(log_path)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    stat = os.fstat(fd)
    mark = LogMark(log_path, stat.st_ino, stat.st_size)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devenv.tunnels.supervisor", "--record", str(record_path),
             "--log", str(log_path), "--port", str(port), "--meta", json.dumps(meta or {}),
             "--", *command],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True, close_fds=True)
    return proc, record_path, mark


def _await_answer(spec: TunnelSpec, port: int, creds: Credentials, timeout: float,
                  proc: subprocess.Popen[bytes], record_path: Path, mark: LogMark,
                  notify: Callable[[str], None]) -> TunnelRecord:
    from .supervisor import listening

    deadline = time.monotonic() + timeout
    last = ProbeResult(False, "ssh has not connected yet")
    told = False
    first_refusal: float | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise classify_failure(f"tunnel {spec.name}", spec.via, port, _log_since(mark))
        record = read_record(record_path)
        if record is not None and record.ssh_pid and listening(record.ssh_pid, port):
            if not told:
                notify(f"tunnel {spec.name}: ssh is connected; waiting for "
                       f"{spec.target} to answer ({spec.kind})")
                told = True
            last = probe_tunnel(spec, port, creds)
            if last.ok:
                proc.send_signal(signal.SIGUSR1)
                return _confirmed(record_path, proc, deadline)
            refused = target_refused(_log_since(mark))
            if refused and first_refusal is None:
                first_refusal = time.monotonic()
            if target_hopeless(refused, time.monotonic() - (first_refusal or 0.0)):
                raise NotReadyError(
                    f"tunnel {spec.name}: {spec.via} answers, but cannot reach "
                    f"{spec.target}: {refused}",
                    hint="check `target` in devenv.toml (host:port as the bastion sees it) "
                    "and that the service runs")
        time.sleep(POLL)
    raise NotReadyError(f"tunnel {spec.name}: {spec.target} did not answer through the "
                        f"tunnel within {timeout:g} s; last probe: {last.detail}",
                        hint="check that the service runs and that `kind` matches it; "
                        "raise DEVENV_WAIT_TIMEOUT for a slow link")


def _confirmed(record_path: Path, proc: subprocess.Popen[bytes],
               deadline: float) -> TunnelRecord:
    """Wait for the supervisor to mark the tunnel up (a fraction of a second)."""
    end = max(deadline, time.monotonic() + 5)
    while time.monotonic() < end:
        record = read_record(record_path)
        if record is not None and record.state == "up":
            return record
        if proc.poll() is not None:
            break
        time.sleep(POLL)
    raise StateError(f"the tunnel supervisor did not confirm (record {record_path})",
                     hint="read the log beside it and report it")


def _end(proc: subprocess.Popen[bytes]) -> None:
    """End a supervisor this call started (it ends its ssh on SIGTERM)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_tunnel(record: TunnelRecord) -> None:
    """End exactly the supervisor and ssh the record names (checked by start time), then
    forget the record."""
    _terminate(record.supervisor_pid, record.supervisor_started)
    if record.ssh_pid is not None:
        _terminate(record.ssh_pid, record.ssh_started)
    with contextlib.suppress(OSError):
        record.path.unlink()


def _terminate(pid: int, started: float | None) -> None:
    """SIGTERM, then SIGKILL after STOP_SECONDS. Done once the process is gone or a zombie:
    a detached supervisor's parent is init, which may reap it seconds later."""
    if not same_process(pid, started):
        return
    for sig, patience in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if not same_process(pid, started):
                return
            time.sleep(0.02)
