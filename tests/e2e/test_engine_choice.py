"""devenv talks to the engine the Docker CLI (and so Compose) would: a real Docker context."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from checks import redis_ping

pytestmark = pytest.mark.e2e


def test_up_and_doctor_follow_the_docker_context(project, tmp_path):
    config = tmp_path / "docker-config"
    config.mkdir()
    # a socket path of its own (a link to the real one), so the report can only name it
    # if devenv read the context
    socket_path = tmp_path / "ctx.sock"
    socket_path.symlink_to("/var/run/docker.sock")
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env["DOCKER_CONFIG"] = str(config)
    for args in (["context", "create", "e2e-ctx", "--docker", f"host=unix://{socket_path}"],
                 ["context", "use", "e2e-ctx"]):
        subprocess.run(["docker", *args], env=env, check=True, capture_output=True)
    assert json.loads((config / "config.json").read_text())["currentContext"] == "e2e-ctx"
    unset = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": "", "DOCKER_CONTEXT": ""}

    project.run("up", "--only", "cache", extra_env=unset)
    redis = project.ports()["redis"]
    assert redis_ping("127.0.0.1", redis["port"]) == "+PONG"
    doctor = json.loads(project.run("doctor", "--json", extra_env=unset).stdout)
    engine = next(c for c in doctor["checks"] if c["name"] == "engine")
    assert engine["status"] == "ok"
    assert f"unix://{socket_path}" in engine["detail"] and "context e2e-ctx" in engine["detail"]

    # the current context's engine gone: named, exit 4, before anything is tried;
    # DOCKER_CONTEXT picks another context over the current one
    gone_socket = tmp_path / "gone.sock"
    for args in (["context", "create", "e2e-gone", "--docker", f"host=unix://{gone_socket}"],
                 ["context", "use", "e2e-gone"]):
        subprocess.run(["docker", *args], env=env, check=True, capture_output=True)
    gone = project.run("up", "--only", "cache", check=False, extra_env=unset)
    assert gone.returncode == 4
    assert (f"cannot reach the Docker engine at unix://{gone_socket} (context e2e-gone)"
            in gone.stderr), gone.stderr
    assert "hint:" in gone.stderr and "Traceback" not in gone.stderr
    chosen = project.run("ports", "--json", extra_env={**unset, "DOCKER_CONTEXT": "e2e-ctx"})
    assert [row["service"] for row in json.loads(chosen.stdout)] == ["redis"]


def test_ipv6_wildcard_bind_is_probed_and_reported_on_ipv6(project):
    """DEVENV_BIND=:: publishes on [::] only: devenv waits on [::1] and reports it."""
    up = project.run("up", "--only", "cache", "--timeout", "30",
                     extra_env={"DEVENV_BIND": "::"})
    redis = project.ports()["redis"]
    assert redis["url"] == f"redis://[::1]:{redis['port']}" and redis["state"] == "ready"
    assert f"redis://[::1]:{redis['port']}" in up.stdout
    assert redis_ping("::1", redis["port"]) == "+PONG"
    env = project.run("ports", "--env").stdout
    assert f"REDIS_URL='redis://[::1]:{redis['port']}'" in env
