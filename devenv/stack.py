"""The use cases: up, down, ports, render. They wire settings, catalog, ports, render,
engine and probes together; they never print (progress goes out through callbacks)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .catalog import HOST_APPS, SERVICES, Selection, select_services, service_url
from .engine import Container, Engine, PortRaceError, connect
from .errors import (
    DevenvError,
    DockerUnavailableError,
    NotReadyError,
    PortConflictError,
    UsageError,
)
from .hostports import ContainerPort, HostPorts, describe_process
from .ports import Holder, PortPlan, PortRequest, plan_ports
from .probes import Target, WaitEvent, WaitResult, wait_until_ready
from .render import (
    COMPOSE_FILE,
    RenderInput,
    WriteResult,
    fingerprint,
    render_stack,
    write_outputs,
)
from .report import ServiceRow, mask
from .settings import Settings, load_settings
from .state import ProjectState, SecretStore, StateFile, project_lock, write_atomic

RACE_RETRIES = 3
LOG_TAIL = 20


@dataclass(frozen=True)
class Context:
    """What the CLI hands a use case: where, which environment, and how to tell progress."""

    project_dir: Path
    environ: Mapping[str, str]
    flags: Mapping[str, str] = field(default_factory=dict)
    env_file: Path | None = None
    notify: Callable[[str], None] = lambda message: None
    on_wait: Callable[[WaitEvent], None] | None = None

    def settings(self) -> Settings:
        return load_settings(self.project_dir, self.environ, self.flags, self.env_file)


@dataclass(frozen=True)
class UpResult:
    selection: Selection
    services: tuple[str, ...]
    plan: PortPlan
    writes: tuple[WriteResult, ...]
    rows: tuple[ServiceRow, ...]
    started: bool  # False when the stack was already up to date and nothing was touched
    wait: WaitResult | None = None


def secrets_of(settings: Settings) -> dict[str, str]:
    """Secrets to mask in anything devenv shows."""
    values = {"postgres_password": settings["DEVENV_POSTGRES_PASSWORD"]}
    grafana = settings["DEVENV_GRAFANA_ADMIN_PASSWORD"]
    if grafana:
        values["grafana_admin_password"] = grafana
    return values


def grafana_password(settings: Settings) -> str:
    return settings["DEVENV_GRAFANA_ADMIN_PASSWORD"] or SecretStore(
        settings.state_dir).get_or_create(settings.project, "grafana_admin_password")


def reserved_ports(settings: Settings) -> dict[int, str]:
    names = {app.port: app.label for app in HOST_APPS}
    return {port: names.get(port, "a host app (DEVENV_RESERVED_PORTS)")
            for port in settings.reserved_ports}


def _container_ports(engine: Engine, containers: Sequence[Container]) -> dict[int, ContainerPort]:
    ports: dict[int, ContainerPort] = {}
    for c in containers:
        for port in engine.port_bindings(c):
            ports[port] = ContainerPort(port, c.name, c.project, c.service, c.running)
    return ports


def _project_containers(engine: Engine, project: str) -> dict[str, Container]:
    return {c.service: c for c in engine.containers(project) if c.service in SERVICES}


def _check_same_directory(settings: Settings, containers: Iterable[Container]) -> None:
    """Refuse to take over a project that runs from another checkout."""
    mine = str(settings.compose_dir)
    for c in containers:
        if c.running and c.working_dir and os.path.realpath(c.working_dir) != \
                os.path.realpath(mine):
            raise UsageError(
                f"project {settings.project} is already running from {c.working_dir}",
                hint="give this checkout its own name, e.g. DEVENV_PROJECT="
                f"{settings.project}-{settings.project_dir.name.lower()[:20]} in .env, "
                "or run `devenv down` there",
            )


def _network_external(engine: Engine, settings: Settings) -> bool:
    network = engine.network(settings.network)
    if network is None:
        return False
    labels = network.get("Labels") or {}
    return labels.get("com.docker.compose.project") != settings.project


def _build_spec(settings: Settings) -> tuple[dict[str, object] | None, str]:
    """(compose build section for api, the image to use) from the three ways to get an API."""
    build_dir = settings["DEVENV_API_BUILD"]
    if build_dir:
        path = Path(build_dir).expanduser()
        if not path.is_absolute():
            path = (settings.project_dir / path).resolve()
        if not (path / "Dockerfile").is_file():
            raise UsageError(f"DEVENV_API_BUILD={build_dir}: no Dockerfile in {path}",
                             hint="point it at the directory that holds your backend's "
                             "Dockerfile")
        return {"context": str(path), "args": {}}, ""
    if settings.image("api"):
        return None, settings.image("api")
    return {"context": "./api", "args": {"BASE_IMAGE": settings["DEVENV_API_BASE_IMAGE"]}}, ""


def _context_hash(path: Path) -> str:
    """A cheap change detector for a build context: names, sizes and mtimes."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "node_modules", "__pycache__"))
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(full, path)}\0{st.st_size}\0{st.st_mtime_ns}\0"
                          .encode())
    return digest.hexdigest()[:16]


@dataclass
class _Planner:
    """Plans ports for a set of services against the engine and the host, and replans."""

    engine: Engine
    settings: Settings
    memory: Mapping[str, object]
    strict: bool
    check_host: bool
    marks: dict[int, Holder] = field(default_factory=dict)

    def plan(self, services: Sequence[str]) -> PortPlan:
        containers = self.engine.containers()
        host = HostPorts(_container_ports(self.engine, containers), self.settings.project,
                         check_host=self.check_host)
        for port, holder in self.marks.items():
            host.mark(port, holder)
        requests = [PortRequest(name, self.settings.port(name),
                                self.memory.get(name))  # type: ignore[arg-type]
                    for name in services]
        return plan_ports(requests, host, reserved_ports(self.settings), own=host.own_ports(),
                          strict=self.strict)


def _render_input(settings: Settings, services: Sequence[str], plan: PortPlan,
                  start_interval: bool, network_external: bool, url_host: str) -> RenderInput:
    build, _image = _build_spec(settings) if "api" in services else (None, "")
    needs_grafana = "grafana" in services
    return RenderInput(
        project=settings.project,
        network=settings.network,
        network_external=network_external,
        bind=settings.bind,
        url_host=url_host,
        services=tuple(services),
        ports={name: plan.port(name) for name in services},
        values=settings.values,
        secrets={"grafana_admin_password": grafana_password(settings)} if needs_grafana else {},
        start_interval=start_interval,
        api_build=build,
    )


def url_host(settings: Settings, engine_remote: str | None) -> str:
    """Where a host app reaches the published ports."""
    if engine_remote and not settings.bind_is_loopback:
        return engine_remote
    return settings.url_host


def _wait_for_test_seam(environ: Mapping[str, str], plan: PortPlan) -> None:
    """Test seam for the port race: publish the plan, then wait for the test's go-ahead."""
    seam = environ.get("DEVENV_TEST_AFTER_PLAN")
    if not seam:
        return
    Path(seam + ".plan").write_text(json.dumps({c.service: c.port for c in plan.choices}))
    deadline = time.monotonic() + 30
    while not Path(seam + ".go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _describe_running(engine: Engine, project: str) -> str:
    running = sorted(c.service for c in _project_containers(engine, project).values()
                     if c.running)
    return ("running now: " + ", ".join(running)) if running else "nothing of it is running"


def up(ctx: Context, only: Sequence[str] | None = None, reset_ports: bool = False,
       strict_ports: bool = False, show_secrets: bool = False) -> UpResult:
    """Plan ports, render, start what is not running as rendered, wait, report."""
    settings = ctx.settings()
    selection = select_services(only)
    for dep, needed_by in selection.added:
        ctx.notify(f"adding {dep} (needed by {needed_by})")
    engine = connect(ctx.environ)
    info = engine.info()
    if not settings.bind_is_loopback:
        ctx.notify(f"warning: ports bind to {settings.bind}: other machines can reach them")
    if info.remote_host:
        ctx.notify(f"engine at {info.remote_host}: ports are checked against its containers; "
                   "host processes there are not visible from here")
    state_file = StateFile(settings.state_dir, warn=ctx.notify)
    with project_lock(settings.state_dir, settings.project, "up", settings.wait_timeout,
                      on_wait=ctx.notify):
        before = _project_containers(engine, settings.project)
        _check_same_directory(settings, before.values())
        running = {name for name, c in before.items() if c.running}
        # The file holds what is selected and what already runs, so nothing running is
        # orphaned and Prometheus and Grafana get files only for services that run.
        services = tuple(n for n in SERVICES if n in set(selection.services) | running)
        state = state_file.load(settings.project)
        if reset_ports:
            state = replace(state, ports={})
            ctx.notify("forgetting remembered ports")
        planner = _Planner(engine, settings, state.ports, strict_ports,
                           check_host=info.remote_host is None)
        plan = planner.plan(services)
        for choice in plan.moved:
            ctx.notify(choice.describe())
        host = url_host(settings, info.remote_host)
        launch = _Launch(ctx, engine, settings, services, host, info.supports_start_interval,
                         _network_external(engine, settings))
        plan, writes, started, build_hash = launch.run(selection, plan, planner, state, before)
        after = _project_containers(engine, settings.project)
        state_file.save(settings.project, ProjectState(
            ports={**state.ports, **plan.as_memory()},
            fingerprint=launch.fingerprint,
            containers={name: c.id for name, c in after.items() if c.running},
            build=build_hash,
        ))
        rows = service_rows(settings, plan, services, host, show_secrets)
        write_app_env(settings, rows)
        targets = [Target(name, SERVICES[name].probe, host.strip("[]"), plan.port(name))
                   for name in services]
        wait = wait_until_ready(targets, settings.values, settings.wait_timeout,
                                check_alive=lambda: _dead(engine, settings.project, services),
                                on_event=ctx.on_wait)
    rows = tuple(replace(row, seconds_to_ready=wait.ready.get(row.service),
                         state="ready" if row.service in wait.ready else
                         "exited" if row.service in wait.exited else "not ready")
                 for row in rows)
    result = UpResult(selection, services, plan, tuple(writes), rows, started, wait)
    if not wait.ok:
        raise _not_ready(engine, settings, wait, result)
    return result


@dataclass
class _Launch:
    """Render and start, moving a service whose port is taken between planning and start."""

    ctx: Context
    engine: Engine
    settings: Settings
    services: tuple[str, ...]
    host: str
    start_interval: bool
    network_external: bool
    fingerprint: str = ""

    def run(self, selection: Selection, plan: PortPlan, planner: _Planner,
            state: ProjectState, before: Mapping[str, Container]
            ) -> tuple[PortPlan, list[WriteResult], bool, str]:
        settings = self.settings
        compose = self.engine.compose(settings.project, settings.compose_dir / COMPOSE_FILE)
        secrets = list(secrets_of(settings).values())
        for attempt in range(RACE_RETRIES + 1):
            data = _render_input(settings, self.services, plan, self.start_interval,
                                 self.network_external, self.host)
            files = render_stack(data, settings.project_dir / "templates")
            writes = write_outputs(settings.compose_dir, files)
            build_hash = _build_hash(settings, data)
            self.fingerprint = fingerprint(files, extra=build_hash)
            if self.fingerprint == state.fingerprint and all(
                    name in before and before[name].running
                    and state.containers.get(name) == before[name].id
                    for name in self.services):
                return plan, writes, False, build_hash  # up to date: touch nothing
            if attempt == 0:
                _say_missing_images(self.ctx, self.engine, settings, self.services)
                _wait_for_test_seam(self.ctx.environ, plan)
            needs_build = bool(build_hash) and (build_hash != state.build or "api" not in before)
            self.ctx.notify(f"starting {', '.join(selection.services)}")
            try:
                compose.up(selection.services, build=needs_build)
            except PortRaceError as race:
                service = next((c.service for c in plan.choices if c.port == race.port), None)
                if service is None or attempt == RACE_RETRIES:
                    raise PortConflictError(
                        f"port {race.port} kept being taken while starting",
                        hint="find what holds it (`devenv doctor`) or set another port",
                        detail=_describe_running(self.engine, settings.project),
                    ) from None
                planner.marks[race.port] = Holder("process", describe_process(race.port))
                self.ctx.notify(f"{service}: {race.port} was taken after planning, moving it")
                plan = planner.plan(self.services)
                self.ctx.notify(plan.by_service()[service].describe())
                continue
            except DevenvError as exc:
                exc.message = mask(exc.message, secrets)
                exc.detail = mask(exc.detail, secrets) if exc.detail else exc.detail
                raise
            if any(w.path.startswith("prometheus/") and w.status == "updated" for w in writes) \
                    and "prometheus" in before and before["prometheus"].running:
                # Prometheus rereads its configuration on SIGHUP; it keeps running.
                compose.kill(["prometheus"], "SIGHUP")
            return plan, writes, True, build_hash
        raise AssertionError("unreachable")


def _build_hash(settings: Settings, data: RenderInput) -> str:
    if data.api_build is None:
        return ""
    context = Path(str(data.api_build["context"]))
    return _context_hash(context if context.is_absolute() else settings.compose_dir / context)


def _say_missing_images(ctx: Context, engine: Engine, settings: Settings,
                        services: Sequence[str]) -> None:
    for name in services:
        image = settings.image(name)
        if name == "api" and (settings["DEVENV_API_BUILD"] or not image):
            continue
        if image and not engine.image_present(image):
            ctx.notify(f"{name}: image {image} is not on this engine; "
                       "docker compose will try to pull it from its registry")


def _dead(engine: Engine, project: str, services: Sequence[str]) -> dict[str, str]:
    found = _project_containers(engine, project)
    dead = {}
    for name in services:
        c = found.get(name)
        if c is None:
            dead[name] = "its container is gone"
        elif c.state in ("exited", "dead"):
            dead[name] = f"its container stopped: {c.status}"
        elif c.state == "restarting":
            dead[name] = f"its container is restarting: {c.status}"
    return dead


def _not_ready(engine: Engine, settings: Settings, wait: WaitResult,
               result: UpResult) -> NotReadyError:
    from .report import format_rows

    secrets = list(secrets_of(settings).values())
    containers = _project_containers(engine, settings.project)
    failed = {**wait.exited, **wait.timed_out}
    parts = [format_rows(result.rows), ""]
    for name, why in failed.items():
        parts.append(f"--- {name}: {why}")
        c = containers.get(name)
        logs = engine.logs(c.id, LOG_TAIL).rstrip() if c else ""
        parts.append(f"last {LOG_TAIL} log lines of {name}:\n{logs}" if logs
                     else f"({name} logged nothing)")
    names = ", ".join(failed)
    if wait.exited:
        message = f"{names} stopped while devenv waited for it"
        hint = "read the log lines above; fix and run `devenv up` again"
    else:
        message = f"{names} did not become ready within {settings.wait_timeout:g} s"
        hint = "read the log lines above, or raise DEVENV_WAIT_TIMEOUT; the rest keeps running"
    return NotReadyError(mask(message, secrets), hint=hint,
                         detail=mask("\n".join(parts), secrets))


def service_rows(settings: Settings, plan: PortPlan, services: Sequence[str], host: str,
                 show_secrets: bool = False, state: str = "starting") -> tuple[ServiceRow, ...]:
    return tuple(
        ServiceRow(service=name,
                   url=service_url(name, host, plan.port(name), settings.values, show_secrets),
                   host=host.strip("[]"), port=plan.port(name), state=state,
                   container_port=SERVICES[name].container_port,
                   configured_port=settings.port(name))
        for name in services
    )


def app_env(settings: Settings, rows: Sequence[ServiceRow]) -> dict[str, str]:
    """DATABASE_URL, REDIS_URL, API_URL, ... with real ports and credentials."""
    return {SERVICES[r.service].app_env:
            service_url(r.service, r.host if ":" not in r.host else f"[{r.host}]", r.port,
                        settings.values, show_secrets=True)
            for r in rows}


def write_app_env(settings: Settings, rows: Sequence[ServiceRow]) -> None:
    from .report import format_env

    text = ("# Generated by devenv up: URLs for apps on the host. Holds secrets (mode 0600).\n"
            + format_env(app_env(settings, rows)))
    write_atomic(settings.state_dir / "app.env", text, 0o600)


# --- ports -------------------------------------------------------------------------------
def live_rows(ctx: Context, show_secrets: bool = False) -> tuple[Settings, list[ServiceRow]]:
    """The project's services as Docker publishes them now (no cache)."""
    settings = ctx.settings()
    engine = connect(ctx.environ)
    host = url_host(settings, engine.remote_host)
    rows = []
    for name, c in sorted(_project_containers(engine, settings.project).items(),
                          key=lambda item: list(SERVICES).index(item[0])):
        spec = SERVICES[name]
        published = c.host_port(spec.container_port)
        if published is None:
            continue
        state = c.state if not c.health else f"{c.state} ({c.health})"
        rows.append(ServiceRow(
            service=name,
            url=service_url(name, host, published.host_port, settings.values, show_secrets),
            host=host.strip("[]"), port=published.host_port, state=state,
            container_port=spec.container_port, configured_port=settings.port(name)))
    return settings, rows


# --- down --------------------------------------------------------------------------------
def down(ctx: Context, volumes: bool = False) -> list[str]:
    """Remove the project's containers and network (and volumes if asked). Returns what ran."""
    settings = ctx.settings()
    engine = connect(ctx.environ)
    with project_lock(settings.state_dir, settings.project, "down", settings.wait_timeout,
                      on_wait=ctx.notify):
        containers = _project_containers(engine, settings.project)
        _check_same_directory(settings, containers.values())
        compose_file = settings.compose_dir / COMPOSE_FILE
        compose = engine.compose(settings.project,
                                 compose_file if compose_file.is_file() else None)
        if containers or volumes:
            compose.down(volumes=volumes)
        if volumes:
            left = engine.volumes(settings.project)
            if left:
                ctx.notify(f"volumes still present: {', '.join(left)}")
        state_file = StateFile(settings.state_dir, warn=ctx.notify)
        kept = state_file.load(settings.project)
        state_file.save(settings.project, ProjectState(ports=kept.ports))
    return sorted(containers)


# --- render ------------------------------------------------------------------------------
def render(ctx: Context, only: Sequence[str] | None = None) -> list[WriteResult]:
    """Write compose/ for the selection without starting anything."""
    settings = ctx.settings()
    selection = select_services(only)
    try:
        engine = connect(ctx.environ)
        info = engine.info()
    except DockerUnavailableError as exc:
        ctx.notify(f"no engine ({exc.message}); ports are not checked against containers")
        engine, info = None, None
    state = StateFile(settings.state_dir, warn=ctx.notify).load(settings.project)
    if engine is not None and info is not None:
        planner = _Planner(engine, settings, state.ports, strict=False,
                           check_host=info.remote_host is None)
        plan = planner.plan(selection.services)
        external = _network_external(engine, settings)
        start_interval, host = info.supports_start_interval, url_host(settings, info.remote_host)
    else:
        from .hostports import HostPorts as _HP

        host_ports = _HP({}, settings.project)
        requests = [PortRequest(n, settings.port(n), state.ports.get(n))
                    for n in selection.services]
        plan = plan_ports(requests, host_ports, reserved_ports(settings))
        external, start_interval, host = False, False, settings.url_host
    for choice in plan.moved:
        ctx.notify(choice.describe())
    data = _render_input(settings, selection.services, plan, start_interval, external, host)
    files = render_stack(data, settings.project_dir / "templates")
    return write_outputs(settings.compose_dir, files)
