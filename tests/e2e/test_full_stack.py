"""Day one: the API, metrics, dashboards and Adminer wired together, on a real engine."""

from __future__ import annotations

import http.cookiejar
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from checks import http_get, http_json

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def prometheus_targets(url: str) -> dict[str, str]:
    data = http_json(url + "/api/v1/targets")
    return {t["labels"]["job"]: t["health"] for t in data["data"]["activeTargets"]}


def wait_for(predicate, timeout: float = 30, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def exec_in(container: str, *cmd: str) -> str:
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True,
                          check=True).stdout


def test_full_stack_is_wired_together(project):
    project.run("up")
    rows = project.ports()
    # the reference API reports database and cache separately
    health = http_json(rows["api"]["url"] + "/health")
    assert health["database"]["status"] == "ok" and health["cache"]["status"] == "ok"
    # Prometheus scrapes the API at its in-network address
    prom = rows["prometheus"]["url"]
    targets = wait_for(lambda: set((t := prometheus_targets(prom)).values()) == {"up"} and t)
    assert targets == {"api": "up", "prometheus": "up"}
    status, body = http_get(rows["api"]["url"] + "/metrics")
    assert status == 200 and "# TYPE http_requests_total counter" in body
    # Grafana's provisioning is valid and where Grafana reads it
    grafana = f"{project.name}-grafana-1"
    ds = yaml.safe_load(exec_in(grafana, "cat",
                                "/etc/grafana/provisioning/datasources/prometheus.yml"))
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(exec_in(grafana, "cat",
                                      "/etc/grafana/provisioning/dashboards/devenv.yml"))
    path = provider["providers"][0]["options"]["path"]
    dashboard = json.loads(exec_in(grafana, "cat", f"{path}/api.json"))
    assert dashboard["uid"] == "devenv-api" and dashboard["panels"]
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert "http_requests_total" in exprs
    env = json.loads(subprocess.run(["docker", "inspect", grafana], capture_output=True,
                                    text=True, check=True).stdout)[0]["Config"]["Env"]
    env = dict(e.split("=", 1) for e in env)
    assert env["GF_SERVER_ROOT_URL"] == rows["grafana"]["url"] + "/"
    password = env["GF_SECURITY_ADMIN_PASSWORD"]
    assert password and password != "admin"
    secrets = json.loads((project.path / ".devenv" / "secrets.json").read_text())
    assert secrets[project.name]["grafana_admin_password"] == password
    assert oct((project.path / ".devenv" / "secrets.json").stat().st_mode & 0o777) == "0o600"
    shown = project.run("ports", "--show-secrets").stdout
    assert password in shown
    assert password not in project.run("ports").stdout


def adminer_login(url: str, server: str, user: str, password: str, db: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = url.split("?")[0]
    try:  # the session cookie and the pre-filled form (403 until logged in)
        opener.open(url, timeout=10).read()
    except urllib.error.HTTPError as exc:
        assert exc.code == 403, exc.code
    form = urllib.parse.urlencode({"auth[driver]": "pgsql", "auth[server]": server,
                                   "auth[username]": user, "auth[password]": password,
                                   "auth[db]": db}).encode()
    try:
        with opener.open(base, data=form, timeout=10) as response:
            return response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.read().decode(errors="replace")


def test_adminer_is_one_click_from_the_database(project):
    project.env["DEVENV_POSTGRES_PASSWORD"] = 'p@ss$w"o\'rd #1:x'
    project.run("up", "--only", "admin")
    url = project.ports()["adminer"]["url"]
    assert "pgsql=postgres" in url and "username=postgres" in url and \
        "db=cirkelline_agents" in url
    page = adminer_login(url, "postgres", "postgres", 'p@ss$w"o\'rd #1:x', "cirkelline_agents")
    assert "Logout" in page and "cirkelline_agents" in page
    wrong = adminer_login(url, "postgres", "postgres", "wrong", "cirkelline_agents")
    assert "Logout" not in wrong


def test_api_from_the_teams_image(project, engine):
    project.run("up", "--only", "db,cache")
    tag = f"devenv-test/team-api:{project.name}"
    subprocess.run(["docker", "build", "-q", "-t", tag, "--build-arg",
                    "BASE_IMAGE=devenv-test/base:bookworm", str(ROOT / "templates" / "api")],
                   check=True, capture_output=True, env={"DOCKER_BUILDKIT": "0",
                                                         "PATH": "/usr/bin:/usr/local/bin"})
    try:
        project.env["DEVENV_API_IMAGE"] = tag
        project.run("up", "--only", "api")
        api = [c for c in project.containers() if "-api-" in c["Names"]][0]
        assert api["Image"] == tag
        assert http_json(project.ports()["api"]["url"] + "/health")["status"] == "ok"
    finally:
        project.cleanup()
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_api_built_from_the_teams_source_and_rebuilt_on_change(project):
    source = project.path / "backend"
    shutil.copytree(ROOT / "templates" / "api", source,
                    ignore=shutil.ignore_patterns("__pycache__"))
    dockerfile = source / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "ARG BASE_IMAGE=python:3.12-slim", "ARG BASE_IMAGE=devenv-test/base:bookworm"))
    project.env["DEVENV_API_BUILD"] = str(source)
    first = project.run("up", "--only", "api")
    assert "(building api)" in first.stderr
    url = project.ports()["api"]["url"]
    assert http_json(url + "/")["version"] != "team-v2"
    app = source / "app.py"
    app.write_text(re.sub(r'VERSION = "[^"]*"', 'VERSION = "team-v2"', app.read_text()))
    second = project.run("up", "--only", "api")
    assert "(building api)" in second.stderr
    assert http_json(project.ports()["api"]["url"] + "/")["version"] == "team-v2"
    third = project.run("up", "--only", "api")
    assert "already up to date" in third.stderr


def test_only_db_cache_renders_no_metrics_or_dashboard_files(project):
    project.run("up", "--only", "db,cache")
    compose = project.path / "compose"
    assert not (compose / "prometheus").exists() and not (compose / "grafana").exists()
    project.run("up", "--only", "metrics")
    prom = yaml.safe_load((compose / "prometheus" / "prometheus.yml").read_text())
    assert [j["job_name"] for j in prom["scrape_configs"]] == ["prometheus"]
    # adding the API later: Prometheus's config follows and it reloads without a restart
    prom_id = [c["ID"] for c in project.containers() if "-prometheus-" in c["Names"]][0]
    project.run("up", "--only", "api")
    prom = yaml.safe_load((compose / "prometheus" / "prometheus.yml").read_text())
    assert [j["job_name"] for j in prom["scrape_configs"]] == ["prometheus", "api"]
    assert prom_id in [c["ID"] for c in project.containers()]
    url = project.ports()["prometheus"]["url"]
    assert wait_for(lambda: prometheus_targets(url).get("api") == "up")


def test_project_templates_override_and_broken_ones_fail_clearly(project):
    templates = project.path / "templates" / "services"
    templates.mkdir(parents=True)
    builtin = (ROOT / "templates" / "services" / "redis.yml.j2").read_text()
    (templates / "redis.yml.j2").write_text(builtin.replace(
        '    image: {{ svc.image | q }}', '    image: {{ svc.image | q }}\n    labels:\n'
        '      team.owner: "platform"'))
    first = project.run("render", "--only", "cache").stdout
    assert "created    compose/docker-compose.yml" in first
    assert "identical  compose/docker-compose.yml" in project.run("render", "--only",
                                                                 "cache").stdout
    project.run("up", "--only", "cache")
    labels = json.loads(subprocess.run(["docker", "inspect", f"{project.name}-redis-1"],
                                       capture_output=True, text=True).stdout)[0]["Config"][
        "Labels"]
    assert labels["team.owner"] == "platform"
    (templates / "redis.yml.j2").write_text("  redis:\n    image: {{ svc.image | q }\n")
    broken = project.run("render", "--only", "cache", check=False)
    assert broken.returncode == 2
    assert "redis.yml.j2, line 2" in broken.stderr and "Traceback" not in broken.stderr
    assert "team.owner" in (project.path / "compose" / "docker-compose.yml").read_text()
