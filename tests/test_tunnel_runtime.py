"""The ssh command line of a tunnel, and records whose process is gone."""

from __future__ import annotations

import json
import os

from devenv.tunnels.runtime import read_record, ssh_command
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
