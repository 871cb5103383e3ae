#!/usr/bin/env python3
"""devenv's speed targets, measured against plain Docker Compose on this machine.

Standard library only (Python 3.11+). Every measurement gets its own throw-away project
directory, a unique project name (bench-<hex>) and its own block of free host ports, and is
removed afterwards (`devenv down --volumes --yes`, `docker compose -p NAME down -v`, and the
project's own built API image). Other projects' containers are never touched.

    python3 bench/bench.py                 # every figure, median of 5 alternating runs
    python3 bench/bench.py --runs 9 --json
    python3 bench/bench.py --quick         # smoke test: figures 3, 4, 5, one run, db+cache

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "devenv.bench/1"

#: the offline test images as settings (testbed/test-images.env, shared with the tests)
TEST_IMAGES = dict(
    line.split("=", 1)
    for line in (Path(__file__).resolve().parent.parent / "testbed" / "test-images.env")
    .read_text().splitlines()
    if line.strip() and not line.startswith("#")
)

#: catalog order; configured host port = block start + 2 * index
SERVICES = ("api", "postgres", "redis", "adminer", "prometheus", "grafana")
ALIASES = {"backend": "api", "db": "postgres", "cache": "redis", "admin": "adminer",
           "metrics": "prometheus", "dashboards": "grafana"}
NEEDS = {"api": ("postgres", "redis"), "adminer": ("postgres",), "grafana": ("prometheus",)}
CONTAINER_PORTS = {"api": 7777, "postgres": 5432, "redis": 6379, "adminer": 8080,
                   "prometheus": 9090, "grafana": 3000}
#: figure 2: the services timed alone, with the readiness each must show from the host
SINGLE_SERVICES = ("postgres", "redis", "adminer", "prometheus", "grafana")
HTTP_PATHS = {"adminer": "/", "prometheus": "/-/healthy", "grafana": "/api/health"}

PORT_BLOCK = 12
WAIT_TIMEOUT = 120.0  # seconds: DEVENV_WAIT_TIMEOUT, and the host polling deadline
COMMAND_TIMEOUT = 300.0
POLL = 0.1

# The figures, in report order: (id, key, title, unit, target kind, limit)
FIGURES = {
    "1": ("cold_up", "cold `devenv up` vs `compose up -d --wait`", "s", "ratio", 0.6),
    "1w": ("warm_up", "warm `devenv up` vs `compose up -d --wait` (info)", "s", None, None),
    "2": ("cold_up_vs_slowest", "cold `devenv up` vs slowest single service", "s", "ratio",
          1.2),
    "2f": ("first_cold_up_vs_slowest", "first-ever cold `devenv up` (no prepared cluster "
           "yet: initdb) vs slowest single service (info)", "s", None, None),
    "3": ("noop_up", "`devenv up` on a running, up-to-date stack", "s", "absolute", 0.5),
    "4": ("ports", "`devenv ports` vs `compose ps --format json`", "s", "ratio", 1.0),
    "5": ("help", "`devenv --help` vs `python -c 'import click'`", "s", "ratio", 1.7),
    "6": ("down", "`devenv down` vs `compose down`", "s", "ratio", 1.0),
    "7": ("peak_rss", "peak RSS of a cold `devenv up`", "MB", "absolute", 100.0),
}
ALL_FIGURES = ("5", "3", "4", "1", "2", "6", "7", "1w")  # measurement order
QUICK_FIGURES = ("5", "3", "4")


class BenchError(Exception):
    """A command the benchmark needs failed; the figure cannot be measured."""


# --- running commands -------------------------------------------------------------------
@dataclass
class Ran:
    argv: list[str]
    returncode: int
    seconds: float
    max_rss_kb: int
    stdout: str
    stderr: str

    def check(self) -> Ran:
        if self.returncode != 0:
            raise BenchError(f"`{' '.join(self.argv)}` exited {self.returncode}\n"
                             f"stdout (tail):\n{_tail(self.stdout)}\n"
                             f"stderr (tail):\n{_tail(self.stderr)}")
        return self


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def run(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT) -> Ran:
    """Run a command to completion with its output captured, timed with perf_counter.

    This is subprocess.run(capture_output=True) spelled out: Popen, then os.wait4 (which
    also gives the rusage of the process, and so its peak RSS including the children it
    waited for). Output goes to temporary files, so no pipe can fill up and stall it.
    """
    argv = [str(a) for a in argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        killer = threading.Timer(timeout, _kill_group, (proc.pid,))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: the child has its own session, so stop it here
            _kill_group(proc.pid)
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if seconds >= timeout:
        stderr += f"\n(bench: killed after {timeout:g} s)"
    return Ran(argv, proc.returncode, seconds, usage.ru_maxrss, stdout, stderr)


# --- host readiness probes (figure 2) --------------------------------------------------------
def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def probe_postgres(port: int, user: str, database: str) -> bool:
    """A StartupMessage answered by an 'R' (authentication request): accepting connections."""
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", user), ("database", database))) + b"\0"
    message = struct.pack("!ii", 8 + len(params), 196608) + params
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(message)
            return _recv_exact(sock, 1) == b"R"
    except (OSError, EOFError):
        return False


def probe_redis(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            data = b""
            while not data.endswith(b"\r\n") and len(data) < 512:
                chunk = sock.recv(512)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"+PONG")
    except OSError:
        return False


def probe_http(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def service_probe(service: str, port: int, values: dict[str, str]) -> Callable[[], bool]:
    if service == "postgres":
        user = values.get("DEVENV_POSTGRES_USER", "postgres")
        database = values.get("DEVENV_POSTGRES_DB", "cirkelline_agents")
        return lambda: probe_postgres(port, user, database)
    if service == "redis":
        return lambda: probe_redis(port)
    return lambda: probe_http(port, HTTP_PATHS[service])


# --- ports ---------------------------------------------------------------------------------
def _bind_ok(family: int, host: str, port: int) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
        return True
    except OSError as exc:
        # no IPv6 on this host: that family cannot collide
        return family == socket.AF_INET6 and exc.errno in (97, 99)


def port_is_free(port: int) -> bool:
    return all(_bind_ok(f, h, port) for f, h in ((socket.AF_INET, "127.0.0.1"),
                                                 (socket.AF_INET, "0.0.0.0"),
                                                 (socket.AF_INET6, "::1"),
                                                 (socket.AF_INET6, "::")))


def published_by_containers() -> set[int]:
    """Host ports any container on the engine publishes or will publish when started."""
    ids = run(["docker", "ps", "-aq", "--no-trunc"], timeout=60).stdout.split()
    if not ids:
        return set()
    ran = run(["docker", "inspect", "--format", "{{json .HostConfig.PortBindings}}", *ids],
              timeout=60)
    ports: set[int] = set()
    for line in ran.stdout.splitlines():
        try:
            bindings = json.loads(line) or {}
        except ValueError:
            continue
        for entries in bindings.values():
            for entry in entries or []:
                if str(entry.get("HostPort", "")).isdigit():
                    ports.add(int(entry["HostPort"]))
    return ports


class PortBlocks:
    """Blocks of consecutive free high ports, outside the kernel's ephemeral range, never
    handed out twice in one benchmark run."""

    def __init__(self) -> None:
        self.given: set[int] = set()
        lo, hi = 32768, 60999
        with contextlib.suppress(OSError, ValueError):
            lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        self.ranges = [(a, b) for a, b in ((20000, lo - 1), (hi + 1, 65000)) if b - a > 500]
        if not self.ranges:
            self.ranges = [(20000, 65000)]

    def take(self, size: int = PORT_BLOCK) -> int:
        busy = published_by_containers() | self.given
        for _ in range(500):
            a, b = random.choice(self.ranges)
            start = random.randrange(a, b - size)
            block = range(start, start + size)
            if any(p in busy for p in block):
                continue
            if all(port_is_free(p) for p in block):
                self.given.update(block)
                return start
        raise BenchError("no block of free host ports found")


# --- projects --------------------------------------------------------------------------------
#: set by main(): a bench-owned bytecode cache, when the environment forbids writing one
PYCACHE_PREFIX: str | None = None


def clean_environ() -> dict[str, str]:
    """The inherited environment without DEVENV_* / COMPOSE_* settings that would change what
    is measured (DOCKER_HOST and the rest are kept).

    With PYTHONDONTWRITEBYTECODE set and an editable install, every devenv command would
    compile devenv's modules from source (an installed wheel ships its .pyc files); unless
    --pycache inherit is given, Python then caches bytecode under the bench's own temp dir
    instead (PYTHONPYCACHEPREFIX), so nothing is written next to the sources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVENV_", "COMPOSE_"))}
    if PYCACHE_PREFIX:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYCACHE_PREFIX
    return env


@dataclass
class Bench:
    devenv: str
    interpreter: str
    root: Path
    only: tuple[str, ...]
    blocks: PortBlocks = field(default_factory=PortBlocks)
    live: list[Project] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def project(self, role: str, clusters: bool = True) -> Project:
        """A project of its own; its prepared PostgreSQL clusters (a fresh volume starts
        from one instead of initdb) go to the bench's own cache, empty at the start, or
        nowhere (clusters=False)."""
        name = f"bench-{uuid.uuid4().hex[:10]}"
        path = self.root / f"{name}-{role}"
        path.mkdir(parents=True)
        base = self.blocks.take()
        env = {**clean_environ(), **TEST_IMAGES, "DEVENV_PROJECT": name,
               "DEVENV_WAIT_TIMEOUT": f"{WAIT_TIMEOUT:g}",
               "DEVENV_CLUSTER_CACHE": str(self.root / "clusters") if clusters else "off"}
        for i, service in enumerate(SERVICES):
            env[f"DEVENV_{service.upper()}_PORT"] = str(base + 2 * i)
        p = Project(self, name, path, env)
        self.live.append(p)
        return p

    def only_args(self) -> list[str]:
        return ["--only", ",".join(self.only)] if self.only else []

    def selected(self) -> tuple[str, ...]:
        """The services a stack holds: the selection plus its dependencies."""
        if not self.only:
            return SERVICES
        chosen: set[str] = set()
        todo = [ALIASES.get(n, n) for n in self.only]
        while todo:
            name = todo.pop()
            if name not in chosen:
                chosen.add(name)
                todo.extend(NEEDS.get(name, ()))
        return tuple(s for s in SERVICES if s in chosen)

    def cleanup_all(self) -> None:
        for p in list(self.live):
            p.cleanup()


@dataclass
class Project:
    bench: Bench
    name: str
    path: Path
    env: dict[str, str]

    @property
    def compose_file(self) -> Path:
        return self.path / "compose" / "docker-compose.yml"

    def devenv(self, *args: str) -> Ran:
        return run([self.bench.devenv, *args], cwd=self.path, env=self.env)

    def compose(self, *args: str) -> Ran:
        return run(["docker", "compose", "-f", str(self.compose_file), "-p", self.name, *args],
                   cwd=self.path, env=self.env)

    def up(self) -> Ran:
        return self.devenv("up", *self.bench.only_args())

    def render(self) -> None:
        self.devenv("render", *self.bench.only_args()).check()

    def published(self) -> dict[str, int]:
        """service -> host port, from the rendered file (`compose config`)."""
        data = json.loads(self.compose("config", "--format", "json").check().stdout)
        ports = {}
        for name, svc in (data.get("services") or {}).items():
            for entry in svc.get("ports") or []:
                if int(entry.get("target", 0)) == CONTAINER_PORTS.get(name):
                    ports[name] = int(entry["published"])
        return ports

    def cleanup(self) -> None:
        """Remove everything of this project: containers, network, volumes, its API image."""
        self.devenv("down", "--volumes", "--yes")
        run(["docker", "compose", "-p", self.name, "down", "-v", "--remove-orphans"],
            cwd=self.bench.root, env=self.env, timeout=120)
        label = f"label=com.docker.compose.project={self.name}"
        left = run(["docker", "ps", "-aq", "--filter", label]).stdout.split()
        if left:
            run(["docker", "rm", "-f", *left])
        vols = run(["docker", "volume", "ls", "-q", "--filter", label]).stdout.split()
        if vols:
            run(["docker", "volume", "rm", "-f", *vols])
        nets = run(["docker", "network", "ls", "-q", "--filter", label]).stdout.split()
        if nets:
            run(["docker", "network", "rm", *nets])
        run(["docker", "image", "rm", f"{self.name}-api"])  # built for this project only
        shutil.rmtree(self.path, ignore_errors=True)
        if self in self.bench.live:
            self.bench.live.remove(self)


# --- figures ---------------------------------------------------------------------------------
@dataclass
class Samples:
    devenv: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def wait_for_preparations(timeout: float = 120.0) -> None:
    """Untimed: until no container prepares a cluster (devenv starts one in the background
    after an `up` that ran initdb), so that it takes no CPU from the next measurement."""
    deadline = time.monotonic() + timeout
    while run(["docker", "ps", "-q", "--filter", "label=devenv.cluster"],
              timeout=60).stdout.strip():
        if time.monotonic() >= deadline:
            raise BenchError("a prepared-cluster container still runs after "
                             f"{timeout:g} s")
        time.sleep(0.2)


def time_up_to_ready(project: Project, service: str, values: dict[str, str],
                     port: int) -> float:
    """`compose up -d --no-deps SERVICE`, then poll its own readiness every 100 ms."""
    probe = service_probe(service, port, values)
    start = time.perf_counter()
    project.compose("up", "-d", "--no-deps", service).check()
    deadline = start + WAIT_TIMEOUT
    while not probe():
        if time.perf_counter() >= deadline:
            raise BenchError(f"{service} of {project.name} did not answer on port {port} "
                             f"within {WAIT_TIMEOUT:g} s")
        time.sleep(POLL)
    return time.perf_counter() - start


def warm_up(bench: Bench) -> None:
    """Untimed: load devenv, its libraries and the docker CLI once (page cache, bytecode
    cache), so the first measured run is not the only one that pays for it."""
    env = clean_environ()
    run([bench.devenv, "--help"], cwd=bench.root, env=env)
    run([bench.interpreter, "-c", "import click"], cwd=bench.root, env=env)
    run([bench.interpreter, "-c", "import importlib\n"
         "for m in ('devenv.cli.main', 'devenv.stack.usecases', 'devenv.stack.doctor',\n"
         "          'jinja2', 'tenacity', 'dotenv'):\n"
         "    try: importlib.import_module(m)\n"
         "    except Exception: pass\n"], cwd=bench.root, env=env)
    p = bench.project("warm-up")
    try:
        p.render()
        p.devenv("ports")
        p.devenv("status")
    finally:
        p.cleanup()


def measure_help(bench: Bench, runs: int, say: Callable[[str], None]) -> Samples:
    s = Samples()
    cwd = bench.root
    env = clean_environ()
    dev = [bench.devenv, "--help"]
    ref = [bench.interpreter, "-c", "import click"]
    run(dev, cwd=cwd, env=env).check()  # warm-up (page cache), not counted
    run(ref, cwd=cwd, env=env).check()
    for _ in range(runs):
        s.devenv.append(run(dev, cwd=cwd, env=env).check().seconds)
        s.reference.append(run(ref, cwd=cwd, env=env).check().seconds)
    say(f"figure 5: {runs} runs done")
    return s


def measure_running(bench: Bench, runs: int, say: Callable[[str], None]
                    ) -> tuple[Samples, Samples]:
    """Figures 3 and 4 on one running stack."""
    noop, ports = Samples(), Samples()
    p = bench.project("running", clusters=False)  # cold figures start with an empty cache
    try:
        say(f"figures 3, 4: starting {p.name} (untimed)")
        p.up().check()
        p.up().check()  # warm-up pair, not counted
        p.compose("up", "-d").check()
        for i in range(runs):
            ran = p.up().check()
            if "already up to date" not in ran.stderr:
                bench.warnings.append(
                    f"figure 3 run {i + 1}: `devenv up` on the running stack did not say "
                    f"'already up to date'; stderr: {_tail(ran.stderr, 6)!r}")
            noop.devenv.append(ran.seconds)
            noop.reference.append(p.compose("up", "-d").check().seconds)
        p.devenv("ports").check()  # warm-up pair
        run(["docker", "compose", "-p", p.name, "ps", "--format", "json"], cwd=p.path,
            env=p.env).check()
        for _ in range(runs):
            ran = p.devenv("ports").check()
            if not ran.stdout.strip():
                raise BenchError(f"`devenv ports` printed nothing for {p.name}: {ran.stderr}")
            ports.devenv.append(ran.seconds)
            ports.reference.append(run(["docker", "compose", "-p", p.name, "ps", "--format",
                                        "json"], cwd=p.path, env=p.env).check().seconds)
        say("figures 3, 4: done")
    finally:
        p.cleanup()
    return noop, ports


def measure_cold(bench: Bench, runs: int, figures: set[str], say: Callable[[str], None]
                 ) -> tuple[Samples, Samples, Samples, Samples, Samples]:
    """Figures 1, 2, 6, 7 and 2f from the same cold starts, alternating devenv and reference.

    Per run: devenv cold up (time, peak RSS), then `devenv down` of that stack (figure 6);
    compose cold up of the rendered file, then `compose down` (figure 6); then each single
    service alone in its own project (figure 2).
    """
    cold, slowest, down, rss, first = Samples(), Samples(), Samples(), Samples(), Samples()
    singles = [s for s in SINGLE_SERVICES if s in bench.selected()]
    per_service: dict[str, list[float]] = {s: [] for s in singles}
    # The first-ever cold up: no prepared cluster yet, so PostgreSQL runs initdb (figure
    # 2f); it leaves one, which every later fresh volume starts from.
    p = bench.project("cold-first")
    try:
        first.devenv.append(p.up().check().seconds)
        wait_for_preparations()
    finally:
        p.cleanup()
    say(f"first cold up (initdb; prepares a cluster): {first.devenv[-1]:.2f} s")
    for i in range(runs):
        # devenv, cold: a new project name has no containers and no volumes
        p = bench.project("cold-devenv")
        try:
            ran = p.up().check()
            cold.devenv.append(ran.seconds)
            rss.devenv.append(ran.max_rss_kb / 1024)
            if "postgres" in bench.selected() and "prepared cluster" not in ran.stderr:
                bench.warnings.append(f"cold run {i + 1}: `devenv up` did not start from a "
                                      "prepared cluster")
            wait_for_preparations()
            if "6" in figures:
                down.devenv.append(p.devenv("down").check().seconds)
        finally:
            p.cleanup()
        # reference: the file devenv renders, started by compose alone
        r = bench.project("cold-compose")
        try:
            r.render()
            ran = r.compose("up", "-d", "--wait").check()
            cold.reference.append(ran.seconds)
            rss.reference.append(ran.max_rss_kb / 1024)
            if "6" in figures:
                down.reference.append(r.compose("down").check().seconds)
        finally:
            r.cleanup()
        if "2" in figures:
            for service in singles:
                q = bench.project(f"single-{service}")
                try:
                    q.render()
                    port = q.published()[service]
                    per_service[service].append(time_up_to_ready(q, service, q.env, port))
                finally:
                    q.cleanup()
        say(f"cold run {i + 1}/{runs}: devenv {cold.devenv[-1]:.2f} s, "
            f"compose {cold.reference[-1]:.2f} s"
            + (", singles " + ", ".join(f"{s} {v[-1]:.2f}" for s, v in per_service.items())
               if "2" in figures else ""))
    slowest.devenv = list(cold.devenv)
    if per_service and all(per_service.values()):
        medians = {s: statistics.median(v) for s, v in per_service.items()}
        worst = max(medians, key=lambda s: medians[s])
        slowest.reference = per_service[worst]
        slowest.extra = {"slowest": worst, "medians": medians, "runs": per_service}
        first.reference = per_service[worst]
    return cold, slowest, down, rss, first


def measure_warm(bench: Bench, runs: int, say: Callable[[str], None]) -> Samples:
    """Containers removed, volumes kept: `devenv down` / `compose down` between runs."""
    s = Samples()
    p = bench.project("warm-devenv", clusters=False)  # its volumes are kept anyway
    r = bench.project("warm-compose")
    try:
        say(f"warm: preparing {p.name} and {r.name} (untimed)")
        p.up().check()
        r.render()
        r.compose("up", "-d", "--wait").check()
        for i in range(runs):
            p.devenv("down").check()
            s.devenv.append(p.up().check().seconds)
            r.compose("down").check()
            s.reference.append(r.compose("up", "-d", "--wait").check().seconds)
            say(f"warm run {i + 1}/{runs}: devenv {s.devenv[-1]:.2f} s, "
                f"compose {s.reference[-1]:.2f} s")
    finally:
        p.cleanup()
        r.cleanup()
    return s


# --- report ----------------------------------------------------------------------------------
def figure_row(fid: str, samples: Samples | None, error: str | None = None) -> dict[str, Any]:
    key, title, unit, kind, limit = FIGURES[fid]
    row: dict[str, Any] = {"id": fid, "key": key, "title": title, "unit": unit,
                           "target_kind": kind, "limit": limit}
    if kind == "ratio":
        row["target"] = f"<= {limit:g}x"
    elif kind == "absolute":
        row["target"] = f"<= {limit:g} {unit}"
    else:
        row["target"] = "info"
    if error is not None or samples is None:
        row.update(devenv=None, reference=None, ratio=None, result="ERROR",
                   error=error or "not measured")
        return row
    dev, ref = median(samples.devenv), median(samples.reference)
    ratio = dev / ref if dev is not None and ref else None
    if kind == "ratio":
        value = ratio
    elif kind == "absolute":
        value = dev
    else:
        value = None
    if kind is None or limit is None:
        result = "INFO"
    elif value is None:
        result = "ERROR"
    else:
        result = "PASS" if value <= limit else "FAIL"
    row.update(devenv=dev, reference=ref, ratio=ratio, result=result,
               runs={"devenv": samples.devenv, "reference": samples.reference})
    if samples.extra:
        row["detail"] = samples.extra
    return row


def source_hash(where: str) -> str | None:
    """A digest of devenv's code and templates, to notice when they change during a run."""
    if not where:
        return None
    digest = hashlib.sha256()
    package = Path(where)
    for top in (package, package.parent / "templates"):
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                with contextlib.suppress(OSError):
                    digest.update(str(path.relative_to(top.parent)).encode() + b"\0"
                                  + path.read_bytes())
    return digest.hexdigest()[:12]


def source_info(interpreter: str) -> dict[str, Any]:
    """Where the measured devenv is imported from and, in a git checkout, which commit (the
    package may change between runs)."""
    ran = run([interpreter, "-c", "import devenv, os; print(os.path.dirname(devenv.__file__))"],
              env=clean_environ(), timeout=60)
    where = ran.stdout.strip() if ran.returncode == 0 else ""
    info: dict[str, Any] = {"devenv_source": where or None, "devenv_commit": None,
                            "devenv_dirty": None, "devenv_source_hash": source_hash(where)}
    if where and shutil.which("git"):
        head = run(["git", "-C", where, "rev-parse", "--short", "HEAD"], timeout=60)
        if head.returncode == 0:
            info["devenv_commit"] = head.stdout.strip()
            dirty = run(["git", "-C", where, "status", "--porcelain", "--", ".", "../templates"],
                        timeout=60)
            info["devenv_dirty"] = bool(dirty.stdout.strip())
    return info


def machine_info(devenv: str, interpreter: str) -> dict[str, Any]:
    model, cores = platform.processor() or "?", os.cpu_count() or 0
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if found:
            model = found.group(1).strip()
        cores = len(re.findall(r"^processor\s*:", text, re.M)) or cores
    except OSError:
        pass
    engine = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=60)
    compose = run(["docker", "compose", "version", "--short"], timeout=60)
    version = run([devenv, "--version"], timeout=60)
    return {**source_info(interpreter),
        "cpu": model, "cores": cores,
        "docker_engine": engine.stdout.strip() if engine.returncode == 0 else None,
        "compose": compose.stdout.strip() if compose.returncode == 0 else None,
        "devenv": devenv, "devenv_version": version.stdout.strip(),
        "interpreter": interpreter,
        "python": run([interpreter, "-c", "import sys; print(sys.version.split()[0])"])
        .stdout.strip(),
        "kernel": platform.release(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} MB" if unit == "MB" else f"{value:.3f} s"


def format_table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores; Docker Engine {m['docker_engine']}, "
             f"Compose {m['compose']}; {m['devenv_version']} on Python {m['python']}; "
             f"{m['date']}",
             f"devenv source: {m['devenv_source']}"
             + (f" @ {m['devenv_commit']}" + (" + uncommitted changes" if m["devenv_dirty"]
                                              else "") if m["devenv_commit"] else ""),
             f"runs: {report['settings']['runs']} alternating (median), --help "
             f"{report['settings']['help_runs']}; stack: "
             f"{','.join(report['settings']['services'])}"
             + ("; bytecode cache: bench-owned PYTHONPYCACHEPREFIX (PYTHONDONTWRITEBYTECODE "
                "was set)" if report["settings"]["pycache_prefix"] else ""), ""]
    header = ("figure", "devenv", "reference", "ratio", "target", "result")
    rows = [header]
    for f in report["figures"]:
        ratio = f"{f['ratio']:.2f}x" if f.get("ratio") is not None else "-"
        rows.append((f"{f['id']:>2}  {f['title']}", _fmt(f["devenv"], f["unit"]),
                     _fmt(f["reference"], f["unit"]), ratio, f["target"], f["result"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = []
    for f in report["figures"]:
        detail = f.get("detail") or {}
        if "medians" in detail:
            per = ", ".join(f"{s} {v:.2f} s" for s, v in detail["medians"].items())
            notes.append(f"figure 2: slowest single service {detail['slowest']}; "
                         f"medians: {per}")
        if f["id"] == "7" and f.get("reference") is not None:
            notes.append("figure 7: reference column = peak RSS of `docker compose up -d "
                         "--wait` (info)")
        if f["id"] == "3" and f.get("reference") is not None:
            notes.append("figure 3: target is absolute; reference = `docker compose up -d` on "
                         "the same running stack (info)")
        if f.get("error"):
            notes.append(f"figure {f['id']}: ERROR: {f['error'].splitlines()[0]}")
    if report["skipped"]:
        notes.append(f"not measured in this mode: figures {', '.join(report['skipped'])}")
    notes += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines + ([""] + notes if notes else []))


# --- main ------------------------------------------------------------------------------------
def interpreter_of(script: str) -> str:
    """The Python a console script runs on, from its shebang."""
    try:
        with open(script, "rb") as handle:
            first = handle.readline().decode(errors="replace").strip()
    except OSError as exc:
        raise BenchError(f"cannot read {script}: {exc}") from exc
    if not first.startswith("#!"):
        raise BenchError(f"{script} has no shebang: cannot tell which Python runs devenv")
    words = shlex.split(first[2:])
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
        found = shutil.which(words[0]) if words else None
        if not found:
            raise BenchError(f"{script}: interpreter {first} not found")
        return found
    return words[0]


def preflight(devenv: str) -> None:
    ran = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=60)
    if ran.returncode != 0:
        raise BenchError("no Docker engine answers (`docker version` failed): run "
                         f"`bash scripts/install-docker.sh`\n{_tail(ran.stderr, 5)}")
    if run(["docker", "compose", "version"], timeout=60).returncode != 0:
        raise BenchError("`docker compose` (Compose v2) is not available")
    missing = [i for i in TEST_IMAGES.values()
               if run(["docker", "image", "inspect", i], timeout=60).returncode != 0]
    if missing:
        raise BenchError(f"offline test images missing: {missing}; run "
                         "`bash scripts/build-test-images.sh`")
    if run([devenv, "--version"], timeout=60).returncode != 0:
        raise BenchError(f"{devenv} --version failed")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Measure devenv against its speed targets.")
    ap.add_argument("--devenv", help="the devenv command (default: `devenv` on PATH)")
    ap.add_argument("--runs", type=int, default=5, metavar="N",
                    help="alternating runs per figure; the median is reported (default 5)")
    ap.add_argument("--help-runs", type=int, default=20, metavar="N",
                    help="runs for figure 5, which is short (default 20)")
    ap.add_argument("--only", default=None, metavar="NAMES",
                    help="stack selection passed to `devenv up --only` (default: all six)")
    ap.add_argument("--figures", default=None, metavar="IDS",
                    help="comma-separated figures to measure, e.g. 3,4,5 (default: all; "
                    "1w is the warm variant)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 run each, figures 3, 4, 5 only, --only db,cache")
    ap.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    ap.add_argument("--json-file", type=Path, default=None, metavar="FILE",
                    help="also write the JSON report to FILE")
    ap.add_argument("--tmpdir", type=Path, default=None,
                    help="where the throw-away project directories go (default: system temp)")
    ap.add_argument("--pycache", choices=("auto", "inherit"), default="auto",
                    help="auto (default): when PYTHONDONTWRITEBYTECODE is set, let the measured "
                    "Python processes cache bytecode in a bench-owned PYTHONPYCACHEPREFIX; "
                    "inherit: run them with the environment exactly as inherited")
    ap.add_argument("--fail-on-target", action="store_true",
                    help="exit 1 when a figure FAILs its target (default: exit 0)")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.help_runs < 1:
        ap.error("--runs and --help-runs must be at least 1")
    if args.quick:
        args.runs, args.help_runs = 1, 1
        args.only = args.only or "db,cache"
        args.figures = args.figures or ",".join(QUICK_FIGURES)
    wanted = [f.strip() for f in (args.figures or ",".join(ALL_FIGURES)).split(",")
              if f.strip()]
    unknown = [f for f in wanted if f not in FIGURES]
    if unknown:
        ap.error(f"unknown figures {unknown}; known: {', '.join(FIGURES)}")
    args.wanted = set(wanted)
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def devenv_command(given: str | None) -> str | None:
    """The devenv to measure, as an absolute path (each project runs in its own directory, so
    a relative one would not be found there): `given`, else the one on PATH; None if none."""
    found = shutil.which(given or "devenv")
    return os.path.abspath(found) if found else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def say(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    devenv = devenv_command(args.devenv)
    if not devenv:
        print(f"bench: error: no devenv command {'at ' + args.devenv if args.devenv else 'on PATH'}"
              "; pass --devenv PATH", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C does
    try:
        preflight(devenv)
        interpreter = interpreter_of(shutil.which(devenv) or devenv)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    only = tuple(w.strip() for w in (args.only or "").split(",") if w.strip())
    root = Path(tempfile.mkdtemp(prefix="devenv-bench-", dir=args.tmpdir))
    global PYCACHE_PREFIX
    if args.pycache == "auto" and os.environ.get("PYTHONDONTWRITEBYTECODE"):
        PYCACHE_PREFIX = str(root / "pycache")
    bench = Bench(devenv=devenv, interpreter=interpreter, root=root, only=only)
    results: dict[str, Samples] = {}
    errors: dict[str, str] = {}
    wanted = args.wanted

    def attempt(ids: Sequence[str], fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except BenchError as exc:
            for fid in ids:
                errors[fid] = str(exc)
            say(f"error in figures {', '.join(ids)}: {exc}")
            return None

    try:
        machine = machine_info(devenv, interpreter)
        say(f"{machine['cpu']}, {machine['cores']} cores, engine {machine['docker_engine']}, "
            f"compose {machine['compose']}; projects under {root}")
        attempt(["warm-up"], lambda: warm_up(bench))
        if "5" in wanted:
            got = attempt(["5"], lambda: measure_help(bench, args.help_runs, say))
            if got:
                results["5"] = got
        if wanted & {"3", "4"}:
            got = attempt(["3", "4"], lambda: measure_running(bench, args.runs, say))
            if got:
                results["3"], results["4"] = got
        if "2" in wanted:
            wanted.add("2f")
        cold_ids = [f for f in ("1", "2", "6", "7", "2f") if f in wanted]
        if cold_ids:
            got = attempt(cold_ids, lambda: measure_cold(bench, args.runs, wanted, say))
            if got:
                for fid, samples in zip(("1", "2", "6", "7", "2f"), got, strict=True):
                    if fid in wanted:
                        results[fid] = samples
        if "1w" in wanted:
            got = attempt(["1w"], lambda: measure_warm(bench, args.runs, say))
            if got:
                results["1w"] = got
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        bench.cleanup_all()
        shutil.rmtree(root, ignore_errors=True)
        return 130
    finally:
        bench.cleanup_all()
    shutil.rmtree(root, ignore_errors=True)
    after = source_hash(machine.get("devenv_source") or "")
    if after != machine.get("devenv_source_hash"):
        bench.warnings.append(
            f"devenv's source changed during the run ({machine.get('devenv_source_hash')} -> "
            f"{after}): the figures mix code versions")

    order = [f for f in FIGURES if f in wanted]
    figures = [figure_row(f, results.get(f), errors.get(f)) for f in order]
    report = {
        "schema": SCHEMA,
        "machine": machine,
        "settings": {"runs": args.runs, "help_runs": args.help_runs, "quick": args.quick,
                     "only": list(only), "services": list(bench.selected()),
                     "images": TEST_IMAGES, "pycache_prefix": bool(PYCACHE_PREFIX)},
        "figures": figures,
        "skipped": [f for f in FIGURES if f not in wanted],
        "warnings": bench.warnings,
    }
    if args.json_file:
        args.json_file.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    if errors:
        return 1
    if args.fail_on_target and any(f["result"] == "FAIL" for f in figures):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
