"""The data services' names and volumes, and the psql command line with its password in the
environment: shared by the copy machinery (ops), the dumps, the prepared clusters and
`up`'s seeding step."""

from __future__ import annotations

from collections.abc import Sequence

from ..config.branchstate import in_use_suffix
from ..config.settings import Settings

#: the services whose data a snapshot copies, and which belongs to the git branch
DATA_SERVICES = ("postgres", "redis")
#: the volume each data service keeps its data in (Compose's `<project>_<name>-data`)
VOLUME_KEYS = {name: f"{name}-data" for name in DATA_SERVICES}


def volume_name(settings: Settings, service: str, suffix: str | None = None) -> str:
    """The volume of `service`'s data: the branch in use's with [data] branches on (or
    the branch whose volume `suffix` is given)."""
    if suffix is None:
        suffix = in_use_suffix(settings)
    return f"{settings.project}_{VOLUME_KEYS[service]}{suffix}"


def compose_keys(settings: Settings, services: Sequence[str]) -> dict[str, str]:
    """Compose volume key -> the key of the git branch in use (`postgres-data--<slug>`, so
    the volume is Compose's `<project>_postgres-data--<slug>`: another key, so Compose
    recreates the service on it), for the data services among `services`; empty with
    branches off or on the data from before them."""
    suffix = in_use_suffix(settings)
    if not suffix:
        return {}
    return {VOLUME_KEYS[s]: f"{VOLUME_KEYS[s]}{suffix}" for s in services if s in DATA_SERVICES}


def volume_labels(settings: Settings, service: str, suffix: str | None = None
                  ) -> dict[str, str]:
    """Compose's labels of a data volume, so that `up` adopts it as its own."""
    if suffix is None:
        suffix = in_use_suffix(settings)
    return {"com.docker.compose.project": settings.project,
            "com.docker.compose.volume": f"{VOLUME_KEYS[service]}{suffix}"}


def pg_env(settings: Settings) -> dict[str, str]:
    return {"PGPASSWORD": settings["DEVENV_POSTGRES_PASSWORD"]}


def psql(settings: Settings, database: str | None = None) -> list[str]:
    return ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", settings["DEVENV_POSTGRES_USER"],
            "-d", database or settings["DEVENV_POSTGRES_DB"]]
