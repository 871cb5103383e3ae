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
