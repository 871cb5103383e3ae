"""The service catalog: data about the six services, and selection over it.

Adding a service is a template (templates/services/<name>.yml.j2) plus an entry here.
Ports come from ../shared/spec/port-mapping.md (dev, staging, prod columns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from .errors import SelectionError


@dataclass(frozen=True)
class ProbeSpec:
    """How devenv decides, from the host, that a service answers.

    kind: "http" (GET path must answer 2xx), "postgres" (the server answers a startup
    message with an authentication request) or "redis" (PING -> +PONG).
    """

    kind: str
    path: str = "/"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    container_port: int
    dev_port: int
    aliases: tuple[str, ...]
    needs: tuple[str, ...]
    probe: ProbeSpec
    scheme: str  # "http", "postgresql" or "redis": the form of the URL devenv reports
    default_image: str
    app_env: str  # the variable `devenv ports --env` writes for host apps
    staging_port: int | None = None
    prod_port: int | None = None
    description: str = ""
    #: container paths that hold data; each gets a named volume
    data_dirs: tuple[str, ...] = field(default_factory=tuple)
    #: started in a first wave on a cold start, so that its long initialisation (initdb)
    #: overlaps the start of everything else
    start_first: bool = False
    #: files under templates/ rendered into compose/ when the service is selected
    #: (a .j2 suffix is rendered with Jinja and dropped; other files are copied)
    files: tuple[str, ...] = field(default_factory=tuple)
    #: holds the team's data: `devenv up --lan` publishes it on the LAN only when named
    #: explicitly and confirmed a second time
    private: bool = False


@dataclass(frozen=True)
class HostApp:
    """An app the team runs on the host, whose port no container may take."""

    name: str
    port: int
    title: str
    label: str  # how a message names it: "grafana: 3000 is reserved for the frontend"


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            name="api",
            title="Backend API",
            container_port=7777,
            dev_port=7777,
            staging_port=7777,
            prod_port=443,
            aliases=("backend",),
            needs=("postgres", "redis"),
            probe=ProbeSpec("http", "/health"),
            scheme="http",
            default_image="",  # empty: build the bundled reference API
            app_env="API_URL",
            description="Main API",
            files=("api/Dockerfile", "api/app.py"),
        ),
        ServiceSpec(
            name="postgres",
            title="PostgreSQL",
            container_port=5432,
            dev_port=5432,
            staging_port=5432,
            prod_port=5432,
            aliases=("db",),
            needs=(),
            probe=ProbeSpec("postgres"),
            scheme="postgresql",
            default_image="postgres:16",
            app_env="DATABASE_URL",
            description="Database",
            data_dirs=("/var/lib/postgresql/data",),
            start_first=True,
            private=True,
        ),
        ServiceSpec(
            name="redis",
            title="Redis",
            container_port=6379,
            dev_port=6379,
            staging_port=6379,
            prod_port=6379,
            aliases=("cache",),
            needs=(),
            probe=ProbeSpec("redis"),
            scheme="redis",
            default_image="redis:7",
            app_env="REDIS_URL",
            description="Cache",
            data_dirs=("/data",),
            private=True,
        ),
        ServiceSpec(
            name="adminer",
            title="Adminer",
            container_port=8080,
            dev_port=8080,
            aliases=("admin",),
            needs=("postgres",),
            probe=ProbeSpec("http", "/"),
            scheme="http",
            default_image="adminer:4",
            app_env="ADMINER_URL",
            description="DB admin UI",
        ),
        ServiceSpec(
            name="prometheus",
            title="Prometheus",
            container_port=9090,
            dev_port=9090,
            staging_port=9090,
            prod_port=9090,
            aliases=("metrics",),
            needs=(),
            probe=ProbeSpec("http", "/-/healthy"),
            scheme="http",
            default_image="prom/prometheus:v2.53.0",
            app_env="PROMETHEUS_URL",
            description="Metrics",
            data_dirs=("/prometheus",),
            files=("prometheus/prometheus.yml.j2",),
        ),
        ServiceSpec(
            name="grafana",
            title="Grafana",
            container_port=3000,
            dev_port=3000,
            staging_port=3100,
            prod_port=None,
            aliases=("dashboards",),
            needs=("prometheus",),
            probe=ProbeSpec("http", "/api/health"),
            scheme="http",
            default_image="grafana/grafana:11.1.0",
            app_env="GRAFANA_URL",
            description="Dashboards",
            data_dirs=("/var/lib/grafana",),
            # the dashboards before their provider: the provider (and the mount of
            # grafana/dashboards) exist only when a dashboard was rendered
            files=(
                "grafana/dashboards/api.json.j2",
                "grafana/provisioning/datasources/prometheus.yml.j2",
                "grafana/provisioning/dashboards/devenv.yml.j2",
            ),
        ),
    )
}

#: host apps from the spec's development port list; their ports are reserved by default
HOST_APPS: tuple[HostApp, ...] = (
    HostApp("frontend", 3000, "Frontend (React Native Web)", "the frontend"),
    HostApp("metro", 8081, "Metro Bundler (Expo)", "Metro"),
    HostApp("expo", 19000, "Expo Simulator", "the Expo simulator"),
)

ALIASES: dict[str, str] = {alias: s.name for s in SERVICES.values() for alias in s.aliases}


def valid_names() -> list[str]:
    """Every word --only accepts: service names, then aliases."""
    return [*SERVICES, *ALIASES]


def resolve_name(word: str) -> str:
    key = word.strip().lower()
    if key in SERVICES:
        return key
    if key in ALIASES:
        return ALIASES[key]
    if not key:
        raise SelectionError(
            "empty service name",
            hint=f"name services with commas and no blanks, e.g. --only db,cache "
            f"(valid: {', '.join(valid_names())})",
        )
    raise SelectionError(
        f"unknown service {word.strip()!r}",
        hint=f"valid names: {', '.join(valid_names())}",
    )


@dataclass(frozen=True)
class Selection:
    """Services to run, in catalog order, and the dependencies that were added."""

    services: tuple[str, ...]
    requested: tuple[str, ...]
    #: dependency -> the selected service that needs it
    added: tuple[tuple[str, str], ...] = ()

    @property
    def everything(self) -> bool:
        return set(self.services) == set(SERVICES)


def split_words(values: Iterable[str]) -> list[str]:
    """`--only a,b --only c` -> ["a", "b", "c"]; keeps empty words so they can be refused."""
    return [word for value in values for word in value.split(",")]


def select_services(words: Iterable[str] | None) -> Selection:
    """Resolve names and aliases and add what they need. None or nothing means everything."""
    wanted = [resolve_name(w) for w in words] if words is not None else []
    if not wanted:
        everything = tuple(SERVICES)
        return Selection(services=everything, requested=everything)
    chosen: list[str] = []
    added: list[tuple[str, str]] = []
    pending = [(name, "") for name in dict.fromkeys(wanted)]
    while pending:
        name, needed_by = pending.pop(0)
        if name in chosen:
            continue
        chosen.append(name)
        if needed_by:
            added.append((name, needed_by))
        pending.extend((dep, name) for dep in SERVICES[name].needs)
    order = list(SERVICES)
    return Selection(
        services=tuple(sorted(chosen, key=order.index)),
        requested=tuple(dict.fromkeys(wanted)),
        added=tuple(added),
    )


def service_url(name: str, host: str, port: int, values: Mapping[str, str],
                show_secrets: bool = False) -> str:
    """The URL a client uses for a service at host:port, in the service's own form.

    Host apps get the published port; containers get service-name:container-port.
    """
    spec = SERVICES[name]
    if spec.scheme == "postgresql":
        user = quote(values["DEVENV_POSTGRES_USER"], safe="")
        password = quote(values["DEVENV_POSTGRES_PASSWORD"], safe="") if show_secrets else "***"
        db = quote(values["DEVENV_POSTGRES_DB"], safe="")
        return f"postgresql://{user}:{password}@{host}:{port}/{db}"
    if spec.scheme == "redis":
        return f"redis://{host}:{port}"
    if name == "adminer":
        query = urlencode({"pgsql": "postgres", "username": values["DEVENV_POSTGRES_USER"],
                           "db": values["DEVENV_POSTGRES_DB"]})
        return f"http://{host}:{port}/?{query}"
    return f"http://{host}:{port}"
