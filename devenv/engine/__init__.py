"""The one seam to Docker: nothing else in devenv imports docker or runs the docker CLI.

    dockercontext.py  which engine: DOCKER_HOST, DOCKER_CONTEXT, the CLI's current context
    transport.py      HTTP over the local unix socket, or the docker SDK for remote engines
    models.py         the values handed out (Container, Published, ...) and ContainerSource
    api.py            Engine: the Engine API calls devenv makes, and `connect`
    compose.py        Compose: `docker compose`, exec and run as the CLI; Compose's errors

Use cases get their Engine from `Context.engine()` (whose factory calls `connect`), so
tests can hand them a fake (tests/conftest.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import ContainerGoneError, Engine, EventStream, HelperRun, LogDemuxer, LogStream, connect
from .models import (
    ONEOFF_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    START_INTERVAL_API,
    WORKDIR_LABEL,
    CommandResult,
    Container,
    EngineInfo,
    Published,
    Removed,
)
from .transport import remote_host_of

_COMPOSE_NAMES = ("Compose", "PortRaceError", "compose_error",
                  "ServiceNotRunningError", "RunInterruptedError", "ExecResult", "WatchProcess",
                  "parse_compose_version")

if TYPE_CHECKING:
    from .compose import (
        Compose,
        ExecResult,
        PortRaceError,
        RunInterruptedError,
        ServiceNotRunningError,
        WatchProcess,
        compose_error,
        parse_compose_version,
    )


def __getattr__(name: str) -> Any:
    # compose.py is imported when first used: `devenv ports` never needs it
    if name in _COMPOSE_NAMES:
        from . import compose

        return getattr(compose, name)
    raise AttributeError(name)

__all__ = [
    "PROJECT_LABEL", "SERVICE_LABEL", "START_INTERVAL_API", "WORKDIR_LABEL",
    "CommandResult", "Compose", "ContainerGoneError", "HelperRun", "Container", "Engine",
    "EngineInfo", "EventStream",
    "LogDemuxer", "LogStream",
    "PortRaceError", "Published", "Removed", "ServiceNotRunningError",
    "RunInterruptedError",
    "ExecResult", "WatchProcess", "parse_compose_version", "ONEOFF_LABEL",
    "compose_error", "connect", "remote_host_of",
]
