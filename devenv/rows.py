"""The rows the formatters in report.py turn into tables and JSON, all in one place.

Use cases build them; report.py formats them; the JSON of each carries its schema there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServiceRow:
    """A service's URL: `up`, `restart` and `ports` (devenv.ports/1)."""

    service: str
    url: str
    host: str
    port: int
    state: str
    container_port: int
    configured_port: int
    seconds_to_ready: float | None = None
    #: False: the service should run (the last `up` started it) but its container does not
    running: bool = True
    #: its published port at the URL host (http://127.0.0.1:PORT); equal to `url` unless
    #: the HTTPS proxy serves it (DEVENV_HTTPS), then `url` is the proxy's
    direct_url: str = ""

    @property
    def moved(self) -> bool:
        return self.port != self.configured_port


@dataclass(frozen=True)
class StatusRow:
    """A service's container: `status` (devenv.status/1)."""

    service: str
    container: str
    state: str
    health: str
    url: str
    port: int | None
    uptime_seconds: float | None
    restarts: int
    exit_code: int | None
    #: the published port's URL; `url` is the HTTPS proxy's when it serves the service
    direct_url: str = ""


@dataclass(frozen=True)
class Check:
    """One finding of `doctor` (devenv.doctor/1)."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


#: (key, value, source) of `config` (devenv.config/1)
ConfigRow = tuple[str, str, str]
#: a service's or host app's port allocation of `ports --plan` (devenv.plan/1)
PlanRow = dict[str, Any]
