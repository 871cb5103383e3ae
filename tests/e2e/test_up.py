"""`devenv up` end to end on a real engine: the six services answer where devenv says."""

from __future__ import annotations

import json
import socket
import subprocess
from urllib.parse import urlparse

import pytest
from checks import http_get, http_json, psql, redis_ping
from conftest import new_project

pytestmark = pytest.mark.e2e


def env_lines(text: str) -> dict[str, str]:
    return {k: v.strip("'") for k, v in (line.split("=", 1) for line in text.splitlines()
                                          if line and not line.startswith("#"))}


def test_full_stack_answers_at_the_reported_urls(tmp_path, engine):
    # the spec's default ports; a project name of its own, so that a developer's own
    # `cirkelline` stack on this machine is never touched (its ports would simply move)
    p = new_project(tmp_path, default_ports=True)
    try:
        up = p.run("up")
        rows = {line.split()[0]: line.split()[1] for line in up.stdout.splitlines()[1:]}
        assert set(rows) == {"api", "postgres", "redis", "adminer", "prometheus", "grafana"}
        assert "ready" in up.stdout and "not ready" not in up.stdout
        live = p.ports()
        assert {name: row["url"] for name, row in live.items()} == rows
        # grafana's 3000 is reserved for the frontend: it moved, and the run said why
        assert f"grafana: 3000 is reserved for the frontend, using {live['grafana']['port']}" \
            in up.stderr
        pg = live["postgres"]
        assert rows["postgres"] == \
            f"postgresql://postgres:***@127.0.0.1:{pg['port']}/cirkelline_agents"

        health = http_json(rows["api"] + "/health")
        assert health["database"]["status"] == "ok" and health["cache"]["status"] == "ok"
        env = env_lines(p.run("ports", "--env").stdout)
        assert psql(env["DATABASE_URL"], "select 1") == "1"
        url = urlparse(rows["redis"])
        assert redis_ping(url.hostname, url.port) == "+PONG"
        assert http_get(rows["adminer"].split("?")[0])[0] == 200
        # the reported URL opens Adminer's login form pre-filled (Adminer answers it with 403
        # until someone logs in)
        _status, body = http_get(rows["adminer"])
        assert 'name="auth[server]" value="postgres"' in body
        assert 'value="cirkelline_agents"' in body
        assert http_get(rows["prometheus"] + "/-/healthy")[0] == 200
        assert http_json(rows["grafana"] + "/api/health")["database"] == "ok"
        # every published port is bound to loopback only
        for c in p.containers():
            assert "0.0.0.0" not in c["Ports"], c["Ports"]
        # a project other than the default gets a network of its own
        networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                                  capture_output=True, text=True).stdout.split()
        assert p.name in networks
    finally:
        p.cleanup()


def test_only_db_cache_gives_exactly_two_containers(project):
    up = project.run("up", "--only", "db,cache")
    services = sorted(c["Labels"].split("com.docker.compose.service=")[1].split(",")[0]
                      for c in project.containers())
    assert services == ["postgres", "redis"]
    assert "adding" not in up.stderr


def test_dependencies_follow_and_are_named(project):
    up = project.run("up", "--only", "admin")
    assert "adding postgres (needed by adminer)" in up.stderr
    assert len(project.containers()) == 2


def test_unknown_service_exits_2_naming_it(project):
    result = project.run("up", "--only", "db,mysql", check=False)
    assert result.returncode == 2
    assert "unknown service 'mysql'" in result.stderr and "valid names" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.containers() == []


def test_taken_port_moves_and_the_service_answers_there(project):
    held = int(project.env["DEVENV_POSTGRES_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", held))
        holder.listen()
        up = project.run("up", "--only", "db")
        assert f"postgres: {held} is taken by" in up.stderr
        assert f"using {held + 1}" in up.stderr
        row = project.ports()["postgres"]
        assert row["port"] == held + 1 and row["moved"] is True
        assert f"(was {held})" in up.stdout
        env = env_lines(project.run("ports", "--env").stdout)
        assert f":{held + 1}/" in env["DATABASE_URL"]
        assert psql(env["DATABASE_URL"], "select 42") == "42"


def test_ports_json_agrees_with_docker_ps(project):
    project.run("up", "--only", "db,cache")
    rows = project.ports()
    for c in project.containers():
        service = c["Names"].rsplit("-", 2)[-2]
        assert f"127.0.0.1:{rows[service]['port']}->" in c["Ports"]
        assert isinstance(rows[service]["port"], int)
        assert rows[service]["state"] == "ready"  # answering its protocol now
        assert {"service", "url", "host", "port", "state"} <= set(rows[service])


def test_ports_with_nothing_running(project):
    result = project.run("ports", "--json")
    assert json.loads(result.stdout) == []
    plain = project.run("ports")
    assert plain.stdout == "" and "nothing of project" in plain.stderr


def test_data_survives_down_and_up_but_not_down_volumes(project):
    project.run("up", "--only", "db")
    url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
    psql(url, "create table kept (v text); insert into kept values ('still here')")
    down = project.run("down")
    assert "data kept" in down.stderr
    assert project.containers() == []
    project.run("up", "--only", "db")
    assert psql(url, "select v from kept") == "still here"
    project.run("down", "--volumes", "--yes")
    project.run("up", "--only", "db")
    result = subprocess.run(["psql", url, "-X", "-tA", "-c", "select v from kept"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "does not exist" in result.stderr


def test_down_volumes_in_a_script_needs_yes(project):
    project.run("up", "--only", "cache")
    result = project.run("down", "--volumes", check=False)
    assert result.returncode == 2 and "--yes" in result.stderr
    assert len(project.containers()) == 1  # nothing was removed


def test_second_up_recreates_nothing(project):
    project.run("up", "--only", "db,cache")
    before = {c["ID"] for c in project.containers()}
    again = project.run("up", "--only", "db,cache")
    assert "already up to date" in again.stderr
    assert {c["ID"] for c in project.containers()} == before


def test_works_from_an_empty_directory_with_builtin_templates(project):
    project.run("render", "--only", "db")
    compose = project.path / "compose" / "docker-compose.yml"
    assert compose.exists() and not (project.path / "templates").exists()
    result = subprocess.run(["docker", "compose", "-f", str(compose), "config", "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_network_made_outside_compose_is_joined_and_kept(project):
    name = f"{project.name}-shared"
    subprocess.run(["docker", "network", "create", name], check=True, capture_output=True)
    try:
        project.env["DEVENV_NETWORK"] = name
        project.run("up", "--only", "cache")
        compose = (project.path / "compose" / "docker-compose.yml").read_text()
        assert "external: true" in compose
        inspect = subprocess.run(["docker", "inspect", f"{project.name}-redis-1", "--format",
                                  "{{json .NetworkSettings.Networks}}"], capture_output=True,
                                 text=True, check=True).stdout
        assert name in json.loads(inspect)
        project.run("down")
        left = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True).stdout.split()
        assert name in left  # not ours to remove
    finally:
        subprocess.run(["docker", "network", "rm", name], capture_output=True)
