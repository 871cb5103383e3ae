"""The values the engine package hands out (containers, their ports, command results) and
the one thing Compose needs of the Engine API, as a Protocol: so api.py (which makes a
Compose) and compose.py (which asks the engine for containers) need not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
#: Engine 25 (API 1.44) is the first to accept a healthcheck's start_interval
START_INTERVAL_API = (1, 44)
ONEOFF_LABEL = "com.docker.compose.oneoff"


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    #: host name of a remote engine (tcp:// or ssh://), None for a local one
    remote_host: str | None

    @property
    def supports_start_interval(self) -> bool:
        return _api_tuple(self.api_version) >= START_INTERVAL_API


@dataclass(frozen=True)
class Published:
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    project: str
    service: str
    state: str  # created | running | restarting | exited | paused | dead
    health: str  # healthy | unhealthy | starting | "" (no healthcheck)
    status: str  # Docker's words, e.g. "Up 3 minutes (healthy)"
    ports: tuple[Published, ...]
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def host_port(self, container_port: int) -> Published | None:
        return next((p for p in self.ports if p.container_port == container_port), None)


def _api_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return 0, 0


@dataclass(frozen=True)
class Removed:
    containers: list[Container]
    #: network name -> the containers (of other projects) still on it, so it was kept
    kept_networks: dict[str, list[str]]


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class ContainerSource(Protocol):
    """What Compose asks of the engine: the project's containers, and removing one."""

    def containers(self, project: str | None = None, all: bool = True) -> list[Container]: ...

    def remove_container(self, name_or_id: str) -> bool: ...
