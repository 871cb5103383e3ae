"""What devenv must never lose or garble, on the real engine: a person's edit of a
generated file, Postgres' own messages under the default password, and a clean exit on
SIGTERM or Ctrl-C. One project for the module (Redis and PostgreSQL only)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project, devenv_command, new_project, popen_paused

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Project]:
    p = new_project(tmp_path_factory.mktemp("own"))
    try:
        p.run("up", "--only", "cache")
        yield p
    finally:
        p.cleanup()


def popen(project: Project, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([devenv_command(), *args], cwd=project.path,
                            env={**os.environ, **project.env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_an_edited_compose_file_is_kept_and_named_by_up(running):
    compose = running.path / "compose" / "docker-compose.yml"
    edited = compose.read_text().replace("services:", "# my tuning\nservices:", 1)
    assert edited != compose.read_text()
    compose.write_text(edited)
    result = running.run("up", "--only", "cache")
    [kept] = compose.parent.glob("docker-compose.yml.edited-*")
    assert kept.read_text() == edited  # the person's file, byte for byte
    assert f"kept as compose/{kept.name}" in result.stderr
    assert "already up to date" not in result.stderr
    assert "# my tuning" not in compose.read_text()
    again = running.run("up", "--only", "cache")  # devenv's own file again: nothing new
    assert "already up to date" in again.stderr
    assert list(compose.parent.glob("docker-compose.yml.edited-*")) == [kept]


def test_ctrl_c_in_logs_follow_exits_quietly(running):
    proc = popen(running, "logs", "-f", "cache")
    assert proc.stdout is not None and proc.stdout.readline().startswith("redis-1")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "run the command again" not in err and "Traceback" not in err


def test_sigterm_during_up_exits_143_releases_the_lock_and_a_rerun_finishes(running,
                                                                            tmp_path):
    seam = tmp_path / "pause"
    proc = popen_paused(running, seam, "up", "--only", "db")
    deadline = time.monotonic() + 60
    while not Path(str(seam) + ".plan").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == \
        "devenv: terminated (SIGTERM); run the command again to finish"
    assert "Traceback" not in err
    lock = running.path / ".devenv" / f"{running.name}.lock"
    assert lock.read_text() == ""
    running.run("up", "--only", "db", timeout=120)
    assert {"postgres", "redis"} <= set(running.ports())


def test_logs_keep_postgres_messages_readable_with_the_default_password(running):
    assert "DEVENV_POSTGRES_PASSWORD" not in running.env  # the spec's default: `password`
    running.run("up", "--only", "db")
    port = running.ports()["postgres"]["port"]
    failed = subprocess.run(["psql", f"postgresql://postgres:wrong@127.0.0.1:{port}/x",
                             "-c", "select 1"], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    assert failed.returncode != 0
    deadline = time.monotonic() + 20
    logs = ""
    while "authentication failed" not in logs and time.monotonic() < deadline:
        logs = running.run("logs", "db").stdout
        time.sleep(0.2)
    assert 'FATAL:  password authentication failed for user "postgres"' in logs
    assert "***" not in logs
