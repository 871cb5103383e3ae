"""Everyday commands against the real engine: status, logs, restart, doctor, config."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from checks import redis_ping

pytestmark = pytest.mark.e2e


def test_status_reports_state_health_url_uptime_restarts(project):
    project.run("up", "--only", "db,cache")
    rows = {r["service"]: r for r in json.loads(project.run("status", "--json").stdout)}
    assert set(rows) == {"postgres", "redis"}
    for row in rows.values():
        assert row["schema"] == "devenv.status/1"
        assert row["state"] == "running" and row["restarts"] == 0
        assert row["uptime_seconds"] >= 0 and row["health"] in ("starting", "healthy")
        assert row["url"].endswith(str(row["port"])) or f":{row['port']}/" in row["url"]
    text = project.run("status").stdout
    assert text.splitlines()[0].split() == ["SERVICE", "STATE", "HEALTH", "URL", "UPTIME",
                                            "RESTARTS"]
    subprocess.run(["docker", "stop", f"{project.name}-redis-1"], check=True,
                   capture_output=True)
    rows = {r["service"]: r for r in json.loads(project.run("status", "--json").stdout)}
    assert rows["redis"]["state"] == "exited" and rows["redis"]["uptime_seconds"] is None


def test_logs_by_alias_with_tail(project):
    project.run("up", "--only", "db,cache")
    out = project.run("logs", "cache", "--tail", "5").stdout.splitlines()
    assert out and all(line.startswith("redis-1") for line in out)
    assert len(out) <= 5
    both = project.run("logs", "db", "redis").stdout
    assert "postgres-1" in both and "redis-1" in both
    bad = project.run("logs", "nosuch", check=False)
    assert bad.returncode == 2 and "unknown service 'nosuch'" in bad.stderr


def test_logs_follow_streams_until_stopped(project):
    project.run("up", "--only", "cache")
    from conftest import devenv_command

    proc = subprocess.Popen([devenv_command(), "logs", "-f", "cache"], cwd=project.path,
                            env={**__import__("os").environ, **project.env},
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("redis-1")
        assert proc.poll() is None  # still following
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_restart_waits_and_reports_urls(project):
    project.run("up", "--only", "db,cache")
    before = {c["Names"]: c["Status"] for c in project.containers()}
    result = project.run("restart", "cache")
    assert "restarting redis" in result.stderr
    assert result.stdout.splitlines()[1].split()[0] == "redis"
    assert "ready" in result.stdout
    port = project.ports()["redis"]["port"]
    assert redis_ping("127.0.0.1", port) == "+PONG"
    assert len(before) == 2
    missing = project.run("restart", "api", check=False)
    assert missing.returncode == 2 and "not running: api" in missing.stderr


def test_doctor_checks_and_names_port_holders(project):
    port = int(project.env["DEVENV_POSTGRES_PORT"])
    (project.path / ".env").write_text("DEVENV_POSTGRES_PROT=1\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        result = project.run("doctor", "--json")
    report = json.loads(result.stdout)
    assert report["schema"] == "devenv.doctor/1" and report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["engine"]["status"] == "ok" and "Docker Engine" in checks["engine"]["detail"]
    assert checks["compose"]["status"] == "ok" and "2." in checks["compose"]["detail"]
    assert "start_interval" in checks["api level"]["detail"]
    assert checks["port postgres"]["status"] == "warn"
    assert f"{port} is taken by" in checks["port postgres"]["detail"]
    assert "DEVENV_POSTGRES_PORT" in checks[".env DEVENV_POSTGRES_PROT"]["fix"]
    assert any(name.startswith("disk") for name in checks)
    broken = project.run("doctor", check=False, extra_env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert broken.returncode == 1 and "fail  engine" in broken.stdout


def test_config_shows_sources_and_masks_secrets(project):
    (project.path / ".env").write_text("DEVENV_POSTGRES_PASSWORD=s3cret-pw\n"
                                       "DEVENV_WAIT_TIMEOUT=77\n")
    project.env.pop("DEVENV_WAIT_TIMEOUT")
    data = json.loads(project.run("-p", "flagged", "config", "--json",
                                  extra_env={"DEVENV_PROJECT": "fromenv"}).stdout)
    settings = {s["key"]: s for s in data["settings"]}
    assert data["schema"] == "devenv.config/1"
    assert settings["DEVENV_PROJECT"] == {"key": "DEVENV_PROJECT", "value": "flagged",
                                          "source": "flag"}
    assert settings["DEVENV_WAIT_TIMEOUT"]["source"] == ".env"
    assert settings["DEVENV_POSTGRES_PASSWORD"]["value"] == "***"
    assert settings["DEVENV_BIND"]["source"] == "default"


def test_ports_checks_that_services_answer(project):
    project.run("up", "--only", "db,cache")
    rows = project.ports()
    assert rows["redis"]["state"] == "ready" and rows["postgres"]["state"] == "ready"
    subprocess.run(["docker", "pause", f"{project.name}-redis-1"], check=True,
                   capture_output=True)
    try:
        rows = project.ports()
        assert rows["redis"]["state"].startswith("paused, not answering (PING")
        assert rows["postgres"]["state"] == "ready"
    finally:
        subprocess.run(["docker", "unpause", f"{project.name}-redis-1"], capture_output=True)
