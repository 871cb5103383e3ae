"""The remote engine's forward: where ssh connects, and the one command for every port."""

from __future__ import annotations

from pathlib import Path

from devenv.config.settings import load_settings
from devenv.ports.holders import HostPorts
from devenv.tunnels.forward import applies, forward_command, ports_of, ssh_target
from devenv.tunnels.runtime import TunnelRecord


def _settings(tmp_path: Path, **values: str):
    return load_settings(tmp_path, values)


def test_ssh_target_from_docker_host():
    assert ssh_target("ssh://me@devbox:2222") is not None
    target = ssh_target("ssh://me@devbox:2222")
    assert target.destination == "me@devbox" and target.options == ("-p", "2222")
    assert ssh_target("ssh://devbox").options == ()
    assert ssh_target("tcp://devbox:2375") is None
    assert ssh_target("unix:///var/run/docker.sock") is None


def test_forwards_only_for_a_remote_ssh_engine_on_loopback(tmp_path):
    settings = _settings(tmp_path)
    assert applies("ssh://devbox", "devbox", settings)
    assert not applies("ssh://devbox", None, settings)  # ssh://localhost: the ports are here
    assert not applies("tcp://devbox:2375", "devbox", settings)
    wide = _settings(tmp_path, DEVENV_BIND="0.0.0.0")
    assert not applies("ssh://devbox", "devbox", wide)  # reachable at devbox already


def test_one_ssh_forwards_every_port_to_the_same_local_port():
    command = forward_command(ssh_target("ssh://me@devbox:2222"),
                              {"postgres": 5433, "redis": 6379}, "127.0.0.1")
    assert command[:6] == ["ssh", "-N", "-L", "127.0.0.1:5433:127.0.0.1:5433",
                           "-L", "127.0.0.1:6379:127.0.0.1:6379"]
    assert "ExitOnForwardFailure=yes" in command and "BatchMode=yes" in command
    assert command[-2:] == ["--", "me@devbox"]
    assert command.index("-p") < command.index("--")
    assert forward_command(ssh_target("ssh://devbox"), {"api": 7777}, "::1")[3] == (
        "127.0.0.1:7777:[::1]:7777")


def test_both_sides_a_port_taken_here_is_busy_unless_our_forward_holds_it():
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        remote_only = HostPorts({}, "p", check_host=False)
        assert remote_only.get(port) is None  # a remote engine alone cannot see this host
        both = HostPorts({}, "p", check_host=False, check_loopback=True)
        holder = both.get(port)
        assert holder is not None and "on this machine" in holder.description
        ours = HostPorts({}, "p", check_host=False, check_loopback=True,
                         forwarded=frozenset({port}))
        assert ours.get(port) is None


def test_the_forwards_record_is_read_like_input(tmp_path):
    """Its `ports` come from a file: anything but a table of port numbers forwards none."""
    import json
    import os

    import psutil

    from devenv.tunnels.forward import FORWARD_NAME, forwarded_ports
    from devenv.tunnels.runtime import tunnel_dir

    settings = _settings(tmp_path, DEVENV_PROJECT="fwd")
    folder = tunnel_dir(settings.state_dir, "fwd")
    folder.mkdir(parents=True)
    me = psutil.Process(os.getpid())
    record = {"supervisor_pid": me.pid, "supervisor_started": me.create_time(), "port": 5433,
              "state": "up"}
    for ports, forwarded in (({"postgres": 5433, "redis": 6379}, {5433, 6379}),
                             ({"postgres": "5433x", "redis": True, "x": 70000}, set()),
                             ([5433], set()), ("5433", set())):
        (folder / f"{FORWARD_NAME}.json").write_text(json.dumps({**record, "ports": ports}))
        assert forwarded_ports(settings) == forwarded, ports


def test_the_forwards_ports_are_read_as_written():
    def record(ports: object) -> TunnelRecord:
        return TunnelRecord(name="_engine", path=Path("/x"), port=1, state="up",
                            supervisor_pid=1, ssh_pid=None, restarts=0, since=0.0,
                            last_error="", meta={"ports": ports})

    assert ports_of(record({"postgres": 5433, "redis": "6379\u00b2", "api": True,
                            "grafana": 70000, "adminer": 8080.0})) == {"postgres": 5433}
    assert ports_of(record(["5433"])) == {}


def test_a_forward_to_another_engine_host_is_restarted_not_kept(tmp_path, monkeypatch):
    """The same ports, but DOCKER_HOST (or the Docker context) now names another machine:
    the forward that runs still leads to the old one, so it is replaced, not kept."""
    from devenv.tunnels import forward

    settings = _settings(tmp_path)
    ports = {"postgres": 5433}
    running = forward_command(ssh_target("ssh://me@devbox1"), ports, "127.0.0.1",
                              "/usr/bin/ssh", "")
    record = TunnelRecord(name="_engine", path=Path("/x"), port=5433, state="up",
                          supervisor_pid=1, ssh_pid=None, restarts=0, since=0.0,
                          last_error="", meta={"ports": ports, "command": running})
    stopped, started = [], []
    monkeypatch.setattr(forward, "current", lambda s: record)
    monkeypatch.setattr(forward, "stop_tunnel", stopped.append)
    monkeypatch.setattr(forward, "start_forward",
                        lambda name, command, *a, **k: started.append(command) or record)
    forward.ensure(settings, "ssh://me@devbox1", ports, lambda m: None, 10)
    assert (stopped, started) == ([], [])  # the very same forward: kept
    forward.ensure(settings, "ssh://me@devbox2", ports, lambda m: None, 10)
    assert stopped == [record] and started[0][-2:] == ["--", "me@devbox2"]
