"""The names devenv gives the data volumes of PostgreSQL and Redis, shared by the copy
machinery (ops), the prepared clusters and `up`'s seeding step."""

from __future__ import annotations

from ..config.settings import Settings

DATA_SERVICES = ("postgres", "redis")
#: the volume each data service keeps its data in (Compose's `<project>_<name>-data`)
VOLUME_KEYS = {name: f"{name}-data" for name in DATA_SERVICES}


def volume_name(settings: Settings, service: str) -> str:
    return f"{settings.project}_{VOLUME_KEYS[service]}"
