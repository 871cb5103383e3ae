"""The project's network on a real engine: refused kinds, shared with another project, pruned."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from checks import redis_cmd, redis_ping

pytestmark = pytest.mark.e2e


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def networks() -> set[str]:
    return set(docker("network", "ls", "--format", "{{.Name}}").stdout.split())


@pytest.mark.parametrize("name", ["host", "none"])
def test_host_or_none_is_refused_before_anything_is_created(project, name):
    result = project.run("up", "--only", "cache", check=False,
                         extra_env={"DEVENV_NETWORK": name})
    assert result.returncode == 2, result.stderr
    assert f"devenv: error: DEVENV_NETWORK={name} is" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    assert project.containers() == []  # nothing half-created
    assert not (project.path / "compose").exists()


def test_down_keeps_a_network_another_project_still_uses(make_project):
    shared = f"tnet{uuid.uuid4().hex[:8]}"
    first = make_project(DEVENV_NETWORK=shared)
    second = make_project(DEVENV_NETWORK=shared)
    try:
        first.run("up", "--only", "db")
        second.run("up", "--only", "cache")  # no service name in common: allowed
        down = first.run("down", check=False)
        assert down.returncode == 0, down.stderr
        assert "answered 403" not in down.stderr and "removed: postgres" in down.stderr
        assert f"kept network {shared}: still used by {second.name}-redis-1" in down.stderr
        assert first.containers() == []
        assert redis_ping("127.0.0.1", second.ports()["redis"]["port"]) == "+PONG"
        # a third project that would put its own redis beside the second's is refused
        third = make_project(DEVENV_NETWORK=shared)
        clash = third.run("up", "--only", "cache", check=False)
        assert clash.returncode == 2 and f"shared with project {second.name}" in clash.stderr
        assert third.containers() == []
    finally:
        second.cleanup()
        docker("network", "rm", shared, check=False)


def test_up_after_the_network_was_pruned_recreates_it_and_keeps_data(project):
    project.run("up", "--only", "cache")
    port = project.ports()["redis"]["port"]
    assert redis_cmd("127.0.0.1", port, "SET", "kept", "yes") == "+OK"
    docker("stop", "-t", "5", f"{project.name}-redis-1")
    docker("network", "rm", project.name)  # what `docker network prune` does to it
    assert project.name not in networks()
    up = project.run("up", "--only", "cache", check=False)
    assert up.returncode == 0, up.stderr
    assert f"network {project.name} is gone" in up.stderr and "data volumes are kept" in up.stderr
    assert project.name in networks()
    assert redis_cmd("127.0.0.1", project.ports()["redis"]["port"], "GET", "kept") == \
        "$3\r\nyes"
