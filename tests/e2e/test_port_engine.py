"""The port engine on a real engine: reserved, sticky, own/other/host, race, side by side."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from urllib.parse import urlparse

import pytest
from checks import http_get, psql, redis_ping
from conftest import popen_paused
from test_up import env_lines

pytestmark = pytest.mark.e2e


def listen(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_reserved_port_is_avoided_with_nothing_listening(make_project):
    p = make_project()
    p.env["DEVENV_RESERVED_PORTS"] = p.env["DEVENV_REDIS_PORT"]
    port = int(p.env["DEVENV_REDIS_PORT"])
    up = p.run("up", "--only", "cache")
    assert f"redis: {port} is reserved for a host app (DEVENV_RESERVED_PORTS), using " \
           f"{port + 1}" in up.stderr
    assert p.ports()["redis"]["port"] == port + 1


def test_sticky_after_the_original_frees(project):
    port = int(project.env["DEVENV_POSTGRES_PORT"])
    with listen(port):
        project.run("up", "--only", "db")
    assert project.ports()["postgres"]["port"] == port + 1
    project.run("down")
    # the original port is free now, but the remembered one wins
    again = project.run("up", "--only", "db")
    assert project.ports()["postgres"]["port"] == port + 1
    assert "as last time" in again.stderr
    reset = project.run("up", "--only", "db", "--reset-ports")
    assert "forgetting remembered ports" in reset.stderr
    assert project.ports()["postgres"]["port"] == port


def test_changed_configured_port_wins_over_memory(project):
    port = int(project.env["DEVENV_REDIS_PORT"])
    with listen(port):
        project.run("up", "--only", "cache")
    assert project.ports()["redis"]["port"] == port + 1
    project.env["DEVENV_REDIS_PORT"] = str(port + 5)
    project.run("up", "--only", "cache")
    row = project.ports()["redis"]
    assert row["port"] == port + 5
    assert redis_ping("127.0.0.1", row["port"]) == "+PONG"


def test_strict_ports_fails_naming_the_holder(project):
    port = int(project.env["DEVENV_POSTGRES_PORT"])
    with listen(port):
        result = project.run("up", "--only", "db", "--strict-ports", check=False)
    assert result.returncode == 5
    assert f"postgres: {port} is taken by" in result.stderr
    assert "python" in result.stderr or "another process" in result.stderr
    assert project.containers() == []


def test_other_projects_container_is_avoided_and_named(make_project):
    first = make_project()
    first.run("up", "--only", "cache")
    second = make_project(DEVENV_REDIS_PORT=first.env["DEVENV_REDIS_PORT"])
    up = second.run("up", "--only", "cache")
    port = int(first.env["DEVENV_REDIS_PORT"])
    assert f"redis: {port} is taken by container {first.name}-redis-1 (project " \
           f"{first.name})" in up.stderr
    # a stopped container's port counts too: it comes back when started
    subprocess.run(["docker", "stop", f"{first.name}-redis-1"], check=True,
                   capture_output=True)
    third = make_project(DEVENV_REDIS_PORT=str(port))
    up = third.run("up", "--only", "cache")
    assert f"(project {first.name}, stopped)" in up.stderr


def test_up_on_a_running_stack_recreates_nothing_and_only_leaves_the_rest(project):
    project.run("up", "--only", "db,cache")
    ids = {c["Names"]: c["ID"] for c in project.containers()}
    ports = {k: v["port"] for k, v in project.ports().items()}
    project.run("up", "--only", "admin")
    after = {c["Names"]: c["ID"] for c in project.containers()}
    for name, cid in ids.items():
        assert after[name] == cid, name
    assert {k: v["port"] for k, v in project.ports().items() if k in ports} == ports
    assert len(after) == 3


def test_race_moves_only_that_service(project, tmp_path):
    seam = tmp_path / "race"
    proc = popen_paused(project, seam, "up", "--only", "db,cache")
    try:
        for _ in range(300):
            if seam.with_suffix(".plan").exists():
                break
            time.sleep(0.05)
        plan = json.loads(seam.with_suffix(".plan").read_text())
        # take postgres's planned port after planning, before start
        with listen(plan["postgres"]):
            seam.with_suffix(".go").write_text("go")
            out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"postgres: {plan['postgres']} was taken after planning; moving it" in err
    rows = project.ports()
    assert rows["postgres"]["port"] != plan["postgres"]
    assert rows["redis"]["port"] == plan["redis"]
    url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
    assert psql(url, "select 1") == "1"


def test_two_projects_side_by_side(make_project):
    a = make_project()
    b = make_project()
    # both want the same ports
    for key in [k for k in a.env if k.endswith("_PORT")]:
        b.env[key] = a.env[key]
    a.run("up", "--only", "db,cache,admin")
    b.run("up", "--only", "db,cache,admin")
    pa, pb = a.ports(), b.ports()
    assert not {r["port"] for r in pa.values()} & {r["port"] for r in pb.values()}
    for project, rows in ((a, pa), (b, pb)):
        url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
        assert psql(url, "select current_database()") == "cirkelline_agents"
        assert redis_ping("127.0.0.1", rows["redis"]["port"]) == "+PONG"
        assert http_get(rows["adminer"]["url"].split("?")[0])[0] == 200
    nets = {}
    for project in (a, b):
        inspect = subprocess.run(["docker", "inspect", f"{project.name}-postgres-1"],
                                 capture_output=True, text=True, check=True).stdout
        info = json.loads(inspect)[0]
        nets[project.name] = set(info["NetworkSettings"]["Networks"])
        vols = {m["Name"] for m in info["Mounts"] if m["Type"] == "volume"}
        assert vols == {f"{project.name}_postgres-data"}
    assert nets[a.name] == {a.name} and nets[b.name] == {b.name}
    # write in one, not visible in the other
    url_a = env_lines(a.run("ports", "--env").stdout)["DATABASE_URL"]
    url_b = env_lines(b.run("ports", "--env").stdout)["DATABASE_URL"]
    psql(url_a, "create table only_a (x int)")
    result = subprocess.run(["psql", url_b, "-X", "-tA", "-c", "select * from only_a"],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_ports_env_urls_connect_and_app_env_is_private(project):
    project.run("up", "--only", "db,cache")
    env = env_lines(project.run("ports", "--env").stdout)
    assert set(env) == {"DATABASE_URL", "REDIS_URL"}
    assert psql(env["DATABASE_URL"], "select 7") == "7"
    redis = urlparse(env["REDIS_URL"])
    assert redis_ping(redis.hostname, redis.port) == "+PONG"
    app_env = project.path / ".devenv" / "app.env"
    assert oct(app_env.stat().st_mode & 0o777) == "0o600"
    assert env_lines(app_env.read_text()) == env


def test_ports_plan_shows_the_spec_and_the_conflicts(project):
    text = project.run("ports", "--plan").stdout
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert set(lines) >= {"api", "postgres", "redis", "adminer", "prometheus", "grafana",
                          "frontend", "metro", "expo"}
    assert "3100" in lines["grafana"]  # staging
    assert "host app" in lines["frontend"]
    rows = json.loads(project.run("ports", "--plan", "--json").stdout)
    assert all(r["schema"] == "devenv.plan/1" for r in rows)


def tcp_forward(listen_host: str, target_unix: str) -> tuple[int, threading.Event]:
    """A TCP front for the local engine's unix socket: an engine reached over the network."""
    server = socket.socket()
    server.bind((listen_host, 0))
    server.listen()
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                continue
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(target_unix)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], stop


def host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.2"


def test_remote_engine_checks_its_containers_and_survives_a_hidden_port(project):
    address = host_address()
    port, stop = tcp_forward(address, "/var/run/docker.sock")
    remote = {"DOCKER_HOST": f"tcp://{address}:{port}"}
    held = int(project.env["DEVENV_REDIS_PORT"])
    try:
        with listen(held):
            # the engine's host is "elsewhere": devenv cannot see this listener, Compose then
            # fails to publish the port, and the race handling moves redis
            up = project.run("up", "--only", "cache", extra_env=remote)
        assert "ports are checked against its containers only" in up.stderr
        assert f"redis: {held} was taken after planning; moving it" in up.stderr
        rows = {r["service"]: r for r in json.loads(
            project.run("ports", "--json", extra_env=remote).stdout)}
        assert rows["redis"]["port"] != held
        assert redis_ping("127.0.0.1", rows["redis"]["port"]) == "+PONG"
    finally:
        project.run("down", extra_env=remote, check=False)
        stop.set()
