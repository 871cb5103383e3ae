"""From a selection to running containers: plan ports, render, start, and survive the race.

A port can be taken between planning and `compose up`. Compose then fails with "port is
already allocated" or "address already in use"; only that service moves, the files are
rendered again and the start is retried, a few times.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import HOST_APPS, SERVICES
from .engine import Container, Engine, PortRaceError
from .errors import DevenvError, ImageMissingError, PortConflictError, UsageError
from .hostports import ContainerPort, HostPorts, describe_process
from .live import describe_running
from .ports import Holder, Memory, PortPlan, PortRequest, plan_ports
from .render import (
    COMPOSE_FILE,
    RenderInput,
    WriteResult,
    fingerprint,
    render_stack,
    template_origin,
    write_outputs,
)
from .report import mask
from .settings import Settings
from .state import ProjectState, grafana_password, known_secrets

RACE_RETRIES = 3
REFERENCE_API_FILES = SERVICES["api"].files


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

    def plan(self, services: Sequence[str]) -> PortPlan:
        containers = self.engine.containers() if self.engine is not None else []
        ports = _container_ports(self.engine, containers) if self.engine is not None else {}
        host = HostPorts(ports, self.settings.project, check_host=self.check_host,
                         check_loopback=self.check_loopback, forwarded=self.forwarded)
        for port, holder in self.marks.items():
            host.mark(port, holder)
        requests = [PortRequest(name, self.settings.port(name), self.memory.get(name))
                    for name in services]
        own = host.own_ports() if self.keep_running else {}
        return plan_ports(requests, host, reserved_ports(self.settings), own=own,
                          strict=self.strict)


def api_build(settings: Settings) -> dict[str, Any] | None:
    """The API's build section, from the three ways to get one:
    DEVENV_API_BUILD (the team's source) > DEVENV_API_IMAGE (None: no build) > the bundled
    reference API, built from compose/api with the base image as a build argument."""
    build_dir = settings["DEVENV_API_BUILD"]
    if build_dir:
        path = Path(build_dir).expanduser()
        if not path.is_absolute():
            path = (settings.project_dir / path).resolve()
        if not (path / "Dockerfile").is_file():
            raise UsageError(f"DEVENV_API_BUILD={build_dir}: no Dockerfile in {path}",
                             hint="point it at the directory that holds your backend's "
                             "Dockerfile")
        return {"context": str(path), "args": {}}
    if settings.image("api"):
        return None
    base = settings["DEVENV_API_BASE_IMAGE"]
    # Tagged by content and shared by every project: a new project reuses the image, and
    # a changed template or base image gets a new tag, so Compose builds it then only.
    digest = hashlib.sha256(base.encode())
    for name in REFERENCE_API_FILES:
        digest.update(template_origin(name, settings.project_dir / "templates").read_bytes())
    return {"context": "./api", "args": {"BASE_IMAGE": base},
            "image": f"devenv-reference-api:{digest.hexdigest()[:12]}"}


def context_hash(path: Path) -> str:
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


def render_input(settings: Settings, services: Sequence[str], plan: PortPlan,
                 start_interval: bool, network_external: bool, url_host: str,
                 warn: Callable[[str], None] | None = None,
                 lan: LanPublish | None = None) -> RenderInput:
    from .watch import watch_rules

    build = api_build(settings) if "api" in services else None
    return RenderInput(
        project=settings.project,
        network=settings.network,
        network_external=network_external,
        bind=settings.bind,
        url_host=url_host,
        services=tuple(services),
        ports={name: plan.port(name) for name in services},
        values=settings.values,
        secrets=({"grafana_admin_password": grafana_password(settings, warn)}
                 if "grafana" in services else {}),
        start_interval=start_interval,
        api_build=build,
        api_watch=watch_rules(settings, build, settings.compose_dir),
        lan_address=lan.address if lan else "",
        lan_services=tuple(s for s in lan.services if s in services) if lan else (),
        seed_dir=str(settings.seed_dir.resolve())
        if "postgres" in services and settings.seed_dir.is_dir() else "",
    )


@dataclass(frozen=True)
class LanPublish:
    """`devenv up --lan`: these services are published on this address as well."""

    address: str
    services: tuple[str, ...]


def network_external(engine: Engine, settings: Settings) -> bool:
    """A network of that name made outside this project must be joined as external."""
    network = engine.network(settings.network)
    if network is None:
        return False
    labels = network.get("Labels") or {}
    return labels.get("com.docker.compose.project") != settings.project


@dataclass(frozen=True)
class Launched:
    plan: PortPlan
    writes: tuple[WriteResult, ...]
    started: bool  # False: everything already ran as rendered, nothing was touched
    state: ProjectState  # what to remember
    rebuild_api: bool = False  # the API's build context changed: build before starting it


@dataclass
class Launch:
    engine: Engine
    settings: Settings
    services: tuple[str, ...]  # what the file holds: selected + already running
    url_host: str
    start_interval: bool
    network_external: bool
    notify: Callable[[str], None]
    environ: Mapping[str, str]
    lan: LanPublish | None = None

    def run(self, start: Sequence[str], plan: PortPlan, planner: PortPlanner,
            state: ProjectState, before: Mapping[str, Container]) -> Launched:
        settings = self.settings
        compose = self.engine.compose(settings.project, settings.compose_dir / COMPOSE_FILE)
        for attempt in range(RACE_RETRIES + 1):
            data = render_input(settings, self.services, plan, self.start_interval,
                                self.network_external, self.url_host, self.notify,
                                self.lan)
            files = render_stack(data, settings.project_dir / "templates",
                                 settings.template_cache)
            writes = tuple(write_outputs(settings.compose_dir, files, self.notify))
            build = _build_hash(settings, data)
            # Only what this run starts is remembered anew; what it leaves alone keeps its
            # memory (its container still publishes the port it had).
            started = {s: m for s, m in plan.as_memory().items() if s in start}
            remembered = ProjectState(ports={**state.ports, **started},
                                      fingerprint=fingerprint(files, extra=build), build=build)
            # A person's edit set aside is never met with "already up to date": compose
            # then checks the running containers against the file.
            set_aside = any(w.aside for w in writes)
            if remembered.fingerprint == state.fingerprint and not set_aside and all(
                    name in before and before[name].running
                    and state.containers.get(name) == before[name].id
                    for name in self.services):
                return Launched(plan, writes, False, remembered)
            if attempt == 0:
                missing = self._missing_images()
                for name, image in missing:
                    self.notify(f"{name}: image {image} is not on this engine; "
                                "docker compose will try to pull it from its registry")
                _wait_for_test_seam(self.environ, plan)
            rebuild = bool(build) and (build != state.build or "api" not in before)
            self.notify(f"starting {', '.join(start)}" + (" (building the API)" if rebuild
                                                            else ""))
            try:
                for wave in _waves(start, before):
                    compose.up(wave, build=rebuild and "api" in wave)
            except PortRaceError as race:
                plan = self._move_after_race(race, plan, planner, attempt)
                continue
            except DevenvError as exc:
                if isinstance(exc, ImageMissingError) and not exc.image and missing:
                    images = ", ".join(image for _name, image in missing)
                    are = "images {} are" if len(missing) > 1 else "image {} is"
                    exc.message = (f"{are.format(images)} not on this engine and could not "
                                   "be pulled")
                secrets = known_secrets(settings, self.notify)
                exc.message = mask(exc.message, secrets)
                exc.detail = mask(exc.detail, secrets) if exc.detail else exc.detail
                raise
            if any(w.path.startswith("prometheus/") and w.status == "updated" for w in writes) \
                    and "prometheus" in before and before["prometheus"].running:
                # Prometheus rereads its configuration on SIGHUP and keeps running.
                self.engine.signal(before["prometheus"].id, "SIGHUP")
            return Launched(plan, writes, True, remembered, rebuild)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _move_after_race(self, race: PortRaceError, plan: PortPlan, planner: PortPlanner,
                         attempt: int) -> PortPlan:
        service = next((c.service for c in plan.choices if c.port == race.port), None)
        if service is None or attempt == RACE_RETRIES:
            raise PortConflictError(
                f"port {race.port} kept being taken while the stack started",
                hint="find what holds it (`devenv doctor`) or configure another port",
                detail=describe_running(self.engine, self.settings.project),
            ) from None
        port = race.port
        planner.marks[port] = Holder("process", (lambda: describe_process(port))
                                     if planner.check_host else "a process on the engine's host")
        self.notify(f"{service}: {race.port} was taken after planning; moving it")
        new_plan = planner.plan(self.services)
        self.notify(new_plan.by_service()[service].describe())
        return new_plan

    def _missing_images(self) -> list[tuple[str, str]]:
        """(service, image) for every image Compose will have to pull."""
        missing = []
        for name in self.services:
            image = self.settings.image(name)
            if name == "api" and api_build(self.settings) is not None:
                continue
            if image and not self.engine.image_present(image):
                missing.append((name, image))
        return missing


def _waves(start: Sequence[str], before: Mapping[str, Container]) -> list[list[str]]:
    """The services to start, in waves: on a cold start the slow initialisers first, so
    their initialisation overlaps the start of the rest; else all in one compose call."""
    first = [s for s in start if SERVICES[s].start_first and s not in before]
    rest = [s for s in start if s not in first]
    return [wave for wave in (first, rest) if wave]


def _build_hash(settings: Settings, data: RenderInput) -> str:
    """Change detector of the team's build context (the reference API's tag is its own)."""
    if data.api_build is None or "image" in data.api_build:
        return ""
    context = Path(str(data.api_build["context"]))
    return context_hash(context if context.is_absolute() else settings.compose_dir / context)


def _wait_for_test_seam(environ: Mapping[str, str], plan: PortPlan) -> None:
    """Tests of the race: publish the plan to DEVENV_TEST_AFTER_PLAN.plan, then wait (up to
    30 s) for DEVENV_TEST_AFTER_PLAN.go while the test takes one of the planned ports."""
    seam = environ.get("DEVENV_TEST_AFTER_PLAN")
    if not seam:
        return
    Path(seam + ".plan").write_text(json.dumps({c.service: c.port for c in plan.choices}))
    deadline = time.monotonic() + 30
    while not Path(seam + ".go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)

