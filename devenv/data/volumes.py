"""The data services' names and volumes, and the psql command line with its password in the
environment: shared by the copy machinery (ops), the dumps, the prepared clusters and
`up`'s seeding step."""

from __future__ import annotations

from ..config.settings import Settings

DATA_SERVICES = ("postgres", "redis")
#: the volume each data service keeps its data in (Compose's `<project>_<name>-data`)
VOLUME_KEYS = {name: f"{name}-data" for name in DATA_SERVICES}


def volume_name(settings: Settings, service: str) -> str:
    return f"{settings.project}_{VOLUME_KEYS[service]}"


def pg_env(settings: Settings) -> dict[str, str]:
    return {"PGPASSWORD": settings["DEVENV_POSTGRES_PASSWORD"]}


def psql(settings: Settings, database: str | None = None) -> list[str]:
    return ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", settings["DEVENV_POSTGRES_USER"],
            "-d", database or settings["DEVENV_POSTGRES_DB"]]
