"""A fake engine and a fake Compose at devenv's one seam to Docker (Context.engine_factory),
so that unit tests drive the use cases (up, the port race, "already up to date", down,
doctor) without a daemon. The fake's containers publish real listeners on the host that
answer every probe devenv speaks, so the wait is the real one.

Its own module, not conftest.py: tests/e2e/conftest.py is the `conftest` a test module can
import in a whole-suite run, so unit tests import these names from here."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.context import Context
from devenv.engine import Container, EngineInfo, PortRaceError, Published, Removed
from devenv.engine.dockercontext import EngineTarget

_ids = itertools.count(1)


class Listener:
    """A TCP server on 127.0.0.1:port that answers HTTP (200), Redis (+PONG) and PostgreSQL
    (an authentication request), whichever the client speaks first."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    data = conn.recv(4096)
                    if data.startswith(b"GET"):
                        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nok")
                    elif data.startswith(b"PING"):
                        conn.sendall(b"+PONG\r\n")
                    else:
                        conn.sendall(b"R\0\0\0\x08\0\0\0\x03")  # cleartext password, please
                except OSError:
                    pass

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes the serving thread's accept()
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass
class FakeEngine:
    """What devenv uses of Engine, over an in-memory list of containers."""

    containers_: list[Container] = field(default_factory=list)
    images: set[str] = field(default_factory=set)
    remote_host: str | None = None
    #: reached over the local socket (devenv's own watch sync needs it)
    local: bool = True
    docker_host: str = "unix:///fake.sock"
    target: EngineTarget = field(default_factory=lambda: EngineTarget(
        "unix:///fake.sock", "default", "default"))
    #: ports Compose finds taken at the next `up` that publishes them (a race)
    race_ports: set[int] = field(default_factory=set)
    #: every `up` finds its first port taken (a port that keeps being taken)
    always_race: bool = False
    calls: list[tuple[str, Any]] = field(default_factory=list)
    #: container id -> Docker's StartedAt
    started: dict[str, str] = field(default_factory=dict)
    listeners: dict[str, Listener] = field(default_factory=dict)

    # reads
    def info(self) -> EngineInfo:
        return EngineInfo("20.10.24", "1.41", self.remote_host)

    def system_info(self) -> dict[str, Any]:
        return {}

    def containers(self, project: str | None = None, all: bool = True) -> list[Container]:
        return [c for c in self.containers_ if project is None or c.project == project]

    def inspect(self, container_id: str) -> dict[str, Any]:
        return {"State": {"StartedAt": self.started.get(container_id, "")}, "RestartCount": 0}

    def port_bindings(self, container: Container) -> list[int]:
        return [p.host_port for p in container.ports]

    def network(self, name: str) -> dict[str, Any] | None:
        return None

    def image_present(self, reference: str) -> bool:
        return reference in self.images

    def image_id(self, reference: str) -> str | None:
        return f"sha256:{reference}" if reference in self.images else None

    def volumes(self, project: str) -> list[str]:
        return []

    def volume_exists(self, name: str) -> bool:
        return False

    def logs(self, container_id: str, tail: int = 20) -> str:
        return ""

    # writes
    def signal(self, container_id: str, signal: str) -> None:
        self.calls.append(("signal", (container_id, signal)))

    def remove_project(self, project: str, volumes: bool = False,
                       stop_timeout: int = 10) -> Removed:
        gone = self.containers(project)
        self.containers_ = [c for c in self.containers_ if c.project != project]
        for c in gone:
            self._stop_listener(c.name)
        self.calls.append(("down", (project, volumes)))
        return Removed(gone, {})

    def restart(self, containers: Sequence[Container], stop_timeout: int = 10) -> None:
        self.calls.append(("restart", tuple(c.service for c in containers)))

    def stop(self, container_id: str, timeout: int = 30) -> None:
        self.calls.append(("stop", container_id))
        for i, c in enumerate(self.containers_):
            if c.id == container_id:
                self.containers_[i] = replace(c, state="exited")
                self._stop_listener(c.name)

    def remove_containers(self, containers: Sequence[Container]) -> None:
        gone = {c.id for c in containers}
        running = [c.service for c in self.containers_ if c.id in gone and c.running]
        assert not running, f"the engine refuses to remove running containers: {running}"
        self.containers_ = [c for c in self.containers_ if c.id not in gone]

    def compose(self, project: str, compose_file: Path | None = None) -> FakeCompose:
        return FakeCompose(self, project, compose_file)

    # the fake's own helpers
    def _stop_listener(self, name: str) -> None:
        listener = self.listeners.pop(name, None)
        if listener is not None:
            listener.close()

    def close(self) -> None:
        for name in list(self.listeners):
            self._stop_listener(name)


@dataclass
class FakeCompose:
    engine: FakeEngine
    project: str
    compose_file: Path | None

    def up(self, services: Sequence[str], build: bool = False) -> None:
        """What `docker compose up -d SERVICES` does with the rendered file: (re)create a
        container when its definition changed, publish its port, or fail on a taken one."""
        assert self.compose_file is not None
        doc = yaml.safe_load(self.compose_file.read_text())
        self.engine.calls.append(("up", (tuple(services), build)))
        for name in services:
            spec = doc["services"][name]
            published = tuple(Published(str(p["host_ip"]), int(p["published"]),
                                        int(p["target"])) for p in spec.get("ports", []))
            for p in published:
                if self.engine.always_race:
                    self.engine.race_ports.add(p.host_port)
                if p.host_port in self.engine.race_ports:
                    self.engine.race_ports.discard(p.host_port)
                    raise PortRaceError(p.host_port, f"Bind for 127.0.0.1:{p.host_port} "
                                        "failed: port is already allocated")
            config = yaml.safe_dump(spec, sort_keys=True)
            old = next((c for c in self.engine.containers(self.project)
                        if c.service == name), None)
            if old is not None and old.labels.get("config") == config and old.running:
                continue
            if old is not None:
                self.engine.containers_.remove(old)
                self.engine._stop_listener(old.name)
            c = Container(id=f"c{next(_ids)}", name=f"{self.project}-{name}-1",
                          project=self.project, service=name, state="running", health="",
                          status="Up 1 second", ports=published,
                          working_dir=str(self.compose_file.parent),
                          labels={"config": config})
            self.engine.containers_.append(c)
            for p in published:
                self.engine.listeners[c.name] = Listener(p.host_port)

    def restart(self, services: Sequence[str]) -> None:
        self.engine.calls.append(("restart", tuple(services)))

    def exec(self, service: str, argv: Sequence[str], **options: Any) -> Any:
        """`docker compose exec`: only into a running container of the service."""
        from devenv.engine.compose import ExecResult, ServiceNotRunningError

        if not any(c.service == service and c.running
                   for c in self.engine.containers(self.project)):
            raise ServiceNotRunningError(f"{service} is not running in project "
                                         f"{self.project}", service=service)
        self.engine.calls.append(("exec", (service, tuple(argv))))
        return ExecResult(0)

    def run(self, service: str, argv: Sequence[str], **options: Any) -> Any:
        """`docker compose run --rm`: a one-off of a service the rendered file defines."""
        from devenv.engine.compose import ExecResult

        assert self.compose_file is not None
        assert service in yaml.safe_load(self.compose_file.read_text())["services"]
        self.engine.calls.append(("run", (service, tuple(argv))))
        return ExecResult(0)

    def logs(self, services: Sequence[str], follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        return iter(())

    def version(self) -> str:
        return "Docker Compose version v2.26.1"


def free_block(size: int = 12) -> int:
    """The first of `size` consecutive ports free on this host, below the kernel's ephemeral
    range (32768+), where outgoing connections of other programs would take them."""
    import random

    for _ in range(500):
        start = random.randrange(20000, 32700 - size)
        try:
            for port in range(start, start + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    engine = FakeEngine(images={"redis:7", "postgres:16", "adminer:4", "prom/prometheus:v2.53.0"})
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def fake_context(tmp_path: Path, fake_engine: FakeEngine) -> Iterator[Any]:
    """make(**settings) -> a Context over the fake engine, in a project of its own with its
    own block of free ports; notes holds what it told the user."""
    base = free_block()
    ports = {f"DEVENV_{name}_PORT": str(base + 2 * i) for i, name in enumerate(
        ("API", "POSTGRES", "REDIS", "ADMINER", "PROMETHEUS", "GRAFANA"))}
    notes: list[str] = []

    def make(**environ: str) -> Context:
        return Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "unit", **ports,
                                                      "DEVENV_WAIT_TIMEOUT": "5", **environ},
                       notify=notes.append, engine_factory=lambda env: fake_engine)

    make.notes = notes  # type: ignore[attr-defined]
    make.ports = {k: int(v) for k, v in ports.items()}  # type: ignore[attr-defined]
    yield make


def running(engine: FakeEngine) -> Mapping[str, Container]:
    return {c.service: c for c in engine.containers_ if c.running}


def stop(engine: FakeEngine, service: str) -> None:
    c = next(c for c in engine.containers_ if c.service == service)
    engine.containers_[engine.containers_.index(c)] = replace(c, state="exited")
    engine._stop_listener(c.name)
