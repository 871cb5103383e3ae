"""Host ports for the project's services, planned against everything on the engine and this
host: the engine-aware wrapper around the pure planner (ports.plan_ports).

After a port race (taken between planning and start) the port found taken is marked busy
and the plan is made again: only that service moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..config.settings import Settings
from ..config.state import Memory
from ..engine import Container, Engine
from .holders import ContainerPort, HostPorts, describe_process
from .plan import Holder, PortPlan, PortRequest, plan_ports


def reserved_ports(settings: Settings) -> dict[int, str]:
    names = {app.port: app.label for app in settings.catalog.host_apps}
    return {port: names.get(port, "a host app (DEVENV_RESERVED_PORTS)")
            for port in settings.reserved_ports}


def reservation_owners(settings: Settings) -> dict[int, str]:
    """port -> the host app devenv runs whose reservation it is: that app may have it."""
    return {app.port: app.name for app in settings.catalog.apps.values()}


def wanted_port(settings: Settings, name: str) -> int:
    """The configured port of a service, or the catalog's port of a host app."""
    app = settings.catalog.apps.get(name)
    return app.port if app is not None else settings.port(name)


def _container_ports(engine: Engine, containers: Sequence[Container]) -> dict[int, ContainerPort]:
    ports: dict[int, ContainerPort] = {}
    for c in containers:
        for port in engine.port_bindings(c):
            ports[port] = ContainerPort(port, c.name, c.project, c.service, c.running)
    return ports


@dataclass
class PortPlanner:
    """Plans host ports against every container on the engine and this host, and replans
    after a race with the ports found taken marked busy."""

    engine: Engine | None
    settings: Settings
    memory: Mapping[str, Memory]
    strict: bool = False
    check_host: bool = True
    #: False (--reset-ports): running services may move back to their configured ports
    keep_running: bool = True
    marks: dict[int, Holder] = field(default_factory=dict)
    #: a remote engine whose ports are forwarded here: check this machine's 127.0.0.1 too,
    #: except the ports this project's forward already holds
    check_loopback: bool = False
    forwarded: frozenset[int] = frozenset()
    #: host app -> the port it runs on now (started by devenv; its own, as a container's)
    apps_running: Mapping[str, int] = field(default_factory=dict)

    def plan(self, services: Sequence[str]) -> PortPlan:
        containers = self.engine.containers() if self.engine is not None else []
        ports = _container_ports(self.engine, containers) if self.engine is not None else {}
        host = HostPorts(ports, self.settings.project, check_host=self.check_host,
                         check_loopback=self.check_loopback, forwarded=self.forwarded)
        for name, port in self.apps_running.items():
            host.mark(port, Holder("own", f"this project's {name}", name))
        for port, holder in self.marks.items():
            host.mark(port, holder)
        requests = [PortRequest(name, wanted_port(self.settings, name), self.memory.get(name))
                    for name in services]
        own = {**host.own_ports(), **self.apps_running} if self.keep_running else {}
        return plan_ports(requests, host, reserved_ports(self.settings), own=own,
                          strict=self.strict, owners=reservation_owners(self.settings))

    def mark_taken(self, port: int) -> None:
        """A port Compose found taken after planning: busy from now on, held by a process
        (named when it is on this host)."""
        self.marks[port] = Holder("process", (lambda: describe_process(port))
                                  if self.check_host else "a process on the engine's host")
