"""Prepared clusters on the real engine: the first `up` leaves one in the cache, a fresh
volume of another project starts from it (database, credentials and seeds as initdb would
have made them), a changed password or seed file is not served a stale one, and a damaged
file falls back to initdb. `--only db`, one cache for the module."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project, new_project

SEED = "CREATE TABLE seeded (name text);\nINSERT INTO seeded VALUES ('first');\n"
FROM_CLUSTER = "starting from a prepared cluster"


def wait_for_preparations(timeout: float = 120) -> None:
    """Until no container prepares a cluster (they run detached after an `up`)."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["docker", "ps", "-q", "--filter", "label=devenv.cluster"],
                         capture_output=True, text=True, check=True).stdout.strip():
        assert time.monotonic() < deadline, "a cluster preparation still runs"
        time.sleep(0.2)


class Made:
    def __init__(self, root: Path, cache: Path):
        self.root, self.cache, self.projects = root, cache, []

    def project(self, password: str = "pw-one", seed: str = SEED) -> Project:
        p = new_project(self.root, DEVENV_CLUSTER_CACHE=str(self.cache),
                        DEVENV_POSTGRES_PASSWORD=password)
        (p.path / "db" / "seed").mkdir(parents=True)
        (p.path / "db" / "seed" / "01-seed.sql").write_text(seed)
        self.projects.append(p)
        return p

    def clusters(self) -> list[str]:
        return sorted(p.name for p in self.cache.iterdir()
                      if p.name.endswith(".tar") and not p.name.startswith("."))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Made]:
    root = tmp_path_factory.mktemp("clusters")
    m = Made(root, root / "cache")
    first = m.project()
    try:
        up = first.run("up", "--only", "db")
        assert FROM_CLUSTER not in up.stderr  # an empty cache: initdb
        wait_for_preparations()
        yield m
    finally:
        wait_for_preparations()
        for p in m.projects:
            p.cleanup()


def sql(p: Project, query: str) -> str:
    return p.run("psql", "-Atc", query).stdout.strip()


def tcp_login(p: Project, password: str) -> subprocess.CompletedProcess[str]:
    """psql with the password from another container on the project's network, as the API
    logs in (inside PostgreSQL's own container, local connections are trusted)."""
    return subprocess.run(["docker", "run", "--rm", "--network", p.name, "-e", "PGPASSWORD",
                           "--entrypoint", "psql", p.env["DEVENV_POSTGRES_IMAGE"], "-h",
                           "postgres", "-U", "postgres", "-d", "cirkelline_agents", "-Atc",
                           "SELECT current_database()"],
                          env={**os.environ, "PGPASSWORD": password}, capture_output=True,
                          text=True)


def test_the_first_up_leaves_a_private_prepared_cluster(made):
    [name] = made.clusters()
    assert {p.name for p in made.cache.iterdir()} == \
        {name, name.replace(".tar", ".sha256"), ".devenv-clusters"}  # nothing temporary left
    # devenv created the folder, so it marked it as its own (it prunes only a marked one)
    assert (made.cache / ".devenv-clusters").read_text() == "devenv.clusters/1\n"
    assert stat.S_IMODE(made.cache.stat().st_mode) == 0o700
    for path in made.cache.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == os.getuid()
    assert "pw-one" not in name


def test_a_fresh_volume_of_another_project_starts_from_it(made):
    p = made.project()
    up = p.run("up", "--only", "db")
    assert FROM_CLUSTER in up.stderr
    assert sql(p, "SELECT current_database() || ':' || string_agg(name, ',') FROM seeded") \
        == "cirkelline_agents:first"
    assert tcp_login(p, "pw-one").stdout.strip() == "cirkelline_agents"
    assert tcp_login(p, "wrong").returncode != 0
    # down --volumes then up: a fresh volume again, from the same cluster
    p.run("down", "--volumes", "--yes")
    assert FROM_CLUSTER in p.run("up", "--only", "db").stderr
    assert sql(p, "SELECT count(*) FROM seeded") == "1"
    wait_for_preparations()
    assert len(made.clusters()) == 1  # nothing new was prepared


def test_the_stack_and_a_migration_start_on_a_database_from_a_cluster(made):
    """Beside other services (PostgreSQL started from its own thread once filled), and the
    API's migration after it answers."""
    p = made.project()
    up = p.run("up", "--only", "api",
               extra_env={"DEVENV_API_MIGRATE": "python3 /app/app.py migrate"})
    assert FROM_CLUSTER in up.stderr
    assert sql(p, "SELECT version FROM schema_migrations") == "0001_agents"
    assert sql(p, "SELECT string_agg(name, ',') FROM seeded") == "first"
    rows = p.ports()
    assert {rows[s]["state"] for s in ("api", "postgres", "redis")} == {"ready"}


def test_a_changed_password_is_not_served_a_stale_cluster(made):
    p = made.project(password="pw-two")
    up = p.run("up", "--only", "db")
    assert FROM_CLUSTER not in up.stderr
    assert tcp_login(p, "pw-two").stdout.strip() == "cirkelline_agents"
    assert tcp_login(p, "pw-one").returncode != 0
    wait_for_preparations()
    assert len(made.clusters()) == 2  # one for each password


def test_a_changed_seed_file_is_not_served_a_stale_cluster(made):
    p = made.project(seed=SEED.replace("'first'", "'second'"))
    up = p.run("up", "--only", "db")
    assert FROM_CLUSTER not in up.stderr
    assert sql(p, "SELECT string_agg(name, ',') FROM seeded") == "second"
    wait_for_preparations()


def test_a_damaged_cluster_falls_back_to_initdb_and_is_set_aside(made):
    wait_for_preparations()
    before = len(made.clusters())
    # every cluster, the first project's among them (same password and seed as below),
    # cut short
    p = made.project()
    for name in made.clusters():
        path = made.cache / name
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
    up = p.run("up", "--only", "db")
    assert FROM_CLUSTER not in up.stderr
    assert "damaged" in up.stderr and "running initdb instead" in up.stderr
    assert sql(p, "SELECT string_agg(name, ',') FROM seeded") == "first"
    assert any(x.name.startswith(".damaged-") for x in made.cache.iterdir())
    wait_for_preparations()
    assert len(made.clusters()) == before  # a whole one prepared again in its place
