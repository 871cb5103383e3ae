"""The inner loop on the real engine: watch (team API and the bundled one), exec, run,
device URLs and LAN publishing, the reserved host-app ports in doctor.

One stack (`--only api` with a team-style API folder: a Dockerfile and source, made here)
serves the module; the watch tests run in file order on one `devenv watch`.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from checks import http_get
from conftest import ROOT, Project, devenv_command, new_project

sys.path.insert(0, str(ROOT / "testbed"))  # team_api: the team's Node/TypeScript API
import team_api  # noqa: E402

pytestmark = pytest.mark.e2e

#: the engine the watch tests run on: devenv's own sync (the default) or Compose's watch;
#: run the file once with DEVENV_API_WATCH_ENGINE=compose for the other
WATCH_ENGINE = os.environ.get("DEVENV_API_WATCH_ENGINE", "devenv")


def greeting(text: str) -> str:
    return team_api.python_greeting_source(text)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("loop")
    team = base / "backend"
    from conftest import TEST_IMAGES

    team_api.write_python_api(team, TEST_IMAGES["DEVENV_API_BASE_IMAGE"], greeting="hello v1")
    project = new_project(base, DEVENV_API_BUILD=str(team))
    try:
        project.run("up", "--only", "api")
        yield project
    finally:
        project.cleanup()


def api_url(project: Project) -> str:
    return project.ports()["api"]["url"]


def answer(project: Project) -> dict:
    status, body = http_get(api_url(project) + "/")
    assert status == 200, body
    return json.loads(body)


class Watcher:
    """`devenv watch --json` in the background; its events, one JSON object a line."""

    def __init__(self, project: Project, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [devenv_command(), "watch", "--json", *args], cwd=project.path,
            env={**os.environ, **project.env, **(env or {})}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_events, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True
                         ).start()

    def _read_events(self) -> None:
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def next(self, wanted: Callable[[dict], bool], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(event)
            if wanted(event):
                return event
        raise AssertionError(f"no such event; seen {self.seen}\nstderr:\n"
                             + "".join(self.stderr))

    def find(self, wanted: Callable[[dict], bool], timeout: float = 120) -> dict:
        """Like next(), but an event next() already passed over counts too (a `log` line
        may come before or after the event it belongs to)."""
        return next((e for e in self.seen if wanted(e)), None) or self.next(wanted, timeout)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def watcher(stack: Project) -> Iterator[Watcher]:
    w = Watcher(stack, "--logs")  # the API's own lines come as `log` events between the rest
    try:
        w.next(lambda e: e["kind"] == "watching")
        yield w
    finally:
        if w.process.poll() is None:
            w.interrupt()


def team_folder(stack: Project) -> Path:
    return Path(stack.env["DEVENV_API_BUILD"])


def test_watch_serves_an_edited_file(stack: Project, watcher: Watcher):
    assert answer(stack)["greeting"] == "hello v1"
    (team_folder(stack) / "greeting.py").write_text(greeting("hello v2"))
    event = watcher.next(lambda e: e["kind"] in ("restarted", "error"))
    assert event["schema"] == "devenv.watch/1"
    assert ("devenv's sync" in watcher.seen[0]["detail"]) == (WATCH_ENGINE == "devenv")
    assert (event["kind"], event["state"]) == ("restarted", "ready"), event
    assert event["seconds"] is not None and event["ready_seconds"] is not None
    assert answer(stack)["greeting"] == "hello v2"


def test_a_failing_build_keeps_the_old_container_and_the_next_save_retries(
        stack: Project, watcher: Watcher):
    dockerfile = team_folder(stack) / "Dockerfile"
    good = dockerfile.read_text()
    container = stack.containers()
    api_before = next(c["ID"] for c in container if c["Names"].endswith("-api-1"))
    dockerfile.write_text(good + "RUN exit 3\n")
    failed = watcher.next(lambda e: e["kind"] in ("rebuild-failed", "rebuilt"))
    assert failed["kind"] == "rebuild-failed", failed
    assert "exit code: 3" in failed["detail"]
    assert failed["state"] == "ready"  # the old container answers
    assert answer(stack)["greeting"] == "hello v2"
    dockerfile.write_text(good)
    rebuilt = watcher.next(lambda e: e["kind"] in ("rebuild-failed", "rebuilt"))
    assert (rebuilt["kind"], rebuilt["state"]) == ("rebuilt", "ready"), rebuilt
    api_after = next(c["ID"] for c in stack.containers() if c["Names"].endswith("-api-1"))
    assert api_after != api_before  # recreated from the new image
    assert answer(stack)["greeting"] == "hello v2"


def test_a_deleted_source_file_is_reported_and_restoring_it_recovers(
        stack: Project, watcher: Watcher):
    source = team_folder(stack) / "greeting.py"
    source.unlink()
    broken = watcher.next(lambda e: e["kind"] in ("restarted", "error"))
    assert (broken["kind"], broken["state"]) == ("restarted", "exited"), broken
    assert "No module named 'greeting'" in broken["detail"]
    # --logs: the restarted API's crash, caught up from the moment the restart began
    crash = watcher.find(lambda e: e["kind"] == "log" and "greeting" in e["detail"]
                         and "No module named" in e["detail"])
    assert crash["service"] == "api"
    source.write_text(greeting("hello v3"))
    fixed = watcher.next(lambda e: e["kind"] in ("restarted", "error"))
    assert (fixed["kind"], fixed["state"]) == ("restarted", "ready"), fixed
    assert answer(stack)["greeting"] == "hello v3"


def test_ctrl_c_stops_watching_and_leaves_the_stack_running(stack: Project,
                                                           watcher: Watcher):
    assert watcher.interrupt() == 0
    assert "watch stopped; the stack keeps running" in "".join(watcher.stderr)
    running = {c["Names"].rsplit("-", 2)[1] for c in stack.containers()
               if c["State"] == "running"}
    assert running == {"api", "postgres", "redis"}
    leftover = subprocess.run(["pgrep", "-f", f"compose -p {stack.name} .*watch"],
                              capture_output=True, text=True)
    assert leftover.stdout == "", "compose watch outlived devenv"


def test_the_team_typescript_api_reloads_itself_after_a_synced_save(stack: Project,
                                                                   tmp_path: Path):
    """The team's Node/TypeScript API (testbed/team_api.py: its image runs tsc) with its dev
    command (tsc --watch + node --watch) and the sync action: Compose copies the file, the
    dev server serves the change, the container is never restarted. A type error shows in
    the API's log. Then the module's Python API is put back."""
    if subprocess.run(["docker", "image", "inspect", team_api.IMAGE],
                      capture_output=True).returncode:
        pytest.fail(f"{team_api.IMAGE} missing: run `bash scripts/build-test-images.sh node`")
    python_greeting = answer(stack)["greeting"]
    built = ""
    folder = tmp_path / "team-ts"
    edited = team_api.write_team_api(folder, greeting="ts v1")
    loop = {"DEVENV_API_BUILD": str(folder), "DEVENV_API_COMMAND": team_api.DEV_COMMAND,
            "DEVENV_API_WATCH_ACTION": "sync"}
    try:
        stack.run("up", "--only", "api", extra_env=loop)
        assert answer(stack)["greeting"] == "ts v1"
        before = api_container(stack)
        built = before["Image"]
        assert logged(stack, team_api.WATCHING), "tsc --watch never watched"
        w = Watcher(stack, "--logs", env=loop)
        try:
            w.next(lambda e: e["kind"] == "watching")
            edited.write_text(team_api.greeting_source("ts v2"))
            event = w.next(lambda e: e["kind"] in ("synced", "restarted", "error"))
            assert (event["kind"], event["state"]) == ("synced", "ready"), event
            assert served(stack, "ts v2"), w.seen
            # a type error: tsc says so in watch's own output (--logs) and in the API's log
            # (and, as tsc does by default, still emits, so the dev server runs the new code)
            edited.write_text('export const GREETING: number = "ts v3";\n')
            w.next(lambda e: e["kind"] in ("synced", "error"))
            error = w.find(lambda e: e["kind"] == "log" and "error TS2322" in e["detail"])
            assert "src/greeting.ts(1,14): error TS2322" in error["detail"], error
            assert served(stack, "ts v3")
            logs = stack.run("logs", "api").stdout
            assert "src/greeting.ts(1,14): error TS2322" in logs, logs[-2000:]
        finally:
            assert w.interrupt() == 0
        after = api_container(stack)
        assert (after["Id"], after["RestartCount"], after["State"]["StartedAt"]) == \
            (before["Id"], 0, before["State"]["StartedAt"])  # synced, never restarted
    finally:
        stack.run("up", "--only", "api")  # the module's Python API again
        if built:  # the TypeScript API's image, untagged by that rebuild
            subprocess.run(["docker", "image", "rm", built], capture_output=True)
    assert answer(stack)["greeting"] == python_greeting


def api_container(project: Project) -> dict:
    cid = next(c["ID"] for c in project.containers() if c["Names"].endswith("-api-1"))
    return json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True,
                                     text=True, check=True).stdout)[0]


def logged(project: Project, text: str, timeout: float = 60) -> bool:
    """The API's log holds `text` within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in project.run("logs", "api").stdout:
            return True
        time.sleep(0.3)
    return False


def served(project: Project, greeting: str, timeout: float = 60) -> bool:
    """The API answers with `greeting` within `timeout` (a dev server reloads on its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if answer(project)["greeting"] == greeting:
                return True
        except (AssertionError, OSError, ValueError):
            pass  # restarting
        time.sleep(0.2)
    return False


def test_watch_path_that_does_not_exist_exits_2_and_starts_nothing(stack: Project):
    result = stack.run("watch", check=False, extra_env={"DEVENV_API_WATCH_SYNC": "src"})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"devenv: error: DEVENV_API_WATCH_SYNC: src does not exist in {team_folder(stack)}")


def test_a_compose_without_watch_is_named_with_the_version_needed(stack: Project,
                                                                  tmp_path: Path):
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("docker")
    (shim / "docker").write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "compose version" ]; then echo 2.20.3; exit 0; fi\n'
        f'exec {real} "$@"\n')
    (shim / "docker").chmod(0o755)
    result = stack.run("watch", check=False,
                       extra_env={"PATH": f"{shim}:{os.environ['PATH']}"})
    assert result.returncode == 4
    assert ("devenv: error: Docker Compose 2.20.3 cannot watch with sync+restart: devenv "
            "watch needs Compose 2.23.0 or newer") in result.stderr


def test_the_bundled_reference_api_is_watched_too(make_project):
    project = make_project()
    w = Watcher(project)
    try:
        w.next(lambda e: e["kind"] == "watching", timeout=180)
        assert answer(project)["version"] == "1.0.0"
        app = project.path / "compose" / "api" / "app.py"
        app.write_text(app.read_text().replace('VERSION = "1.0.0"', 'VERSION = "1.0.1-dev"'))
        event = w.next(lambda e: e["kind"] in ("restarted", "error"))
        assert (event["kind"], event["state"]) == ("restarted", "ready"), event
        assert answer(project)["version"] == "1.0.1-dev"
        app.unlink()
        gone = w.next(lambda e: e["kind"] in ("delete-failed", "restarted", "error"))
        if WATCH_ENGINE == "compose":
            # it runs as uid 65534 over root's files: Compose's `rm` in it fails, said plainly
            assert (gone["kind"], gone["state"]) == ("delete-failed", "ready"), gone
            assert "deleting paths in" in gone["detail"]
            assert answer(project)["version"] == "1.0.1-dev"  # the old copy keeps serving
        else:
            # devenv deletes as root, who wrote it: the API then has no app.py, and says so
            assert (gone["kind"], gone["state"]) == ("restarted", "exited"), gone
            assert "app.py" in gone["detail"], gone
    finally:
        assert w.interrupt() == 0


# --- exec and run ----------------------------------------------------------------------
def test_exec_passes_the_exit_code_stdin_and_a_tty_when_there_is_one(stack: Project):
    result = stack.run("exec", "api", "--", "sh", "-c", "echo in-api; exit 7", check=False)
    assert (result.returncode, result.stdout) == (7, "in-api\n")
    assert stack.run("exec", "cache", "--", "redis-cli", "ping").stdout == "PONG\n"
    piped = subprocess.run([devenv_command(), "exec", "api", "--", "cat"], input="piped\n",
                           cwd=stack.path, env={**os.environ, **stack.env},
                           capture_output=True, text=True, timeout=60)
    assert piped.stdout == "piped\n"
    assert stack.run("exec", "api", "--", "tty", check=False).stdout.strip() == "not a tty"
    # in a terminal (script gives devenv a pseudo-terminal) the command gets one too
    command = f"{devenv_command()} exec api -- tty"
    in_terminal = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=stack.path,
                                 env={**os.environ, **stack.env}, capture_output=True,
                                 stdin=subprocess.DEVNULL, text=True, timeout=60)
    # (the terminal may echo a control character around it)
    assert "/dev/pts/" in in_terminal.stdout and "not a tty" not in in_terminal.stdout, \
        in_terminal


def test_exec_into_a_service_that_is_not_running(stack: Project):
    result = stack.run("exec", "admin", "--", "true", check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"devenv: error: adminer is not running in project {stack.name}",
        "hint: start it with `devenv up --only adminer`"]


def oneoffs(project: Project) -> list[str]:
    return [c["Names"] for c in project.containers() if "-run-" in c["Names"]]


def test_run_is_a_removed_one_off_with_the_apis_environment_on_its_network(stack: Project):
    script = ("import os, socket; socket.create_connection(('redis', 6379), 5); "
              "print(os.environ['DATABASE_URL'].split('@')[1]); raise SystemExit(3)")
    result = stack.run("run", "api", "--", "python3", "-c", script, check=False)
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == "postgres:5432/cirkelline_agents"
    assert oneoffs(stack) == []


def test_an_interrupted_run_removes_its_container(stack: Project):
    process = subprocess.Popen([devenv_command(), "run", "api", "--", "sleep", "120"],
                               cwd=stack.path, env={**os.environ, **stack.env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while not oneoffs(stack) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert oneoffs(stack), "the one-off container never appeared"
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "devenv: error: interrupted; the one-off container" in stderr
    assert oneoffs(stack) == []


# --- host apps and devices -------------------------------------------------------------
def test_ports_env_gives_the_host_apps_the_api_in_their_conventions(stack: Project):
    env = dict(line.split("=", 1) for line in stack.run("ports", "--env").stdout.splitlines())
    port = stack.ports()["api"]["port"]
    assert env["EXPO_PUBLIC_API_URL"] == f"'http://127.0.0.1:{port}'"
    assert env["EXPO_PUBLIC_API_URL_ANDROID"] == f"'http://10.0.2.2:{port}'"


def test_no_lan_address_is_said_clearly(stack: Project):
    # a network namespace with nothing but loopback: a machine on no network
    def isolated(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["unshare", "-n", devenv_command(), *args], cwd=stack.path,
                              env={**os.environ, **stack.env}, capture_output=True,
                              text=True, timeout=60)

    up = isolated("up", "--only", "api", "--lan", "api")
    assert up.returncode == 1
    assert up.stderr.startswith("devenv: error: this machine has no LAN address")
    device = isolated("ports", "--device")
    assert device.returncode == 0
    assert "phone on the LAN  (none) this machine has no LAN address" in device.stdout
    assert "Android emulator  http://10.0.2.2:" in device.stdout


def _test_address() -> tuple[str, str]:
    """A TEST-NET-2 address (198.51.100.0/24; the test bed's own network may be TEST-NET-1)
    on an interface this test makes: a dummy one, or a veth pair where the kernel has no
    dummy driver. Needs root, which CI has."""
    taken = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(50):
        address = f"198.51.100.{random.randint(10, 250)}"
        if f" {address}/" not in taken:
            break
    name = f"dvl{random.randint(1000, 9999)}"
    if subprocess.run(["ip", "link", "add", name, "type", "dummy"],
                      capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name",
                        name + "p"], check=True, capture_output=True)
        subprocess.run(["ip", "link", "set", name + "p", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    return name, address


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return True
    return False


def test_lan_publishes_only_the_named_service(stack: Project):
    interface, address = _test_address()
    try:
        lan = {"DEVENV_LAN_ADDRESS": address}
        result = stack.run("up", "--only", "api", "--lan", "api", extra_env=lan)
        warnings = [x for x in result.stderr.splitlines() if "on the LAN" in x]
        assert warnings == [f"warning: api also published on the LAN at {address}: anyone "
                            "on this network can reach it (a plain `devenv up` takes it "
                            "off again)"]
        ports = stack.ports()
        status, body = http_get(f"http://{address}:{ports['api']['port']}/")
        assert status == 200 and json.loads(body)["greeting"] == "hello v3"
        assert refused(address, ports["postgres"]["port"])
        assert refused(address, ports["redis"]["port"])
        assert not refused("127.0.0.1", ports["redis"]["port"])
        device = json.loads(stack.run("ports", "--device", "--json", extra_env=lan).stdout)
        assert device["schema"] == "devenv.devices/1" and device["api_on_lan"]
        phone = next(u for u in device["urls"] if u["target"] == "phone")
        assert phone["url"] == f"http://{address}:{ports['api']['port']}"
        text = stack.run("ports", "--device", extra_env=lan).stdout
        assert f"Scan on the phone (http://{address}:" in text and "█" in text
        # `devenv watch` on the running API starts nothing, so the API stays on the LAN
        w = Watcher(stack)
        w.next(lambda e: e["kind"] == "watching")
        assert w.interrupt() == 0
        assert http_get(f"http://{address}:{ports['api']['port']}/")[0] == 200
        # nothing on the LAN by default: a plain up takes it off
        stack.run("up", "--only", "api")
        assert refused(address, ports["api"]["port"])
    finally:
        subprocess.run(["ip", "link", "del", interface], capture_output=True)


def test_doctor_names_what_holds_metros_port(stack: Project):
    holder = socket.socket()
    # a listener may bind over connections still in TIME_WAIT (an earlier test's Metro on
    # 8081 leaves some): only a live listener makes this bind fail
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", 8081))
        holder.listen()
        mine = True
    except OSError:
        mine = False  # something else holds it: doctor must name that instead
    try:
        out = stack.run("doctor", check=False).stdout
    finally:
        holder.close()
    line = next(x for x in out.splitlines() if "host app metro" in x)
    assert "8081 (Metro Bundler (Expo)) is held by" in line
    if mine:
        assert f"(pid {os.getpid()})" in line
