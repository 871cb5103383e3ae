"""Fixtures for tests that drive the installed `devenv` command against a real engine.

A missing engine fails these tests (pytest.fail), it never skips them: CI must prove the
product works on Docker, not that it was not tried.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
#: the offline images as settings: one file for the tests, the benchmark and users
TEST_IMAGES: dict[str, str] = {k: v for k, v in dotenv_values(ROOT / "testbed" /
                                                              "test-images.env").items() if v}


def devenv_command() -> str:
    """The installed console script beside this interpreter (the wheel, not the source)."""
    candidate = Path(sys.executable).parent / "devenv"
    found = str(candidate) if candidate.exists() else shutil.which("devenv")
    if not found:
        pytest.fail("the devenv command is not installed: run `bash scripts/test.sh`")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_prepared_clusters() -> Iterator[None]:
    """Every devenv the tests start, also outside a Project, makes no prepared PostgreSQL
    cluster in the user's cache unless its test asks (tests/e2e/test_prepared_clusters.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEVENV_CLUSTER_CACHE", "off")
        yield


@pytest.fixture(scope="session")
def engine() -> str:
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail("no Docker engine answers: run `bash scripts/install-docker.sh` "
                    f"({result.stderr.strip()[:200]})")
    missing = [image for image in TEST_IMAGES.values()
               if subprocess.run(["docker", "image", "inspect", image],
                                 capture_output=True).returncode != 0]
    if missing:
        pytest.fail(f"offline test images missing: {missing}; run "
                    "`bash scripts/build-test-images.sh`")
    return result.stdout.strip()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_HANDED_OUT: set[int] = set()


def free_port_block(size: int = 16) -> int:
    """The first port of `size` consecutive free ports (for a project's configured ports).

    The block lies below the kernel's ephemeral range: a port in that range can be given to any
    outgoing connection between this check and the test's use of it, and then `port + 1` is no
    longer the port a moved service lands on. No block is handed out twice in one run.
    """
    low, high = _ephemeral_range()
    # above the Expo port (19000), reserved for a host app; above the range if it starts too low
    first, last = (20000, low - size) if low - size > 21000 else (high + 1, 65000 - size)
    rng = random.Random()
    for _ in range(500):
        start = rng.randrange(first, last)
        block = range(start, start + size)
        if _HANDED_OUT.intersection(block):
            continue
        ok = True
        for port in block:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
                break
        if ok:
            _HANDED_OUT.update(block)
            return start
    raise RuntimeError("no block of free ports")


def free_port() -> int:
    """One free port, picked as a project's ports are (below the ephemeral range)."""
    return free_port_block(1)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "4m") mounted at `path`, for the disk-full tests; unmounted
    after, whatever the test did."""
    path.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@dataclass
class Project:
    """A throw-away devenv project: its own directory, name, and ports."""

    path: Path
    name: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 240,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, **(extra_env or {})}
        result = subprocess.run([devenv_command(), *args], cwd=self.path, env=env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"devenv {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def ports(self) -> dict[str, dict]:
        return {row["service"]: row for row in json.loads(self.run("ports", "--json").stdout)}

    def containers(self) -> list[dict]:
        out = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}",
             "--format", "{{json .}}"], capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def cleanup(self) -> None:
        self.run("down", "--volumes", "--yes", check=False, timeout=120)


def new_project(tmp_path: Path, *, default_ports: bool = False, **env: str) -> Project:
    name = f"t{uuid.uuid4().hex[:8]}"
    # No prepared PostgreSQL clusters unless a test asks (tests/e2e/test_prepared_clusters.py): their
    # background preparation would add CPU load to every cold start of the suite.
    settings = {**TEST_IMAGES, "DEVENV_PROJECT": name, "DEVENV_WAIT_TIMEOUT": "90",
                "DEVENV_CLUSTER_CACHE": "off", **env}
    if not default_ports:
        base = free_port_block()
        for i, service in enumerate(("API", "POSTGRES", "REDIS", "ADMINER", "PROMETHEUS",
                                     "GRAFANA")):
            settings.setdefault(f"DEVENV_{service}_PORT", str(base + 2 * i))
    path = tmp_path / name
    path.mkdir()
    return Project(path=path, name=name, env=settings)


@pytest.fixture
def project(tmp_path: Path, engine: str) -> Iterator[Project]:
    p = new_project(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def make_project(tmp_path: Path, engine: str) -> Iterator:
    made: list[Project] = []

    def make(**env: str) -> Project:
        p = new_project(tmp_path, **env)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.cleanup()


PAUSED = Path(__file__).resolve().parent / "paused.py"


def popen_paused(project: Project, seam: Path, *args: str) -> subprocess.Popen[str]:
    """The installed devenv, paused between its plan and its first start (see paused.py):
    the plan appears in SEAM.plan; writing SEAM.go lets it go on."""
    return subprocess.Popen([sys.executable, str(PAUSED), str(seam), *args], cwd=project.path,
                            env={**os.environ, **project.env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
