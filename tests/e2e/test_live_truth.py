"""What `restart`, `ports` and `status` say when the stack is not (all) there."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_restart_with_nothing_running_says_how_to_start(project):
    result = project.run("restart", check=False)
    assert result.returncode == 2
    assert "nothing of project" in result.stderr and "is running" in result.stderr
    assert "hint: start it with `devenv up`" in result.stderr
    assert "restarting" not in result.stderr and result.stdout == ""


def test_ports_and_status_mention_a_service_that_exited_or_is_gone(project):
    project.run("up", "--only", "db,cache")
    subprocess.run(["docker", "stop", "-t", "5", f"{project.name}-postgres-1"], check=True,
                   capture_output=True)
    subprocess.run(["docker", "rm", "-f", f"{project.name}-redis-1"], check=True,
                   capture_output=True)
    ports = project.run("ports")
    lines = {line.split()[0]: line for line in ports.stdout.splitlines()[1:]}
    assert set(lines) == {"postgres", "redis"}
    assert "exited" in lines["postgres"] and "gone" in lines["redis"]
    assert "not running: postgres, redis" in ports.stderr
    rows = {r["service"]: r for r in json.loads(project.run("ports", "--json").stdout)}
    assert rows["postgres"]["running"] is False and rows["redis"]["running"] is False
    assert project.run("ports", "--env").stdout == ""  # no URL that does not answer
    status = {r["service"]: r for r in json.loads(project.run("status", "--json").stdout)}
    assert status["postgres"]["state"] == "exited" and status["redis"]["state"] == "gone"
    assert "not running: postgres, redis" in project.run("status").stderr
    project.run("up", "--only", "db,cache")
    assert all(r["state"] == "ready" for r in project.ports().values())
