"""Host apps under devenv with the real dev servers (scripts/install-devservers.sh): Vite as
the web frontend beside a real Redis, Metro as the bundler. Each is started by the installed
devenv on a planned port, answers there, and leaves no process behind after `down`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from checks import http_get
from conftest import ROOT, Project, new_project

DEVSERVERS = ROOT / "testbed" / "devservers" / "node_modules"


@pytest.fixture(scope="module")
def devservers() -> Path:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install-devservers.sh")],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not (DEVSERVERS / ".bin" / "vite").exists():
        pytest.fail(f"the dev servers did not install: {done.stderr[-2000:]}")
    return DEVSERVERS


@pytest.fixture
def app_project(tmp_path: Path, engine: str, devservers: Path) -> Iterator[Project]:
    p = new_project(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()
        assert not group_members(p), "a process of a host app outlived `down`"


def group_members(project: Project) -> list[int]:
    """Live (not zombie) processes whose environment names this project's directory: what
    devenv started for it (the app's own children included)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except (OSError, IndexError):
            continue
        if stat[0] not in ("Z", "X") and cwd.startswith(str(project.path)):
            found.append(int(entry))
    return found


def record(project: Project, name: str) -> dict:
    path = project.path / ".devenv" / "hostapps" / project.name / f"{name}.json"
    return json.loads(path.read_text())


def hold(port: int) -> subprocess.Popen[bytes] | None:
    """A process of the user's listening on `port` (None when something already does)."""
    code = ("import socket,sys,time\ns=socket.socket()\n"
            f"s.bind(('127.0.0.1',{port}))\ns.listen()\nprint('ok',flush=True)\n"
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ok":
        proc.wait()
        return None
    return proc


def test_vite_frontend_beside_redis_on_a_planned_port(app_project: Project) -> None:
    p = app_project
    (p.path / "web").mkdir()
    (p.path / "web" / "node_modules").symlink_to(DEVSERVERS)
    (p.path / "web" / "index.html").write_text("<!doctype html><title>t</title><p>hi</p>\n")
    (p.path / "devenv.toml").write_text(
        "[host_apps.frontend]\n"
        "command = \"env > seen.env; exec node_modules/.bin/vite --port $PORT --strictPort "
        "--host 127.0.0.1\"\n"
        "cwd = \"web\"\nprobe = \"http:/\"\nneeds = [\"cache\"]\naliases = [\"web\"]\n"
        "[host_apps.frontend.environment]\nBROWSER = \"none\"\n")
    holder = hold(3000)
    try:
        up = p.run("up", "--only", "cache,frontend")
        # 3000 is held (by this test's process, or by whatever held it already)
        assert "frontend: 3000 is taken by" in up.stderr and ", using " in up.stderr
        rows = p.ports()
        frontend = rows["frontend"]
        assert frontend["port"] != 3000 and frontend["state"] == "ready"
        status, body = http_get(frontend["url"])
        assert status == 200 and "<p>hi</p>" in body
        seen = dict(line.split("=", 1) for line in
                    (p.path / "web" / "seen.env").read_text().splitlines() if "=" in line)
        assert seen["PORT"] == str(frontend["port"])
        assert seen["REDIS_URL"] == rows["redis"]["url"]
        assert seen["BROWSER"] == "none"

        again = p.run("up", "--only", "frontend")  # running and unchanged: left alone
        assert "starting frontend" not in again.stderr
        first = record(p, "frontend")

        os.kill(first["pid"], 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status_rows = {r["service"]: r for r in
                           json.loads(p.run("status", "--json").stdout)}
            if status_rows["frontend"]["state"] != "running":
                break
            time.sleep(0.2)
        assert status_rows["frontend"]["state"] == "exited"
        assert status_rows["frontend"]["exit_code"] == -9

        p.run("restart", "frontend")
        assert http_get(p.ports()["frontend"]["url"])[0] == 200
        assert "VITE" in p.run("logs", "frontend").stdout

        down = p.run("down")
        assert "frontend" in down.stderr
        assert not group_members(p)
        if holder is not None:
            assert holder.poll() is None, "down ended a process devenv did not start"
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


def test_metro_bundles_on_its_planned_port(app_project: Project) -> None:
    p = app_project
    (p.path / "node_modules").symlink_to(DEVSERVERS)
    (p.path / "index.js").write_text("console.log('from metro');\n")
    (p.path / "package.json").write_text('{"name": "app", "private": true}\n')
    (p.path / "metro.config.js").write_text(
        "const fs = require('fs'), path = require('path');\n"
        "module.exports = {watchFolders: "
        "[fs.realpathSync(path.join(__dirname, 'node_modules'))]};\n")
    (p.path / "devenv.toml").write_text(
        "[host_apps.metro]\n"
        "command = \"exec node_modules/.bin/metro serve --port $PORT\"\n"
        "probe = \"http:/index.bundle?platform=web&dev=true\"\n")
    p.run("up", "--only", "metro", "--timeout", "120")
    metro = p.ports()["metro"]
    status, body = http_get(f"{metro['url']}/index.bundle?platform=web&dev=true", timeout=30)
    assert status == 200 and "from metro" in body
    p.run("down")
    assert not group_members(p)
    with socket.socket() as s:  # its port is free again (a TIME_WAIT of the test's own
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # request aside)
        s.bind(("127.0.0.1", metro["port"]))


def test_expo_cli_offline_as_the_simulator_with_the_packager_host_on_the_lan(
        app_project: Project) -> None:
    p = app_project
    expo = DEVSERVERS.parent / "expo" / "node_modules"
    (p.path / "node_modules").symlink_to(expo)
    (p.path / "package.json").write_text('{"name": "app", "private": true, '
                                         '"main": "index.js"}\n')
    (p.path / "app.json").write_text('{"expo": {"name": "app", "slug": "app"}}\n')
    (p.path / "index.js").write_text("import { registerRootComponent } from 'expo';\n"
                                     "registerRootComponent(() => null);\n")
    (p.path / "devenv.toml").write_text(
        "[host_apps.expo]\n"
        "command = \"env > seen.env; exec node_modules/.bin/expo start --offline --port $PORT\"\n"
        "probe = \"http:/status\"\n"
        "[host_apps.expo.environment]\nCI = \"1\"\n")
    p.run("up", "--only", "expo", "--lan", "expo", "--timeout", "120")
    row = p.ports()["expo"]
    status, body = http_get(f"{row['url']}/status")
    assert status == 200 and "packager-status:running" in body
    seen = dict(line.split("=", 1) for line in
                (p.path / "seen.env").read_text().splitlines() if "=" in line)
    assert seen["PORT"] == str(row["port"]) and seen["REACT_NATIVE_PACKAGER_HOSTNAME"]
    p.run("down")
    assert not group_members(p)
