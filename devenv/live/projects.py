"""`devenv ls`: every devenv project on this engine, from any directory (as `docker compose
ls`): its directory, its services and what each publishes, when it started, its tunnels.

The engine says which Compose projects exist and where each was started (Compose's
`project` and `project.working_dir` labels); the directory says whether devenv made it:
devenv's render manifest in `compose/`, or the project's entry in `.devenv/state.json`.
Both are read like input (a regular file, bounded, parsed, checked) and never changed or
set aside: a file that is not what devenv writes only means "not a devenv project".
Compose projects of other tools are left out. Nothing here changes anything.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config.settings import COMPOSE_FILE
from ..config.state import StateFile
from ..context import Context
from ..engine import ONEOFF_LABEL, Container, Engine
from ..render.templates import MANIFEST, MANIFEST_SCHEMA, quote
from ..report import duration, table
from .running import docker_time

LS_SCHEMA = "devenv.ls/1"
#: devenv's own files are small; anything larger is not one of them
_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class ListedPort:
    host: str
    port: int
    container_port: int


@dataclass(frozen=True)
class ListedService:
    service: str
    state: str  # Docker's: running, exited, restarting, paused, created, dead
    ports: tuple[ListedPort, ...]

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class ListedTunnel:
    name: str
    port: int | None
    state: str  # connecting | up | reconnecting | failed | dead
    production: bool


@dataclass(frozen=True)
class ListedProject:
    """One devenv project on the engine (devenv.ls/1)."""

    project: str
    directory: str
    services: tuple[ListedService, ...]
    #: the earliest start of its running containers (UTC, ISO 8601); None when none runs
    started_at: str | None
    uptime_seconds: float | None
    tunnels: tuple[ListedTunnel, ...]

    @property
    def running(self) -> tuple[str, ...]:
        return tuple(s.service for s in self.services if s.running)


def list_projects(ctx: Context) -> list[ListedProject]:
    """The `ls` use case: the devenv projects that have containers on this engine, by name.

    Needs no project directory and reads no settings: a broken `.env` where it runs does
    not hide the projects elsewhere."""
    return projects_on(ctx.engine(), time.time())


def projects_on(engine: Engine, now: float) -> list[ListedProject]:
    groups: dict[str, list[Container]] = {}
    for c in engine.containers():
        # a `devenv run` one-off belongs to its project but is no service of it
        if c.project and c.service and c.labels.get(ONEOFF_LABEL, "False") != "True":
            groups.setdefault(c.project, []).append(c)
    found = []
    for project in sorted(groups):
        containers = groups[project]
        directory = project_directory(project, containers)
        if directory is None:
            continue
        started = _started(engine, [c for c in containers if c.running])
        found.append(ListedProject(
            project=project, directory=str(directory),
            services=tuple(_service(c) for c in sorted(containers, key=lambda c: c.service)),
            started_at=None if started is None else datetime.fromtimestamp(
                started, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            uptime_seconds=None if started is None else round(max(0.0, now - started), 1),
            tunnels=_tunnels(directory, project)))
    return found


# --- is it devenv's? ---------------------------------------------------------------------
def project_directory(project: str, containers: Sequence[Container]) -> Path | None:
    """The project directory of a Compose project devenv started, else None.

    devenv runs Compose in `<project dir>/compose`. The project is devenv's when the project
    dir's `.devenv/state.json` has an entry for it (every `up` that started something wrote
    one), or when `compose/` holds devenv's render manifest and the compose file there names
    this project (an `up` whose seed failed before the state was saved)."""
    dirs = Counter(c.working_dir for c in containers if c.working_dir)
    if not dirs:
        return None
    compose_dir = Path(dirs.most_common(1)[0][0])
    if not compose_dir.is_absolute() or compose_dir.name != "compose":
        return None
    if _in_state(compose_dir.parent, project) or _rendered_for(compose_dir, project):
        return compose_dir.parent
    return None


def _in_state(project_dir: Path, project: str) -> bool:
    data = read_json(StateFile(project_dir / ".devenv").path)
    projects = data.get("projects") if isinstance(data, dict) else None
    return isinstance(projects, dict) and isinstance(projects.get(project), dict)


def _rendered_for(compose_dir: Path, project: str) -> bool:
    data = read_json(compose_dir / MANIFEST)
    if isinstance(data, list):  # the manifest before digests: a list of paths
        ours = COMPOSE_FILE in data
    else:
        files = data.get("files") if isinstance(data, dict) else None
        ours = (isinstance(data, dict) and data.get("schema") == MANIFEST_SCHEMA
                and isinstance(files, dict) and COMPOSE_FILE in files)
    text = read_small(compose_dir / COMPOSE_FILE) if ours else None
    return text is not None and f"name: {quote(project)}".encode() in text.splitlines()


def read_small(path: Path) -> bytes | None:
    """A regular file's bytes, or None: no link followed, no FIFO or device opened (a
    label can name any directory), nothing larger than devenv's own files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_BYTES:
                return None
            raw = handle.read(_MAX_BYTES + 1)
    except OSError:
        return None
    return raw if len(raw) <= _MAX_BYTES else None


def read_json(path: Path) -> Any:
    """read_small's JSON, or None when it is none."""
    raw = read_small(path)
    try:
        return json.loads(raw.decode("utf-8")) if raw is not None else None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


# --- what runs ---------------------------------------------------------------------------
def _service(c: Container) -> ListedService:
    seen: dict[tuple[str, int, int], None] = {}
    for p in c.ports:
        seen.setdefault((p.host_ip, p.host_port, p.container_port))
    return ListedService(c.service, c.state, tuple(
        ListedPort(host, port, inner) for host, port, inner in sorted(seen)) if c.running
        else ())


def _started(engine: Engine, running: Sequence[Container]) -> float | None:
    """When the first of the running containers started (Docker's StartedAt)."""
    times = []
    for c in running:
        text = (engine.inspect(c.id).get("State") or {}).get("StartedAt")
        try:
            started = docker_time(str(text)) if text else 0.0
        except ValueError:
            continue
        if started > 0:  # "0001-01-01T00:00:00Z": never started
            times.append(started)
    return min(times, default=None)


def _tunnels(directory: Path, project: str) -> tuple[ListedTunnel, ...]:
    """The project's tunnel records (the named tunnels, not a remote engine's forward)."""
    from ..tunnels.usecases import read_records

    out = []
    for name, record in sorted(read_records(directory / ".devenv", project).items()):
        out.append(ListedTunnel(name=name, port=record.port if 0 < record.port < 65536
                                else None, state=record.state,
                                production=record.meta.get("production") is True))
    return tuple(out)


# --- reports -----------------------------------------------------------------------------
def _printable(text: str) -> str:
    """A label or file name on a terminal: control characters (an escape sequence in a
    crafted label) are shown as '?'."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _services_text(project: ListedProject) -> str:
    words = []
    for s in project.services:
        if not s.running:
            words.append(f"{s.service} ({s.state})")
            continue
        ports = sorted({p.port for p in s.ports})
        words.append(s.service + (":" + "/".join(map(str, ports)) if ports else ""))
    return ", ".join(words) or "-"


def _tunnels_text(project: ListedProject) -> str:
    return ", ".join(
        f"{t.name}{':' + str(t.port) if t.port else ''}{' PROD' if t.production else ''} "
        f"{t.state}" for t in project.tunnels) or "-"


def format_projects(projects: Sequence[ListedProject]) -> str:
    """PROJECT / DIRECTORY / SERVICES (name:host port, or name (state)) / STARTED (how long
    ago; `--json` has the time) / TUNNELS (name:port, PROD, state)."""
    return table(("PROJECT", "DIRECTORY", "SERVICES", "STARTED", "TUNNELS"), [
        tuple(_printable(cell) for cell in (
            p.project, p.directory, _services_text(p),
            f"{duration(p.uptime_seconds)} ago" if p.uptime_seconds is not None else "-",
            _tunnels_text(p)))
        for p in projects])


def format_projects_json(projects: Sequence[ListedProject]) -> str:
    return json.dumps([{"schema": LS_SCHEMA, **asdict(p), "running": list(p.running),
                        "tunnels": [{**asdict(t), "tags": ["PROD"] if t.production else []}
                                    for t in p.tunnels]}
                       for p in projects], indent=2)
