"""The supervisor as a real process, with a stand-in for ssh (a python one-liner)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


def _start(tmp_path: Path, script: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    record, log = tmp_path / "t.json", tmp_path / "t.log"
    proc = subprocess.Popen([sys.executable, "-m", "devenv.tunnels.supervisor", "--record",
                             str(record), "--log", str(log), "--port", "1", "--meta",
                             '{"kind": "tcp"}', "--", sys.executable, "-c", script],
                            start_new_session=True)
    return proc, record, log


def _wait_for(check, seconds: float = 15.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met")


def _read(record: Path) -> dict:
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return {}


def test_an_exit_before_confirmation_is_a_failure_not_a_retry(tmp_path):
    proc, record, log = _start(
        tmp_path, "import sys; sys.stderr.write('x: Permission denied (publickey).\\n');"
        "sys.exit(255)")
    assert proc.wait(15) == 1
    data = _read(record)
    assert data["state"] == "failed" and data["restarts"] == 0 and data["kind"] == "tcp"
    assert data["last_error"] == "ssh exited with 255: x: Permission denied (publickey)."
    assert "Permission denied" in log.read_text()


def test_after_confirmation_a_dropped_ssh_is_restarted_and_sigterm_ends_both(tmp_path):
    proc, record, _ = _start(tmp_path, "import time; time.sleep(60)")
    first = _wait_for(lambda: _read(record).get("ssh_pid"))
    proc.send_signal(signal.SIGUSR1)  # what `tunnel up` sends once the far end answered
    time.sleep(0.3)
    psutil.Process(first).kill()
    second = _wait_for(lambda: _read(record).get("ssh_pid") not in (None, first)
                       and _read(record)["ssh_pid"])
    assert _read(record)["restarts"] == 1
    assert "ssh exited with -9" in _read(record)["last_error"]
    proc.terminate()
    assert proc.wait(15) == 0
    assert not record.exists()
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == "zombie"


def test_a_long_log_keeps_only_its_last_lines(tmp_path):
    from devenv.tunnels.supervisor import trim_log

    log = tmp_path / "t.log"
    log.write_bytes(b"".join(b"line %06d\n" % i for i in range(1000)))  # 12,000 bytes
    trim_log(log, limit=20_000, keep=100)
    assert log.stat().st_size == 12_000  # under the limit: untouched
    trim_log(log, limit=5_000, keep=100)
    text = log.read_text()
    assert text.startswith("line ") and text.endswith("line 000999\n")
    assert len(text) <= 100 and (log.stat().st_mode & 0o777) == 0o600


def test_the_log_stays_within_its_limit_while_one_ssh_stays_connected(tmp_path):
    """A chatty ssh (`-v`, a noisy bastion) that never exits: the log used to be trimmed
    only when ssh restarted, so it grew without bound. Now it never passes LOG_LIMIT."""
    from devenv.tunnels.supervisor import LOG_LIMIT

    lines = 60_000  # 60 bytes each: 3.6 MB, more than three times the limit
    proc, record, log = _start(
        tmp_path, "import sys, time\n"
        f"for i in range({lines}):\n"
        "    sys.stderr.write('debug1: channel %06d: still connected and talking...\\n' % i)\n"
        "sys.stderr.write('debug1: ' + 'done\\n'); sys.stderr.flush(); time.sleep(60)")
    try:
        ssh = _wait_for(lambda: _read(record).get("ssh_pid"))
        proc.send_signal(signal.SIGUSR1)
        largest = 0
        end = time.monotonic() + 30
        while time.monotonic() < end:
            size = log.stat().st_size if log.exists() else 0
            largest = max(largest, size)
            if b"debug1: done" in log.read_bytes()[-200:]:
                break
            time.sleep(0.005)
        assert b"debug1: done" in log.read_bytes()[-200:], "the stand-in never finished"
        assert largest <= LOG_LIMIT and log.stat().st_size <= LOG_LIMIT
        text = log.read_text()
        assert f"channel {lines - 1:06d}" in text and "channel 000000" not in text
        assert _read(record)["ssh_pid"] == ssh and _read(record)["restarts"] == 0
        assert (log.stat().st_mode & 0o777) == 0o600
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_a_failure_is_read_from_this_start_even_after_the_log_was_trimmed(tmp_path):
    """A log past its limit from earlier runs is trimmed when a tunnel starts: the error
    is still ssh's own words from this start (an offset into the old file read nothing:
    "ssh exited without a message")."""
    from devenv.errors import SshError
    from devenv.tunnels.runtime import start_tunnel
    from devenv.tunnels.tables import Credentials, TunnelSpec

    folder = tmp_path / "tunnels"
    folder.mkdir()
    (folder / "race.log").write_bytes(b"old: Could not resolve hostname x\n" * 60_000)
    fake = tmp_path / "ssh"
    fake.write_text("#!/bin/sh\necho 'tunnel@bastion: Permission denied (publickey).' >&2\n"
                    "exit 255\n")
    fake.chmod(0o755)
    spec = TunnelSpec(name="race", via="bastion", target_host="db", target_port=5432)
    try:
        start_tunnel(spec, 1, folder, Credentials("", "", ""), timeout=20, ssh=str(fake))
    except SshError as exc:
        assert "refused the key: tunnel@bastion: Permission denied (publickey)." in exc.message
    else:
        raise AssertionError("the fake ssh was not reported")
