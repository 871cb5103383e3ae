"""devenv's own watch sync (DEVENV_API_WATCH_ENGINE=devenv) on the real engine, with its
faults: the container's user owns what is synced (the API runs as uid 65534 over root's
files), a burst of 2,000 files is one batch and one restart, what is not synced is said in
one line each and nothing outside the synced paths changes, the watched folder deleted
stops watching. One `--only api` stack and one `devenv watch`, in file order."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from checks import http_get
from conftest import ROOT, TEST_IMAGES, Project, new_project
from test_loop import Watcher

sys.path.insert(0, str(ROOT / "testbed"))
import team_api  # noqa: E402

pytestmark = pytest.mark.e2e

ENGINE = {"DEVENV_API_WATCH_ENGINE": "devenv"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("sync")
    team = base / "backend"
    team_api.write_python_api(team, TEST_IMAGES["DEVENV_API_BASE_IMAGE"], greeting="one")
    dockerfile = team / "Dockerfile"  # root's files, a user who may not write them
    dockerfile.write_text(dockerfile.read_text().replace("CMD", "USER 65534:65534\nCMD"))
    project = new_project(base, DEVENV_API_BUILD=str(team), **ENGINE)
    try:
        project.run("up", "--only", "api")
        yield project
    finally:
        project.cleanup()


@pytest.fixture(scope="module")
def watcher(stack: Project) -> Iterator[Watcher]:
    w = Watcher(stack)
    try:
        w.next(lambda e: e["kind"] == "watching")
        yield w
    finally:
        if w.process.poll() is None:
            w.interrupt()


def folder(stack: Project) -> Path:
    return Path(stack.env["DEVENV_API_BUILD"])


def greeting(stack: Project) -> str:
    status, body = http_get(stack.ports()["api"]["url"] + "/")
    assert status == 200, body
    return json.loads(body)["greeting"]


def in_api(stack: Project, script: str) -> str:
    return stack.run("exec", "-T", "api", "--", "sh", "-c", script, check=False).stdout


def test_a_save_is_copied_as_the_containers_user_and_served(stack: Project,
                                                            watcher: Watcher):
    assert "devenv's sync" in watcher.seen[0]["detail"]
    (folder(stack) / "greeting.py").write_text(team_api.python_greeting_source("two"))
    event = watcher.next(lambda e: e["kind"] not in ("watching", "log"))
    assert (event["kind"], event["state"], event["files"]) == ("restarted", "ready", 1), \
        event["detail"]
    assert 0 < event["copied_seconds"] < 5 and event["ready_seconds"] is not None
    assert greeting(stack) == "two"
    # the synced file is the container user's; what was not synced keeps its owner
    assert in_api(stack, "stat -c %u:%g /app/greeting.py /app/server.py").split() == [
        "65534:65534", "0:0"]


def test_a_burst_of_2000_files_is_one_batch_and_one_restart(stack: Project,
                                                            watcher: Watcher):
    burst = folder(stack) / "assets"
    burst.mkdir()
    for n in range(2000):
        (burst / f"a{n}.txt").write_text(str(n))
    (folder(stack) / "greeting.py").write_text(team_api.python_greeting_source("three"))
    event = watcher.next(lambda e: e["kind"] not in ("log",))
    assert (event["kind"], event["state"]) == ("restarted", "ready"), event
    assert event["files"] == 2001, event
    time.sleep(2)  # a second batch or restart would have come by now
    assert watcher.events.empty(), watcher.events.get()
    assert greeting(stack) == "three"
    assert in_api(stack, "ls /app/assets | wc -l").strip() == "2000"


def test_what_is_not_synced_is_one_line_each_and_nothing_outside_changes(
        stack: Project, watcher: Watcher, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "id_rsa").write_text("private")
    (folder(stack) / "keys").symlink_to(outside)
    with (folder(stack) / "dump.bin").open("wb") as handle:
        handle.truncate(101 * 1024 * 1024)  # sparse: over the limit, no disk used
    event = watcher.next(lambda e: e["kind"] not in ("log",))
    assert event["kind"] == "skipped", event
    assert sorted(event["detail"].splitlines()) == [
        "dump.bin: 106 MB, over the 100 MB a sync copies; not synced (add it to "
        ".dockerignore)",
        f"keys -> {outside}: points out of the source folder, not synced (never followed "
        "out)"]
    assert in_api(stack, "ls -a /app/keys /app/dump.bin 2>&1; echo .").count("No such") == 2
    # a deleted file is deleted in the container too (as root: its user may not)
    (folder(stack) / "assets" / "a7.txt").unlink()
    gone = watcher.next(lambda e: e["kind"] not in ("log",))
    assert (gone["kind"], gone["state"]) == ("restarted", "ready"), gone
    assert in_api(stack, "ls /app/assets | wc -l").strip() == "1999"


def test_the_watched_folder_deleted_stops_watching_in_one_line(stack: Project,
                                                               watcher: Watcher):
    subprocess.run(["rm", "-rf", str(folder(stack))], check=True)
    assert watcher.process.wait(timeout=30) == 1
    errors = [x for x in "".join(watcher.stderr).splitlines() if x.startswith("devenv:")]
    assert errors == [f"devenv: error: the watched folder {folder(stack)} is gone: watch "
                      "stopped; nothing was deleted in the container"], watcher.stderr
    assert greeting(stack) == "three"  # still running, with what it had
    assert in_api(stack, "ls /app/assets | wc -l").strip() == "1999"
