"""Who holds a host port: this project's containers, other containers, or host processes.

`HostPorts` is the read-only Mapping[int, Holder] that ports.plan_ports consults. It answers
lazily, one port at a time: a port in the kernel's listening table is busy at once, any other
port gets a bind test, so planning past 1,000 busy ports costs one table read and a handful of
bind tests.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .plan import Holder

#: a port is free only when all four accept a bind: IPv4 and IPv6, loopback and wildcard.
#: A listener on ::1 alone would not stop Docker, but a host app asking for "localhost"
#: could reach it instead of the container.
BIND_ADDRESSES: tuple[tuple[socket.AddressFamily, str], ...] = (
    (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET, "0.0.0.0"),
    (socket.AF_INET6, "::1"),
    (socket.AF_INET6, "::"),
)


def bind_blocked(port: int) -> bool:
    """True when some address family refuses a bind on `port` because it is in use.

    EACCES (a port below 1024 for a user who is not root) says nothing about use: the
    engine publishes as root, so such a port is free unless something listens there, which
    the kernel's listening table (consulted first, see HostPorts) tells."""
    for family, address in BIND_ADDRESSES:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host: nothing can listen there either
        try:
            # docker-proxy binds with SO_REUSEADDR too, so TIME_WAIT leftovers do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            # EACCES: not ours to bind, not in use; EADDRNOTAVAIL and friends: this
            # address does not exist here.
        finally:
            sock.close()
    return False


def loopback_blocked(port: int) -> bool:
    """True when 127.0.0.1:port cannot be bound here (all a local forward needs)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    finally:
        sock.close()
    return False


def listening_ports() -> frozenset[int] | None:
    """Every TCP port in LISTEN state in this network namespace, from the kernel's table
    (Linux /proc/net/tcp and tcp6) in one read; None where there is no such table."""
    ports: set[int] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)  # the header
                for line in handle:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":  # 0A: LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            found = True
        except OSError:
            continue
    return frozenset(ports) if found else None


def listener_pids() -> dict[int, int]:
    """port -> pid of every TCP listener whose process is visible (psutil, one scan)."""
    pids: dict[int, int] = {}
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.pid:
                pids.setdefault(conn.laddr.port, conn.pid)
    except Exception:  # noqa: BLE001 - naming is a courtesy; access may be denied
        pass
    return pids


def process_name(pid: int | None) -> str:
    if pid is None:
        return "another process"
    try:
        import psutil

        return f"{psutil.Process(pid).name()} (pid {pid})"
    except Exception:  # noqa: BLE001 - it may have exited, or be out of sight
        return "another process"


def describe_process(port: int) -> str:
    return process_name(listener_pids().get(port))


@dataclass(frozen=True)
class ContainerPort:
    """A host port some container publishes (running) or will publish (created, stopped)."""

    port: int
    container: str
    project: str
    service: str
    running: bool


class HostPorts(Mapping[int, Holder]):
    """Busy host ports, seen from the engine (containers) and from this host (bind tests).

    project: this project's name; its containers' ports are Holder(kind="own").
    check_host: False when the engine is remote, where local bind tests prove nothing.
    check_loopback: with a remote engine whose ports devenv forwards to this machine's
      127.0.0.1 (tunnels/forward.py): a port this machine cannot bind there is busy too,
      except those in `forwarded` (the forward of this very project holds them).
    """

    def __init__(self, containers: Mapping[int, ContainerPort], project: str,
                 check_host: bool = True, check_loopback: bool = False,
                 forwarded: frozenset[int] = frozenset()):
        self._containers = containers
        self._project = project
        self._check_host = check_host
        self._check_loopback = check_loopback and not check_host
        self._forwarded = forwarded
        self._cache: dict[int, Holder | None] = {}
        self._pids: dict[int, int] | None = None
        self._listening = listening_ports() if check_host else None

    def _describe(self, port: int) -> str:
        if self._pids is None:  # one scan, and only when a message needs a name
            self._pids = listener_pids()
        return process_name(self._pids.get(port))

    def _lookup(self, port: int) -> Holder | None:
        held = self._containers.get(port)
        if held is not None:
            if held.project == self._project:
                return Holder("own", f"this project's {held.service}", held.service)
            state = "" if held.running else ", stopped"
            project = f" (project {held.project}{state})" if held.project else (
                f" ({state[2:]})" if state else "")
            return Holder("container", f"container {held.container}{project}")
        if self._check_loopback:
            if port not in self._forwarded and loopback_blocked(port):
                return Holder("process", lambda: f"{self._describe(port)} on this machine "
                              "(where devenv forwards the remote ports)")
            return None
        if not self._check_host:
            return None
        # A listener in the kernel's table is busy without a test; any other port gets the
        # bind test, which also catches sockets that are bound but do not listen.
        if (self._listening is not None and port in self._listening) or bind_blocked(port):
            return Holder("process", lambda: self._describe(port))
        return None

    def __getitem__(self, port: int) -> Holder:
        if port not in self._cache:
            self._cache[port] = self._lookup(port)
        holder = self._cache[port]
        if holder is None:
            raise KeyError(port)
        return holder

    def mark(self, port: int, holder: Holder) -> None:
        """Record a port found busy after planning (the race), so the next plan avoids it."""
        self._cache[port] = holder

    def own_ports(self) -> dict[str, int]:
        return {c.service: p for p, c in self._containers.items()
                if c.project == self._project and c.running}

    # Mapping needs these; the planner never iterates, so only known holders are listed.
    def __iter__(self) -> Iterator[int]:
        return iter([p for p, h in self._cache.items() if h is not None])

    def __len__(self) -> int:
        return sum(1 for h in self._cache.values() if h is not None)
