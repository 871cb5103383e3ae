"""dockerd restarted under a running stack: the commands tell the truth and `up` recovers,
with the data. Named zz so it runs last: it restarts the engine every other test uses."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from checks import psql, redis_cmd
from test_up import env_lines

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def engine_answers() -> bool:
    return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                          capture_output=True).returncode == 0


def restart_dockerd() -> None:
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "dockerd did not stop"
        time.sleep(0.2)
    subprocess.run(["bash", str(ROOT / "scripts" / "install-docker.sh")], check=True,
                   capture_output=True)
    assert engine_answers()


def test_dockerd_restart(project):
    project.run("up", "--only", "db,cache")
    url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
    psql(url, "create table survived (v text); insert into survived values ('yes')")
    redis_port = project.ports()["redis"]["port"]
    assert redis_cmd("127.0.0.1", redis_port, "SET", "survived", "yes") == "+OK"

    restart_dockerd()

    stopped = project.ports()  # nothing is published: nothing runs, and ports says so
    assert set(stopped) == {"postgres", "redis"}
    assert not any(row["running"] for row in stopped.values())
    assert all(row["state"].startswith("exited") for row in stopped.values())
    status = project.run("status").stdout
    assert "exited" in status and "running" not in status
    up = project.run("up", "--only", "db,cache")
    assert "starting" in up.stderr
    assert project.ports()["redis"]["port"] == redis_port  # sticky across the restart
    url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
    assert psql(url, "select v from survived") == "yes"
    assert redis_cmd("127.0.0.1", redis_port, "GET", "survived") == "$3\r\nyes"
