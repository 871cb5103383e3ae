"""The use cases behind the commands. They wire settings, catalog, ports, render, engine and
probes together and return values; they never print (progress goes out through callbacks)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..config.catalog import Selection
from ..config.settings import Settings
from ..config.state import ProjectState, StateFile, known_secrets, project_lock
from ..context import Context
from ..data.volumes import compose_keys
from ..engine import Container, Engine, EngineInfo, PortRaceError
from ..errors import DockerUnavailableError, NotReadyError, PortConflictError, UsageError
from ..files import write_atomic
from ..live.output import ContainerOutput
from ..live.running import (
    check_same_directory,
    dead_services,
    describe_running,
    in_catalog_order,
    make_row,
    probe_targets,
    project_containers,
    proxy_port_of,
    url_host,
)
from ..live.status import live_rows
from ..ports.plan import PortPlan
from ..ports.planner import PortPlanner
from ..probes import Target, WaitResult, wait_until_ready
from ..render.stackfiles import LanPublish, Rendered, network_external, render_input, write_stack
from ..render.templates import WriteResult
from ..report import format_env, format_rows, mask
from ..rows import ConfigRow, PlanRow, ServiceRow
from ..tunnels import forward as engine_forward
from . import apps
from .launch import needs_rebuild, start
from .networks import NetworkCheck

LOG_TAIL = 20
#: starts retried after a port was taken between planning and start
RACE_RETRIES = 3


if TYPE_CHECKING:
    from concurrent.futures import Future

    from ..data.clusters import ClusterPlan


@dataclass(frozen=True)
class UpResult:
    selection: Selection
    services: tuple[str, ...]
    plan: PortPlan
    writes: tuple[WriteResult, ...]
    rows: tuple[ServiceRow, ...]
    started: bool  # False when the stack already ran as rendered and nothing was touched
    wait: WaitResult | None = None


def _engine(ctx: Context, settings: Settings) -> tuple[Engine, EngineInfo]:
    engine = ctx.engine()
    info = engine.info()
    if not settings.bind_is_loopback:
        ctx.notify(f"warning: ports bind to {settings.bind}: other machines can reach them")
    if info.remote_host and engine_forward.applies(engine.docker_host, info.remote_host,
                                                   settings):
        ctx.notify(f"engine at {info.remote_host}: ports are checked against its containers "
                   "and this machine's 127.0.0.1 (where they are forwarded); processes on "
                   "that host are not visible from here")
    elif info.remote_host:
        ctx.notify(f"engine at {info.remote_host}: ports are checked against its containers "
                   "only; processes on that host are not visible from here")
    return engine, info


def up(ctx: Context, only: Sequence[str] | None = None, reset_ports: bool = False,
       strict_ports: bool = False, show_secrets: bool = False,
       lan: LanPublish | None = None) -> UpResult:
    """select -> lock -> look -> plan -> render and start -> finish -> wait -> report; a
    port taken between plan and start moves that service and render/start run again."""
    from ..data import branches, clusters  # only `up` needs them: down, logs and config
    # stay lighter

    began = time.monotonic()
    settings = ctx.settings()
    selection = _select(ctx, settings, only)
    apps.check_cwds(settings, selection.apps)
    engine, info = _engine(ctx, settings)
    state_file = StateFile(settings.state_dir, warn=ctx.notify)
    with project_lock(settings.state_dir, settings.project, "up", settings.wait_timeout,
                      on_wait=ctx.notify):
        said = branches.enter(ctx, engine, settings)  # [data] branches: the branch's data
        if said:
            ctx.notify(said)
        scene = _look(ctx, engine, info, settings, selection, state_file, reset_ports)
        planner = _planner(engine, info, settings, scene, strict_ports, reset_ports)
        plan = _plan(ctx, planner, scene, lan, selection.apps)
        plan, rendered, started, cluster = _start_stack(
            ctx, engine, info, settings, scene, planner, plan, lan, selection, state_file)
        rows = _starting_rows(settings, scene, plan, show_secrets)
        _write_app_env(settings, rows)
        wait = _wait(ctx, engine, settings, rows, since=began)
        _save_timing(settings, began, started, selection.services, wait)
        app_rows: tuple[ServiceRow, ...] = ()
        if wait.ok and selection.apps:
            app_rows = apps.start_selected(ctx, settings, scene.host, planner, plan,
                                           (*scene.services, *selection.apps), selection.apps,
                                           rows, state_file, lan)
            started = True
    rows = _with_wait(rows, wait)
    if not wait.ok:
        raise _not_ready(engine, settings, wait, rows)
    _check_login(settings, rows)
    clusters.start_preparing(engine, settings, cluster)  # in the background, after initdb
    return UpResult(selection, scene.services, plan, rendered.writes, rows + app_rows,
                    started, wait)


@dataclass(frozen=True)
class _Scene:
    """What `up` found under the lock, before it plans: the containers, what the compose
    file holds, which services start first and which after their migration, the fresh
    data volumes' cluster (and its unpacking), the network, the remembered state and the
    host the URLs name."""

    before: Mapping[str, Container]
    services: tuple[str, ...]
    first: tuple[str, ...]
    migrating: tuple[str, ...]
    cluster: ClusterPlan
    unpacking: Future[ClusterPlan] | None
    network_external: bool
    state: ProjectState
    forwarding: bool
    host: str


def _select(ctx: Context, settings: Settings, only: Sequence[str] | None) -> Selection:
    selection = settings.catalog.select(only)
    for dep, needed_by in selection.added:
        ctx.notify(f"adding {dep} (needed by {needed_by})")
    if settings.catalog.proxy in selection.services:
        plain = [n for n in selection.services
                 if not (settings.catalog[n].routed or settings.catalog[n].https_proxy)]
        if plain:
            ctx.notify(f"https: {', '.join(plain)} "
                       f"{'speak' if len(plain) > 1 else 'speaks'} no HTTP: not routed "
                       "through the proxy (their URLs stay direct)")
    return selection


def _look(ctx: Context, engine: Engine, info: EngineInfo, settings: Settings,
          selection: Selection, state_file: StateFile, reset_ports: bool) -> _Scene:
    before = project_containers(engine, settings.project)
    check_same_directory(settings, before.values())
    before = _remove_disabled(ctx, engine, settings, before)
    services = _file_services(settings, selection, before)
    # A service with a migration starts last: after what it needs answers and the
    # migration succeeded (data.migrate). A fresh database may start from its seed.
    migrating = _migrating(settings, selection)
    first = tuple(s for s in selection.services if s not in migrating)
    cluster, unpacking = _fresh_volumes(ctx, engine, settings, first, before)
    network = _check_network(ctx, engine, settings, services, before)
    if network.missing and any(not c.running for c in before.values()):
        before = project_containers(engine, settings.project)
    state = state_file.load(settings.project)
    if reset_ports:
        state = replace(state, ports={})
        ctx.notify("forgetting remembered ports")
    forwarding = engine_forward.applies(engine.docker_host, info.remote_host, settings)
    host = engine_forward.FORWARD_HOST if forwarding else url_host(settings, info.remote_host)
    return _Scene(before, services, first, migrating, cluster, unpacking, network.external,
                  state, forwarding, host)


def _remove_disabled(ctx: Context, engine: Engine, settings: Settings,
                     before: Mapping[str, Container]) -> dict[str, Container]:
    """A container of a service its setting turned off (the HTTPS proxy after
    DEVENV_HTTPS=false) is removed: the plain URLs are the URLs again."""
    off = [c for name, c in before.items() if name in settings.disabled]
    if off:
        ctx.notify(f"DEVENV_HTTPS is off: removing {', '.join(c.service for c in off)}")
        for c in off:
            if c.running:
                engine.stop(c.id)
        engine.remove_containers(off)
    return {name: c for name, c in before.items() if name not in settings.disabled}


def _plan(ctx: Context, planner: PortPlanner, scene: _Scene,
          lan: LanPublish | None, host_apps: Sequence[str] = ()) -> PortPlan:
    plan = planner.plan((*scene.services, *host_apps))
    for choice in plan.moved:
        ctx.notify(choice.describe())
    if lan is not None:
        ctx.notify(f"warning: {', '.join(lan.services)} also published on the LAN at "
                   f"{lan.address}: anyone on this network can reach "
                   + ("them" if len(lan.services) > 1 else "it")
                   + " (a plain `devenv up` takes it off again)")
    return plan


def _planner(engine: Engine, info: EngineInfo, settings: Settings, scene: _Scene,
             strict_ports: bool, reset_ports: bool) -> PortPlanner:
    """The planner over this machine: remembered ports, what runs (containers, the remote
    engine's forward, host apps devenv runs)."""
    return PortPlanner(engine, settings, scene.state.ports, strict_ports,
                       check_host=info.remote_host is None, keep_running=not reset_ports,
                       check_loopback=scene.forwarding,
                       forwarded=engine_forward.forwarded_ports(settings),
                       apps_running=apps.running_ports(settings, apps.records(settings)))


def _start_stack(ctx: Context, engine: Engine, info: EngineInfo, settings: Settings,
                 scene: _Scene, planner: PortPlanner, plan: PortPlan, lan: LanPublish | None,
                 selection: Selection, state_file: StateFile
                 ) -> tuple[PortPlan, Rendered, bool, ClusterPlan]:
    """Render, start and finish the containers, then remember the ports; with host apps
    only (nothing of the stack selected), there is no file to render."""
    from ..data.clusters import ClusterPlan

    if not scene.services:
        return plan, Rendered((), (), "", ""), False, ClusterPlan()
    plan, rendered, started = _render_and_start(ctx, engine, info, settings, scene,
                                                planner, plan, lan)
    cluster = _finish(ctx, engine, settings, scene, plan, rendered, started)
    state_file.save(settings.project, _remembered(
        scene.state, plan, rendered, selection, project_containers(engine, settings.project)))
    return plan, rendered, started, cluster


def _starting_rows(settings: Settings, scene: _Scene, plan: PortPlan,
                   show_secrets: bool) -> tuple[ServiceRow, ...]:
    """A row per service of the file, at its planned port (through the HTTPS proxy's port
    when DEVENV_HTTPS is on), before the wait."""
    proxy = settings.catalog.proxy
    proxy_port = plan.port(proxy) if proxy in scene.services else None
    return tuple(make_row(settings, name, scene.host, plan.port(name), "starting",
                          show_secrets, proxy_port) for name in scene.services)


def _render_and_start(ctx: Context, engine: Engine, info: EngineInfo, settings: Settings,
                      scene: _Scene, planner: PortPlanner, plan: PortPlan,
                      lan: LanPublish | None) -> tuple[PortPlan, Rendered, bool]:
    """Render (written only on change); start unless everything runs as rendered. A port
    taken between plan and start moves that service and both run again."""
    from ..data import clusters

    held = {clusters.SERVICE: scene.unpacking.result} if scene.unpacking else None
    for attempt in range(RACE_RETRIES + 1):
        rendered = write_stack(settings, render_input(
            settings, scene.services, plan, info.supports_start_interval,
            scene.network_external, scene.host, ctx.notify, lan,
            compose_keys(settings, scene.services)), ctx.notify)
        if is_current(rendered, scene.state, scene.before):
            return plan, rendered, False
        try:
            start(engine, settings, scene.first, rendered, scene.before, scene.state,
                  ctx.notify, first=attempt == 0, held=held)
            return plan, rendered, True
        except PortRaceError as race:
            plan = _replan_after_race(ctx, engine, settings, planner, plan, race,
                                      last=attempt == RACE_RETRIES)
    raise AssertionError("unreachable: the last race raises")  # pragma: no cover


def _finish(ctx: Context, engine: Engine, settings: Settings, scene: _Scene,
            plan: PortPlan, rendered: Rendered, started: bool) -> ClusterPlan:
    """After the start: the unpacked cluster, the migrations (then their services), and the
    remote engine's forward. Returns the cluster plan the background preparation needs."""
    cluster = scene.unpacking.result() if scene.unpacking is not None else scene.cluster
    for name in scene.migrating if started else ():
        _migrate_then_start(ctx, engine, settings, name, plan, scene.host,
                            needs_rebuild(rendered, scene.state, scene.before))
    if scene.forwarding:  # probes and URLs go through the forward from here on
        engine_forward.ensure(settings, engine.docker_host,
                              {n: plan.port(n) for n in scene.services}, ctx.notify,
                              settings.wait_timeout)
    return cluster


def _fresh_volumes(ctx: Context, engine: Engine, settings: Settings, first: Sequence[str],
                   before: Mapping[str, Container]
                   ) -> tuple[ClusterPlan, Future[ClusterPlan] | None]:
    """A fresh volume starts from the `seed` snapshot, else from a prepared PostgreSQL
    cluster (unpacked in the background while the stack is planned and the other services
    start; PostgreSQL starts after it), else from initdb. The cluster plan, and the unpacking
    (a future) or None."""
    from ..data import clusters, seeding

    if not set(first) - _running(before) \
            or seeding.prepare_volumes(engine, settings, first, ctx.notify):
        return clusters.ClusterPlan(), None
    cluster = clusters.plan(engine, settings, ctx.environ, first)
    return cluster, clusters.unpack_in_background(engine, settings, cluster, ctx.notify)


def _running(containers: Mapping[str, Container]) -> set[str]:
    return {name for name, c in containers.items() if c.running}


def _file_services(settings: Settings, selection: Selection,
                   before: Mapping[str, Container]) -> tuple[str, ...]:
    """What the file holds: the selection and what already runs, with what those need, so
    that nothing running becomes an orphan and files that list services (Prometheus'
    targets) list what runs."""
    running = {name for name in _running(before) if name in settings.catalog}
    wanted = set(selection.services) | running
    # nothing at all (host apps only): no service, where select() would read "everything"
    return settings.catalog.select(wanted).services if wanted else ()


def is_current(rendered: Rendered, state: ProjectState,
               before: Mapping[str, Container]) -> bool:
    """Everything runs as rendered: the same files as at the last start, and the very
    containers that start made, all running. A person's edit set aside is never met with
    "already up to date": compose then checks the running containers against the file."""
    if any(w.aside for w in rendered.writes):
        return False
    return rendered.fingerprint == state.fingerprint and all(
        name in before and before[name].running
        and state.containers.get(name) == before[name].id
        for name in rendered.services)


def _replan_after_race(ctx: Context, engine: Engine, settings: Settings,
                       planner: PortPlanner, plan: PortPlan, race: PortRaceError,
                       last: bool) -> PortPlan:
    service = next((c.service for c in plan.choices if c.port == race.port), None)
    if service is None or last:
        raise PortConflictError(
            f"port {race.port} kept being taken while the stack started",
            hint="find what holds it (`devenv doctor`) or configure another port",
            detail=describe_running(engine, settings),
        ) from None
    planner.mark_taken(race.port)
    ctx.notify(f"{service}: {race.port} was taken after planning; moving it")
    new_plan = planner.plan([c.service for c in plan.choices])
    ctx.notify(new_plan.by_service()[service].describe())
    return new_plan


def _remembered(state: ProjectState, plan: PortPlan, rendered: Rendered,
                selection: Selection, after: Mapping[str, Container]) -> ProjectState:
    """Only what this run selected is remembered anew; what it left alone keeps its memory
    (its container still publishes the port it had)."""
    chosen = {s: m for s, m in plan.as_memory().items() if s in selection.services}
    return ProjectState(ports={**state.ports, **chosen}, fingerprint=rendered.fingerprint,
                        build=rendered.build,
                        containers={n: c.id for n, c in after.items() if c.running})


def _check_login(settings: Settings, rows: Sequence[ServiceRow]) -> None:
    """Readiness is the protocol's; once a service that checks its login answers, log in
    as its URL would: a volume created with other credentials keeps them, and the app
    could not connect."""
    from ..live.running import check_login, checks_login, login_error

    for row in rows:
        if checks_login(settings, row.service):
            result = check_login(settings, row.service, row.host, row.port)
            if result.refused:
                raise login_error(settings, row.service, result)


def _check_network(ctx: Context, engine: Engine, settings: Settings,
                   services: Sequence[str], before: Mapping[str, Container]) -> NetworkCheck:
    """Refuse a network the stack cannot (or must not) run on before anything is created;
    after `docker network prune`, remove the stopped containers that still point at the
    pruned network (compose recreates them; their data volumes stay)."""
    from .networks import attached_containers, check_network

    description = engine.network(settings.network)
    attached = (attached_containers(description, engine.containers())
                if description and description.get("Containers") else [])
    network = check_network(settings.network, settings.project, services, description,
                            attached)
    stale = [c for c in before.values() if not c.running]
    if network.missing and stale:
        ctx.notify(f"network {settings.network} is gone (docker network prune?): recreating "
                   f"{', '.join(in_catalog_order((c.service for c in stale), settings))}; "
                   "data volumes are kept")
        engine.remove_containers(stale)
    return network


def _migrating(settings: Settings, selection: Selection) -> tuple[str, ...]:
    """Selected services whose declared migration command is set."""
    return tuple(name for name in selection.services
                 if (key := settings.catalog[name].migrate_setting) and settings[key])


def _migrate_then_start(ctx: Context, engine: Engine, settings: Settings, name: str,
                        plan: PortPlan, host: str, rebuild: bool) -> None:
    """Wait for what the service needs, run its migration, then start it."""
    from ..data import seeding

    needs = settings.catalog[name].needs
    targets = [Target(n, settings.catalog[n].probe, host, plan.port(n)) for n in needs]
    wait = wait_until_ready(targets, settings.values, settings.wait_timeout,
                            check_alive=lambda: dead_services(engine, settings.project, needs))
    if not wait.ok:
        rows = [make_row(settings, t.service, host, t.port, "starting") for t in targets]
        raise _not_ready(engine, settings, wait, rows)
    seeding.migrate(engine, settings, rebuild, ctx.notify)
    engine.compose(settings.project, settings.compose_file).up([name])


def _wait(ctx: Context, engine: Engine, settings: Settings, rows: Sequence[ServiceRow],
          since: float | None = None) -> WaitResult:
    targets = probe_targets(settings, rows, proxy_port_of(rows, settings))
    services = [r.service for r in rows]
    return wait_until_ready(targets, settings.values, settings.wait_timeout,
                            check_alive=lambda: dead_services(engine, settings.project, services),
                            on_event=ctx.on_wait, since=since)


def _save_timing(settings: Settings, began: float, started: bool,
                 services: Sequence[str], wait: WaitResult) -> None:
    """Seconds from the start of `up` to each service's first answer (the dashboard's
    start-up timing); a failed save never fails `up`."""
    from ..config.state import save_timing
    from ..errors import StateError

    with contextlib.suppress(StateError):
        save_timing(settings.state_dir, settings.project, {
            "finished_at": time.time(),
            "total_seconds": round(time.monotonic() - began, 3),
            "started": started,
            "services": {name: round(wait.ready[name], 3) if name in wait.ready else None
                         for name in services},
            "failed": {name: mask(why, known_secrets(settings))
                       for name, why in {**wait.exited, **wait.timed_out}.items()},
        })


def _with_wait(rows: Sequence[ServiceRow], wait: WaitResult) -> tuple[ServiceRow, ...]:
    def state(name: str) -> str:
        if name in wait.ready:
            return "ready"
        return "exited" if name in wait.exited else "not ready"

    return tuple(replace(r, state=state(r.service), seconds_to_ready=wait.ready.get(r.service))
                 for r in rows)


def _not_ready(engine: Engine, settings: Settings, wait: WaitResult,
               rows: Sequence[ServiceRow]) -> NotReadyError:
    from ..data import seeding

    output = ContainerOutput(settings)
    containers = project_containers(engine, settings.project)
    failed = {**wait.exited, **wait.timed_out}
    parts = [format_rows(rows), ""]
    for name, why in failed.items():
        parts.append(f"--- {name}: {why}")
        c = containers.get(name)
        logs = output.last_lines(engine, c.id, LOG_TAIL).rstrip() if c else ""
        parts.append(f"last {LOG_TAIL} log lines of {name}:\n{logs}" if logs
                     else f"({name} logged nothing)")
    names = ", ".join(failed)
    seeded = next((n for n in wait.exited if settings.catalog[n].seed and n in containers),
                  None)
    seed = seeding.seed_failure(output.last_lines(engine, containers[seeded].id, LOG_TAIL),
                                settings) if seeded else None
    if seed is not None:
        message, hint = seed
    elif wait.exited:
        message = f"{names} stopped while devenv waited for it"
        hint = "read its log lines above, fix the cause, and run `devenv up` again"
    else:
        message = f"{names} did not become ready within {settings.wait_timeout:g} s"
        hint = ("read the log lines above, or raise DEVENV_WAIT_TIMEOUT; "
                "the other services keep running")
    return NotReadyError(output.mask(message), hint=hint, detail=output.mask("\n".join(parts)))


def _write_app_env(settings: Settings, rows: Sequence[ServiceRow]) -> None:
    from ..live.running import app_env

    text = ("# Generated by devenv up: URLs for apps on the host. Holds secrets (mode 0600).\n"
            + format_env(app_env(settings, rows)))
    write_atomic(settings.state_dir / "app.env", text, 0o600)


def switch_data(ctx: Context, show_secrets: bool = False) -> UpResult | None:
    """`db switch`: the running data services (and what runs with them) onto the data of
    the branch checked out, as `up` would; None when nothing of the project runs (the
    next `up` switches then)."""
    from ..data.branches import branches_on

    settings = ctx.settings()
    branches_on(settings)
    engine = ctx.engine()
    containers = project_containers(engine, settings.project)
    running = [n for n, c in containers.items() if c.running and n in settings.catalog]
    if not running:
        return None
    return up(ctx, only=running, show_secrets=show_secrets)


def restart(ctx: Context, names: Sequence[str] | None,
            show_secrets: bool = False) -> tuple[ServiceRow, ...]:
    """Restart running services and host apps (names or aliases; none means all that run)
    and wait for them."""
    began = time.monotonic()
    settings = ctx.settings()
    chosen = [settings.catalog.resolve(w) for w in names] if names else None
    host_apps = [n for n in chosen if n in settings.catalog.apps] if chosen is not None \
        else [n for n, r in apps.records(settings).items()
              if r.running and n in settings.catalog.apps]
    if chosen is not None:
        names = [n for n in chosen if n not in settings.catalog.apps]
        if not names:  # host apps only
            return apps.restart_apps(ctx, settings, *_engine(ctx, settings), host_apps,
                                     show_secrets)
    rows = _restart_services(ctx, settings, names, show_secrets, began, host_apps)
    return rows + (apps.restart_apps(ctx, settings, *_engine(ctx, settings), host_apps,
                                     show_secrets) if host_apps else ())


def _restart_services(ctx: Context, settings: Settings, names: Sequence[str] | None,
                      show_secrets: bool, began: float,
                      host_apps: Sequence[str] = ()) -> tuple[ServiceRow, ...]:
    engine, info = _engine(ctx, settings)
    with project_lock(settings.state_dir, settings.project, "restart", settings.wait_timeout,
                      on_wait=ctx.notify):
        containers = project_containers(engine, settings.project)
        check_same_directory(settings, containers.values())
        running = [n for n, c in containers.items() if c.running]
        wanted = (settings.catalog.select(names).requested if names else tuple(running))
        if not running and names is None and host_apps:
            return ()  # only host apps run: restarted by the caller
        if not running:
            only = f" --only {','.join(wanted)}" if names else ""
            raise UsageError(f"nothing of project {settings.project} is running, so nothing "
                             "was restarted", hint=f"start it with `devenv up{only}`")
        missing = [n for n in wanted if n not in running]
        if missing:
            raise UsageError(f"not running: {', '.join(missing)}",
                             hint="start it with `devenv up --only " + ",".join(missing) + "`")
        ctx.notify(f"restarting {', '.join(in_catalog_order(wanted, settings))}")
        engine.restart([containers[name] for name in wanted])
        rows = tuple(r for r in live_rows(engine, settings, show_secrets, check=False)
                     if r.service in wanted)
        wait = _wait(ctx, engine, settings, rows, since=began)
    rows = _with_wait(rows, wait)
    if not wait.ok:
        raise _not_ready(engine, settings, wait, rows)
    return rows


@dataclass(frozen=True)
class DownResult:
    services: list[str]
    #: network -> the other containers still on it, so it was kept
    kept_networks: dict[str, list[str]]


def down(ctx: Context, volumes: bool = False) -> DownResult:
    """Remove the project's containers and network (and volumes if asked)."""
    settings = ctx.settings()
    engine = ctx.engine()
    with project_lock(settings.state_dir, settings.project, "down", settings.wait_timeout,
                      on_wait=ctx.notify):
        containers = project_containers(engine, settings.project)
        check_same_directory(settings, containers.values())
        stopped = apps.stop_all(settings)  # first: they use the services
        removed = engine.remove_project(settings.project, volumes=volumes)
        if engine_forward.close(settings):
            ctx.notify("closed the ssh forward of the remote engine's ports")
        state_file = StateFile(settings.state_dir, warn=ctx.notify)
        # Ports stay remembered (sticky); what ran is forgotten.
        state_file.save(settings.project,
                        ProjectState(ports=state_file.load(settings.project).ports))
    return DownResult(in_catalog_order(containers, settings) + stopped,
                      removed.kept_networks)


def render(ctx: Context, only: Sequence[str] | None = None) -> list[WriteResult]:
    """Write compose/ for the selection without starting anything.

    Under the project lock, and for what runs plus the selection (as `up` renders): a
    render never pulls a file out from under a running container or orphans it."""
    settings = ctx.settings()
    selection = settings.catalog.select(only)
    engine: Engine | None
    try:
        engine = ctx.engine()
        info: EngineInfo | None = engine.info()
    except DockerUnavailableError as exc:
        ctx.notify(f"no engine ({exc.message}); ports are checked on this host only")
        engine, info = None, None
    with project_lock(settings.state_dir, settings.project, "render", settings.wait_timeout,
                      on_wait=ctx.notify):
        running: set[str] = set()
        if engine is not None:
            running = {name for name, c in project_containers(engine, settings.project).items()
                       if c.running and name in settings.catalog}
        services = settings.catalog.select(set(selection.services) | running).services
        kept = [name for name in services if name in running and name not in
                selection.services]
        if kept:
            ctx.notify(f"keeping {', '.join(kept)} in the file: running now "
                       "(`devenv down` first to render less)")
        state = StateFile(settings.state_dir, warn=ctx.notify).load(settings.project)
        remote = info.remote_host if info else None
        planner = PortPlanner(engine, settings, state.ports, check_host=remote is None)
        plan = planner.plan(services)
        for choice in plan.moved:
            ctx.notify(choice.describe())
        data = render_input(settings, services, plan,
                            info.supports_start_interval if info else False,
                            network_external(engine, settings) if engine else False,
                            url_host(settings, remote), ctx.notify,
                            volume_keys=compose_keys(settings, services))
        return list(write_stack(settings, data, ctx.notify).writes)


def logs(ctx: Context, names: Sequence[str] | None, follow: bool,
         tail: int | None) -> Iterator[str]:
    """Log lines of the project's services (names or aliases), secrets masked."""
    settings = ctx.settings()
    wanted = list(settings.catalog.select(names).requested) if names else []
    host_apps = [n for n in wanted if n in settings.catalog.apps]
    if host_apps:
        secrets = known_secrets(settings, ctx.notify)
        yield from apps.app_logs(settings, host_apps, follow and len(host_apps) == len(wanted),
                                 tail, secrets)
        wanted = [n for n in wanted if n not in host_apps]
        if not wanted:
            return
    engine = ctx.engine()
    containers = project_containers(engine, settings.project)
    if not containers:
        raise UsageError(f"nothing of project {settings.project} exists",
                         hint="start it with `devenv up`")
    compose_file = settings.compose_file
    compose = engine.compose(settings.project, compose_file if compose_file.is_file() else None)
    yield from ContainerOutput(settings, ctx.notify).compose_logs(compose, wanted, follow, tail)


def config(ctx: Context, show_secrets: bool = False) -> list[ConfigRow]:
    """(key, value, source) for every setting; secrets masked unless asked."""
    settings = ctx.settings()
    rows = []
    for spec in settings.specs:
        value = settings[spec.key]
        if spec.secret and value and not show_secrets:
            value = "***"
        rows.append((spec.key, value, settings.sources[spec.key]))
    return rows


def secrets_report(settings: Settings, warn: Callable[[str], None] | None = None) -> str:
    """The logins `ports --show-secrets` prints under the table: every service that
    declares one, in catalog order."""
    from ..config.state import setting_or_secret

    return "\n".join(f"{spec.name} login: {settings[spec.login[0]]} / "
                     f"{setting_or_secret(settings, spec.login[1], warn)}"
                     for spec in settings.catalog.values() if spec.login)


def port_table(ctx: Context) -> list[PlanRow]:
    """The spec's allocation per service and host app, with this machine's dev plan."""
    from ..report import PLAN_SCHEMA

    settings = ctx.settings()
    try:
        engine: Engine | None = ctx.engine()
        remote = engine.info().remote_host if engine else None
    except DockerUnavailableError:
        engine, remote = None, None
    memory = StateFile(settings.state_dir).load(settings.project).ports
    plan = PortPlanner(engine, settings, memory, check_host=remote is None,
                       apps_running=apps.running_ports(settings, apps.records(settings))).plan(
        (*settings.catalog, *settings.catalog.apps))
    rows: list[PlanRow] = []
    for name, spec in settings.catalog.items():
        choice = plan.by_service()[name]
        note = choice.describe().split(": ", 1)[1] if choice.moved else choice.rule
        rows.append({"schema": PLAN_SCHEMA, "service": name, "title": spec.title,
                     "dev": spec.dev_port, "staging": spec.staging_port, "prod": spec.prod_port,
                     "here": choice.port, "note": note, "kind": "container"})
    reserved = set(settings.reserved_ports)
    for app in settings.catalog.host_apps:
        if app.managed:
            choice = plan.by_service()[app.name]
            note = choice.describe().split(": ", 1)[1] if choice.moved else choice.rule
            rows.append({"schema": PLAN_SCHEMA, "service": app.name, "title": app.title,
                         "dev": app.port, "staging": None, "prod": None, "here": choice.port,
                         "note": f"host app devenv runs: {note}", "kind": "host app"})
            continue
        rows.append({"schema": PLAN_SCHEMA, "service": app.name, "title": app.title,
                     "dev": app.port, "staging": None, "prod": None,
                     "here": app.port if app.port in reserved else None,
                     "note": "host app: reserved, never given to a container"
                     if app.port in reserved else "host app: not reserved",
                     "kind": "host app"})
    return rows
