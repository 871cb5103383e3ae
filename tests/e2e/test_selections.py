"""Every alias alone comes up and answers, in a fresh directory (one project, in turn)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from checks import http_get, psql, redis_ping
from conftest import Project

pytestmark = pytest.mark.e2e

#: alias -> the services it brings (itself and what it needs)
ALIASES = {
    "db": {"postgres"},
    "cache": {"redis"},
    "admin": {"adminer", "postgres"},
    "metrics": {"prometheus"},
    "dashboards": {"grafana", "prometheus"},
    "backend": {"api", "postgres", "redis"},
}
HTTP_PATHS = {"api": "/health", "adminer": "/", "prometheus": "/-/healthy",
              "grafana": "/api/health"}


def answers(project: Project, service: str, url: str) -> bool:
    if service == "postgres":
        env = dict(line.split("=", 1) for line in project.run("ports", "--env").stdout.split())
        return psql(env["DATABASE_URL"].strip("'"), "select 1") == "1"
    if service == "redis":
        parsed = urlparse(url)
        return redis_ping(parsed.hostname, parsed.port) == "+PONG"
    base = url.split("?")[0].rstrip("/")
    return http_get(base + HTTP_PATHS[service])[0] == 200


def test_each_alias_alone_comes_up_and_answers(project):
    for alias, services in ALIASES.items():
        up = project.run("up", "--only", alias, check=False)
        assert up.returncode == 0, (alias, up.stderr)
        live = project.ports()
        assert set(live) == services, (alias, live)
        for service, row in live.items():
            assert answers(project, service, row["url"]), (alias, service, row)
        project.run("down")
