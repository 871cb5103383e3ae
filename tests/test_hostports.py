from __future__ import annotations

import socket

from devenv.ports.holders import ContainerPort, HostPorts, bind_blocked


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listener_on_loopback_blocks():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert bind_blocked(s.getsockname()[1])


def test_listener_on_ipv6_loopback_blocks():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
    except OSError:
        return  # no IPv6 here
    with s:
        s.listen()
        assert bind_blocked(s.getsockname()[1])


def test_free_port_is_free():
    assert not bind_blocked(free_port())


def test_holders_are_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        other = free_port()
        host = HostPorts({other: ContainerPort(other, "foo-postgres-1", "foo", "postgres", True)},
                         project="mine")
        assert host[port].kind == "process"
        assert "python" in host[port].description or host[port].description == \
            "another process"
        assert host[other].description == "container foo-postgres-1 (project foo)"
        assert host.get(free_port()) is None


def test_own_ports_and_stopped_containers():
    host = HostPorts({5000: ContainerPort(5000, "mine-redis-1", "mine", "redis", True),
                      5001: ContainerPort(5001, "x-db-1", "x", "db", False)}, project="mine")
    assert host[5000].kind == "own" and host[5000].service == "redis"
    assert host[5001].description == "container x-db-1 (project x, stopped)"
    assert host.own_ports() == {"redis": 5000}


def test_remote_engine_skips_local_bind_tests():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert HostPorts({}, "p", check_host=False).get(s.getsockname()[1]) is None


class _NoPrivilegedPorts(socket.socket):
    """A socket as a user who is not root sees it: binds below 1024 fail with EACCES."""

    def bind(self, address):  # type: ignore[override]
        if address[1] < 1024:
            raise PermissionError(13, "Permission denied")
        return super().bind(address)


def test_privileged_port_is_free_for_a_user_unless_something_listens(monkeypatch):
    """The engine publishes as root: EACCES on a bind test is not "taken"; only the kernel's
    listening table can say a port below 1024 is in use."""
    import devenv.ports.holders as hostports

    monkeypatch.setattr(hostports.socket, "socket", _NoPrivilegedPorts)
    assert not bind_blocked(80)
    monkeypatch.setattr(hostports, "listening_ports", lambda: frozenset({443}))
    ports = HostPorts({}, "p")
    assert 80 not in ports
    assert ports[443].kind == "process"
