"""`devenv ls` on the real engine: two projects listed from a directory that is no project,
a Compose project that only claims a devenv directory left out. Two stacks of Redis only."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import time

import pytest
from conftest import TEST_IMAGES, devenv_command

pytestmark = pytest.mark.e2e


def ls(where, *args: str) -> subprocess.CompletedProcess[str]:
    """devenv ls run where no project is: no DEVENV_* setting, a broken .env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVENV_")}
    return subprocess.run([devenv_command(), "ls", *args], cwd=where, env=env,
                          capture_output=True, text=True, timeout=60)


def test_ls_lists_every_devenv_project_from_anywhere(make_project, tmp_path):
    a, b = make_project(), make_project()
    began = time.time()
    for p in (a, b):
        p.run("up", "--only", "cache")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("this is not a dotenv line\n")
    # a container of another tool that names a's compose/ as its directory: not devenv's
    foreign = f"{a.name}x"
    subprocess.run(["docker", "run", "-d", "--name", foreign,
                    "--label", f"com.docker.compose.project={foreign}",
                    "--label", "com.docker.compose.service=web",
                    "--label", f"com.docker.compose.project.working_dir={a.path / 'compose'}",
                    TEST_IMAGES["DEVENV_REDIS_IMAGE"]], check=True, capture_output=True)
    try:
        result = ls(elsewhere, "--json")
        assert result.returncode == 0, result.stderr
        listed = {item["project"]: item for item in json.loads(result.stdout)}
        assert foreign not in listed
        for p in (a, b):
            item = listed[p.name]
            assert item["schema"] == "devenv.ls/1"
            assert item["directory"] == str(p.path.resolve())
            assert item["running"] == ["redis"]
            [redis] = item["services"]
            assert {port["port"] for port in redis["ports"]} == {int(p.env["DEVENV_REDIS_PORT"])}
            assert redis["ports"][0]["container_port"] == 6379
            started = calendar.timegm(time.strptime(item["started_at"], "%Y-%m-%dT%H:%M:%SZ"))
            assert began - 2 <= started <= time.time() + 1, item["started_at"]
            assert item["tunnels"] == []

        table = ls(elsewhere)
        assert table.returncode == 0, table.stderr
        lines = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
        assert table.stdout.splitlines()[0].split() == [
            "PROJECT", "DIRECTORY", "SERVICES", "STARTED", "TUNNELS"]
        assert lines[a.name][1:3] == [str(a.path.resolve()),
                                      f"redis:{a.env['DEVENV_REDIS_PORT']}"]
        assert foreign not in lines

        b.run("down")
        after = {item["project"] for item in json.loads(ls(elsewhere, "--json").stdout)}
        assert a.name in after and b.name not in after
    finally:
        subprocess.run(["docker", "rm", "-f", foreign], capture_output=True)
