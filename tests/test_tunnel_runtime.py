"""The ssh command line, what ssh's messages mean, and records whose process is gone."""

from __future__ import annotations

import json
import os

import pytest

from devenv.errors import SshError
from devenv.tunnel_runtime import PortRaceError, classify_failure, read_record, ssh_command
from devenv.tunnels import TunnelSpec

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


@pytest.mark.parametrize(("stderr", "words"), [
    ("ssh: Could not resolve hostname nohost: Name or service not known", "cannot resolve"),
    ("@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
     "Host key verification failed.", "has CHANGED"),
    ("No ED25519 host key is known for [h]:22 and you have requested strict checking.\n"
     "Host key verification failed.", "is not known"),
    ("user@bastion: Permission denied (publickey).", "refused the key"),
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "cannot reach"),
    ("kex_exchange_identification: read: Connection reset by peer", "cannot reach"),
    ("something new", "ssh failed: something new"),
])
def test_ssh_messages_become_one_typed_error(stderr, words):
    error = classify_failure("tunnel prod-db", "user@bastion", 5433,
                             "devenv-supervisor: starting\n" + stderr)
    assert isinstance(error, SshError) and error.exit_code == 6
    assert error.message.startswith("tunnel prod-db: ") and words in error.message
    assert error.hint


def test_a_taken_local_port_is_a_race_to_replan():
    error = classify_failure("tunnel prod-db", "user@bastion", 5433,
                             "bind [127.0.0.1]:5433: Address already in use\n"
                             "channel_setup_fwd_listener_tcpip: cannot listen to port: 5433\n"
                             "Could not request local forwarding.")
    assert isinstance(error, PortRaceError) and error.port == 5433


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


def test_a_target_that_refuses_gets_a_grace_a_target_unknown_does_not():
    from devenv.tunnel_runtime import TARGET_GRACE, target_hopeless

    assert not target_hopeless("", 100)
    assert target_hopeless("connect failed: Name or service not known", 0)
    assert target_hopeless("administratively prohibited: open failed", 0)
    assert not target_hopeless("connect failed: Connection refused", 0)
    assert target_hopeless("connect failed: Connection refused", TARGET_GRACE)
