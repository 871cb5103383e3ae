"""The ssh command line of a tunnel, and records whose process is gone."""

from __future__ import annotations

import json
import os
import subprocess

import psutil
import pytest

from devenv.tunnels import runtime
from devenv.tunnels.runtime import read_record, ssh_command, stop_tunnel
from devenv.tunnels.tables import TunnelSpec

SPEC = TunnelSpec(name="prod-db", via="user@bastion", target_host="prod-db.internal",
                  target_port=5432, kind="postgres", ssh_options=("-p", "2222"))


def test_ssh_command_binds_loopback_and_puts_the_musts_first():
    command = ssh_command(SPEC, 5433, ssh_config="/cfg")
    assert command[:4] == ["ssh", "-N", "-L", "127.0.0.1:5433:prod-db.internal:5432"]
    text = " ".join(command)
    # ssh keeps the first value of an option: these two can not be overridden by ssh_options
    assert text.index("ExitOnForwardFailure=yes") < text.index("-p 2222")
    assert text.index("BatchMode=yes") < text.index("-p 2222")
    assert text.index("-F /cfg") < text.index("-p 2222") < text.index("ServerAliveInterval")
    assert command[-2:] == ["--", "user@bastion"]  # a destination is never an option


def _evaluated(command: list[str]) -> dict[str, str]:
    """What ssh makes of a command line (`ssh -G`: evaluates, connects to nothing)."""
    done = subprocess.run([command[0], "-G", *command[1:]], capture_output=True, text=True,
                          timeout=10, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


FORKING_CONFIG = """Host *
  ControlMaster auto
  ControlPath /tmp/devenv-test-cm-%C
  ControlPersist yes
  ForkAfterAuthentication yes
"""


def test_ssh_stays_in_the_foreground_whatever_the_ssh_config_says(tmp_path):
    """A user's ControlMaster/ControlPersist made ssh fork a master that kept the port
    after `tunnel down`; ForkAfterAuthentication made ssh exit at once ("exited without
    a message"). The command line wins over the config (ssh keeps the first value)."""
    from devenv.tunnels.forward import forward_command, ssh_target

    config = tmp_path / "ssh_config"
    config.write_text(FORKING_CONFIG)
    for command in (ssh_command(SPEC, 5433, ssh_config=str(config)),
                    forward_command(ssh_target("ssh://me@devbox"), {"postgres": 5433},
                                    "127.0.0.1", ssh_config=str(config))):
        seen = _evaluated(command)
        assert seen["controlmaster"] == "false" and seen["controlpersist"] == "no"
        assert seen["forkafterauthentication"] == "no"
        assert "controlpath" not in seen  # none: no shared connection is used either
        assert command.index("ControlMaster=no") < command.index("-F")


def test_a_record_whose_supervisor_is_gone_reads_as_dead(tmp_path):
    path = tmp_path / "prod-db.json"
    path.write_text(json.dumps({"supervisor_pid": os.getpid(), "supervisor_started": 1.0,
                                "ssh_pid": os.getpid(), "ssh_started": 1.0, "port": 5433,
                                "state": "up", "restarts": 2}))
    record = read_record(path)  # this pid runs, but it started later: not the supervisor
    assert record is not None and record.state == "dead" and not record.running
    assert record.ssh_pid is None and record.restarts == 2
    path.write_text("{not json")
    assert read_record(path) is None


def test_a_record_is_read_like_input(tmp_path):
    """Every field checked: a record that is not one is None, never an error; a pid
    without its start time is trusted with nothing (a pid alone may be anyone's now)."""
    import psutil

    path = tmp_path / "prod-db.json"
    me = psutil.Process(os.getpid())
    good = {"supervisor_pid": me.pid, "supervisor_started": me.create_time(),
            "ssh_pid": None, "port": 5433, "state": "up", "restarts": 0, "since": 1.0}
    path.write_text(json.dumps(good))
    record = read_record(path)
    assert record is not None and record.state == "up" and record.port == 5433
    for bad in ([1, 2], "text", {**good, "port": "5433"}, {**good, "port": 70000},
                {**good, "supervisor_pid": True}, {**good, "supervisor_pid": "1"},
                {**good, "supervisor_pid": -4}):
        path.write_text(json.dumps(bad))
        assert read_record(path) is None, bad
    for odd in ({"restarts": "many"}, {"since": "now"}, {"since": {}}, {"state": ["up"]},
                {"last_error": 3}, {"ssh_pid": "x"}, {"ssh_started": "x"}):
        path.write_text(json.dumps({**good, **odd}))
        record = read_record(path)
        assert record is not None and isinstance(record.restarts, int) \
            and isinstance(record.since, float) and isinstance(record.last_error, str), odd
    for unproven in ({"supervisor_started": None}, {"supervisor_started": "x"}):
        path.write_text(json.dumps({**good, **unproven}))
        record = read_record(path)
        assert record is not None and record.state == "dead", unproven


ME = os.getpid()
MY_START = psutil.Process(ME).create_time()


@pytest.mark.parametrize("change", [
    {"supervisor_started": None},  # no start time: nothing ties the pid to a supervisor
    {"supervisor_started": "x"},
    {"supervisor_pid": True},  # JSON true is no pid (int(True) is 1: init)
    {"supervisor_pid": 1, "supervisor_started": None},
    {"supervisor_pid": str(ME)},
    {"supervisor_pid": float(ME)},
    {"port": "5433\u00b2"},
    {"port": True},
    {"port": 70000},
    # a dead supervisor's ssh: its pid is trusted only with its own start time
    {"supervisor_started": 1.0, "ssh_pid": ME, "ssh_started": None},
    {"supervisor_started": 1.0, "ssh_pid": True, "ssh_started": MY_START},
])
def test_a_record_is_trusted_only_as_written_and_stop_signals_nothing_else(tmp_path, change,
                                                                            monkeypatch):
    """Every field of a record is checked as written: a pid that is not a JSON number, or
    one without its start time, names no process of devenv's; a bad port is no record."""
    path = tmp_path / "prod-db.json"
    data = {"supervisor_pid": ME, "supervisor_started": MY_START, "port": 5433,
            "state": "up", "restarts": 0}
    path.write_text(json.dumps({**data, **change}))
    signalled: list[int] = []
    monkeypatch.setattr(runtime.os, "kill", lambda pid, sig: signalled.append(pid))
    record = read_record(path)
    assert record is None or not record.running
    if record is not None:
        stop_tunnel(record)
    assert signalled == []


def test_a_record_as_the_supervisor_writes_it_is_trusted(tmp_path):
    path = tmp_path / "prod-db.json"
    path.write_text(json.dumps({"supervisor_pid": ME, "supervisor_started": MY_START,
                                "ssh_pid": ME, "ssh_started": MY_START, "port": 5433,
                                "state": "up", "restarts": "many", "last_error": 3}))
    record = read_record(path)
    assert record is not None and record.running and record.ssh_pid == ME
    assert (record.restarts, record.last_error) == (0, "")
