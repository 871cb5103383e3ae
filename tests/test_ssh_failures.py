"""ssh's messages, each turned into one typed error with the next step."""

from __future__ import annotations

import pytest

from devenv.errors import SshError
from devenv.tunnels.ssh_failures import (
    TARGET_GRACE,
    PortRaceError,
    classify_failure,
    target_hopeless,
)


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


def test_a_target_that_refuses_gets_a_grace_a_target_unknown_does_not():
    assert not target_hopeless("", 100)
    assert target_hopeless("connect failed: Name or service not known", 0)
    assert target_hopeless("administratively prohibited: open failed", 0)
    assert not target_hopeless("connect failed: Connection refused", 0)
    assert target_hopeless("connect failed: Connection refused", TARGET_GRACE)
