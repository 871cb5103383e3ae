"""`devenv dashboard` against a real stack, seen in a real browser (headless Chromium from
Debian's packages, driven by selenium with Debian's chromedriver; nothing is downloaded).

One stack for the module (redis and prometheus; redis's configured port is held by this
test so that it moves), one dashboard process; the tests check what a person would see.
A screenshot is kept in test-artifacts/ (gitignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import ROOT, Project, devenv_command, free_port, new_project
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "dash-S3cret-pw"
WAIT = 20  # seconds a page may take to show a change (generous for a loaded CI machine)
DATA_WAIT = 120  # a snapshot or restore stops Redis, runs a copy container and waits on it


@dataclass
class Dashboard:
    process: subprocess.Popen[str]
    url: str
    port: int
    token: str
    port_note: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_dashboard(project: Project, extra_env: dict[str, str] | None = None) -> Dashboard:
    env = {**os.environ, **project.env, **(extra_env or {})}
    process = subprocess.Popen([devenv_command(), "dashboard", "--json"], cwd=project.path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        process.kill()
        raise AssertionError(f"dashboard did not start: {process.stderr.read()}")
    data = json.loads(line)
    assert data["schema"] == "devenv.dashboard.url/1"
    return Dashboard(process, data["url"], data["port"], data["url"].split("token=")[1],
                     data["port_note"])


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1300,1400"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def until(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], Any],
          message: str, timeout: float = WAIT) -> Any:
    def safe(d: webdriver.Chrome) -> Any:
        try:
            return check(d)
        except WebDriverException:  # the element was redrawn meanwhile: look again
            return False

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(safe, message)


def row_state(driver: webdriver.Chrome, service: str) -> str:
    row = driver.find_element(By.CSS_SELECTOR, f"#services tr[data-service='{service}']")
    return row.get_attribute("data-state") or ""


def container(project: Project, service: str) -> str:
    return f"{project.name}-{service}-1"


@dataclass
class Stack:
    project: Project
    dashboard: Dashboard
    holder: socket.socket


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Stack]:
    project = new_project(tmp_path_factory.mktemp("dashboard"),
                          DEVENV_POSTGRES_PASSWORD=PASSWORD,
                          DEVENV_DASHBOARD_PORT=str(free_port()))
    holder = socket.socket()  # holds redis's configured port: redis moves, with a reason
    holder.bind(("127.0.0.1", int(project.env["DEVENV_REDIS_PORT"])))
    holder.listen()
    dashboard = None
    try:
        project.run("up", "--only", "cache,metrics")
        dashboard = start_dashboard(project)
        yield Stack(project, dashboard, holder)
    finally:
        if dashboard is not None:
            dashboard.stop()
        project.cleanup()
        holder.close()


@pytest.fixture
def browsers() -> Iterator[Callable[[], webdriver.Chrome]]:
    opened: list[webdriver.Chrome] = []

    def open_one() -> webdriver.Chrome:
        driver = chromium()
        opened.append(driver)
        return driver

    try:
        yield open_one
    finally:
        for driver in opened:
            with contextlib.suppress(WebDriverException):
                driver.quit()


def test_page_lists_services_with_state_and_a_moved_ports_reason(stack: Stack, browsers):
    driver = browsers()
    driver.get(stack.dashboard.url)
    until(driver, lambda d: row_state(d, "redis") == "running", "redis not shown running")
    until(driver, lambda d: "ready" in d.find_element(
        By.CSS_SELECTOR, "#services tr[data-service='redis'] td.probe").text,
        "devenv's probe of redis not shown ready")
    assert row_state(driver, "prometheus") == "running"
    assert row_state(driver, "api") == "absent"
    wanted = stack.project.env["DEVENV_REDIS_PORT"]
    given = str(stack.project.ports()["redis"]["port"])
    ports_row = driver.find_element(By.CSS_SELECTOR, "#ports tr[data-service='redis']")
    assert ports_row.find_element(By.CSS_SELECTOR, "td.wanted").text == wanted
    assert ports_row.find_element(By.CSS_SELECTOR, "td.here").text == given != wanted
    why = ports_row.find_element(By.CSS_SELECTOR, "td.why").text
    assert why.startswith(f"{wanted} is taken by ") and f"pid {os.getpid()}" in why, why
    link = driver.find_element(By.CSS_SELECTOR, "#services tr[data-service='prometheus'] a")
    assert link.get_attribute("href").rstrip("/") == stack.project.ports()["prometheus"]["url"]
    timing = driver.find_element(By.CSS_SELECTOR, "#timing .timing-row[data-service='redis']")
    assert timing.text.endswith(" s")
    node = driver.find_element(By.CSS_SELECTOR, "#graph g[data-service='redis']")
    assert node.get_attribute("data-state") == "running"
    until(driver, lambda d: d.find_element(
        By.CSS_SELECTOR, "#services tr[data-service='redis'] td.memory").text.endswith("iB"),
        "no memory figure for redis")
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))


def test_credentials_are_not_in_the_page_until_asked(stack: Stack, browsers):
    driver = browsers()
    driver.get(stack.dashboard.url)
    until(driver, lambda d: row_state(d, "redis") == "running", "page did not load")
    raw = urllib.request.urlopen(stack.dashboard.url, timeout=5).read().decode()
    state = urllib.request.urlopen(stack.dashboard.url.replace("/?", "/api/state?"),
                                   timeout=5).read().decode()
    assert PASSWORD not in raw and PASSWORD not in state and PASSWORD not in driver.page_source
    driver.find_element(By.ID, "show-secrets").click()
    until(driver, lambda d: f"postgres login: postgres / {PASSWORD}" in d.find_element(
        By.ID, "secrets").text, "credentials not shown when asked")


def test_a_log_line_appears_with_secrets_masked(stack: Stack, browsers):
    driver = browsers()
    driver.get(stack.dashboard.url)
    until(driver, lambda d: row_state(d, "redis") == "running", "page did not load")
    marker = f"dashboard-marker-{time.time_ns()}"
    redis_cli = ["docker", "exec", container(stack.project, "redis"), "redis-cli"]
    # at the verbose level redis logs each closed connection with its client name
    subprocess.run([*redis_cli, "CONFIG", "SET", "loglevel", "verbose"], check=True,
                   capture_output=True)
    subprocess.run([*redis_cli, "CLIENT", "SETNAME", f"{marker}-{PASSWORD}"], check=True,
                   capture_output=True)
    subprocess.run([*redis_cli, "CONFIG", "SET", "loglevel", "notice"], check=True,
                   capture_output=True)
    until(driver, lambda d: f"name={marker}-***" in d.find_element(By.ID, "logs").text,
          "the log line did not appear, masked")
    assert PASSWORD not in driver.find_element(By.ID, "logs").text


def test_restart_button_asks_first_and_takes_effect(stack: Stack, browsers):
    driver = browsers()
    driver.get(stack.dashboard.url)
    until(driver, lambda d: row_state(d, "redis") == "running", "page did not load")
    started = driver.find_element(
        By.CSS_SELECTOR, "#services tr[data-service='redis'] td.uptime").get_attribute(
        "data-started")
    driver.find_element(By.CSS_SELECTOR, "#services tr[data-service='redis'] button").click()
    alert = until(driver, lambda d: d.switch_to.alert, "no confirmation asked")
    assert "Restart redis?" in alert.text
    alert.dismiss()  # "no" changes nothing
    time.sleep(0.5)
    assert driver.find_element(By.ID, "action-note").is_displayed() is False
    driver.find_element(By.CSS_SELECTOR, "#services tr[data-service='redis'] button").click()
    until(driver, lambda d: d.switch_to.alert, "no confirmation asked").accept()
    until(driver, lambda d: "redis restarted" in d.find_element(By.ID, "action-note").text,
          "restart not reported")
    until(driver, lambda d: d.find_element(
        By.CSS_SELECTOR, "#services tr[data-service='redis'] td.uptime").get_attribute(
        "data-started") not in ("", started), "redis's start time did not change")
    assert row_state(driver, "redis") == "running"


def test_two_browsers_follow_a_change_and_a_reopened_one_catches_up(stack: Stack, browsers):
    first, second = browsers(), browsers()
    for driver in (first, second):
        driver.get(stack.dashboard.url)
        until(driver, lambda d: row_state(d, "prometheus") == "running", "page did not load")
    prometheus = container(stack.project, "prometheus")
    subprocess.run(["docker", "stop", "-t", "1", prometheus], check=True, capture_output=True)
    for driver in (first, second):
        until(driver, lambda d: row_state(d, "prometheus") == "exited",
              "the stop did not reach both browsers")
    second.quit()  # the browser closes...
    subprocess.run(["docker", "start", prometheus], check=True, capture_output=True)
    reopened = browsers()  # ...and opens again
    reopened.get(stack.dashboard.url)
    for driver in (first, reopened):
        until(driver, lambda d: row_state(d, "prometheus") == "running",
              "the start did not reach the open and the reopened browser")


class SocketProxy:
    """A unix socket in front of Docker's, which the test can take away and bring back:
    the engine going away, as the dashboard sees it, without touching the shared dockerd."""

    def __init__(self, path: Path, upstream: str = "/var/run/docker.sock"):
        self.path = path
        self.upstream = upstream
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.path.unlink(missing_ok=True)
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.upstream)
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)


def test_engine_going_away_and_back_is_said_and_recovered(stack: Stack, browsers,
                                                          tmp_path: Path):
    proxy = SocketProxy(tmp_path / "docker.sock")
    proxy.start()
    # the same project's dashboard port is held by the first dashboard: this one moves
    dashboard = start_dashboard(stack.project, {"DOCKER_HOST": f"unix://{proxy.path}"})
    try:
        assert dashboard.port != stack.dashboard.port
        assert f"{stack.dashboard.port} is taken by" in dashboard.port_note
        driver = browsers()
        driver.get(dashboard.url)
        until(driver, lambda d: row_state(d, "redis") == "running", "page did not load")
        assert not driver.find_element(By.ID, "banner").is_displayed()
        proxy.stop()
        until(driver, lambda d: d.find_element(By.ID, "banner").is_displayed(),
              "the page did not say the engine went away")
        assert "Docker engine is unreachable" in driver.find_element(By.ID, "banner").text
        assert driver.find_element(By.ID, "engine").text == "engine: lost"
        proxy.start()
        until(driver, lambda d: not d.find_element(By.ID, "banner").is_displayed(),
              "the page did not recover when the engine came back")
        assert driver.find_element(By.ID, "engine").text == "engine: connected"
        until(driver, lambda d: row_state(d, "redis") == "running", "services not listed")
    finally:
        dashboard.stop()
        proxy.stop()


def _get(url: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_security_of_the_running_server(stack: Stack):
    dash = stack.dashboard
    base = f"http://127.0.0.1:{dash.port}"
    listening = [c for c in psutil.Process(dash.process.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
    for path in ("/", "/static/app.js", "/api/state", "/api/events", "/api/logs",
                 "/api/stats", "/api/secrets", "/api/snapshots"):
        status, headers, _ = _get(base + path)
        assert status == 403, path
        assert not any(k.lower().startswith("access-control") for k in headers), path
    token = {"X-Devenv-Token": dash.token}
    assert _get(base + "/api/state", token)[0] == 200
    assert _get(base + "/api/state", {**token, "Host": f"attacker.example:{dash.port}"})[0] \
        == 403
    assert _get(base + "/api/services/redis/restart", {**token,
                "Origin": "http://attacker.example"}, method="POST")[0] == 403
    assert _get(base + f"/api/services/redis/restart?token={dash.token}", method="POST")[0] \
        == 403  # a POST takes the token only in its header
    for action in ("/api/snapshots", "/api/snapshots/any/restore"):
        assert _get(base + action, {**token, "Origin": "http://attacker.example"},
                    method="POST")[0] == 403
        assert _get(base + f"{action}?token={dash.token}", method="POST")[0] == 403
    status, _, body = _get(base + f"/api/state?token={dash.token}")
    document = json.loads(body)
    assert document["schema"] == "devenv.dashboard/1" and PASSWORD not in body
    status, _, body = _get(base + f"/api/stats?token={dash.token}")
    assert json.loads(body)["schema"] == "devenv.dashboard.stats/1"


def test_up_with_dashboard_serves_until_ctrl_c(stack: Stack):
    env = {**os.environ, **stack.project.env, "DEVENV_DASHBOARD_PORT": str(free_port())}
    process = subprocess.Popen([devenv_command(), "up", "--only", "cache,metrics",
                                "--dashboard"], cwd=stack.project.path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not (lines and lines[-1].startswith("dashboard of ")):
            line = process.stdout.readline() if process.stdout else ""
            assert line, f"no URL printed: {lines} {process.stderr.read()}"
            lines.append(line.strip())
        assert lines[0].split() == ["SERVICE", "URL", "STATE"]  # up's table first
        url = lines[-1].split(": ", 1)[1]
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + WAIT
        while (answer := _get(url.replace("/?", "/api/state?")))[0] == 503:  # first build
            assert time.monotonic() < deadline, answer
            time.sleep(0.1)
        status, _, body = answer
        assert status == 200 and json.loads(body)["project"] == stack.project.name
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0 and "dashboard stopped" in err
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _note(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.ID, "snapshot-note").text


def test_snapshot_and_restore_buttons_bring_the_data_back(stack: Stack, browsers):
    project = stack.project

    def color() -> str:
        return project.run("redis-cli", "get", "dash-color").stdout.strip()

    project.run("redis-cli", "set", "dash-color", "blue")
    driver = browsers()
    driver.get(stack.dashboard.url)
    until(driver, lambda d: d.find_element(By.ID, "snapshots-section").is_displayed(),
          "no snapshots section")
    driver.find_element(By.ID, "snapshot-name").send_keys("dash-base")
    driver.find_element(By.ID, "take-snapshot").click()
    until(driver, lambda d: _note(d).startswith("snapshot dash-base taken: redis"),
          "the snapshot was not said taken", DATA_WAIT)
    row = until(driver, lambda d: d.find_element(By.CSS_SELECTOR,
                                                 "#snapshots tr[data-snapshot='dash-base']"),
                "the snapshot is not listed")
    assert row.find_element(By.CSS_SELECTOR, "td.holds").text == "redis"
    assert row.find_element(By.CSS_SELECTOR, "td.size").text.endswith("B")
    listed = json.loads(project.run("db", "snapshots", "--json").stdout)
    assert [s["name"] for s in listed] == ["dash-base"]

    project.run("redis-cli", "set", "dash-color", "red")
    button = "#snapshots tr[data-snapshot='dash-base'] button.restore"
    driver.find_element(By.CSS_SELECTOR, button).click()
    alert = until(driver, lambda d: d.switch_to.alert, "no confirmation asked")
    assert "Restore snapshot dash-base?" in alert.text
    assert "automatic snapshot" in alert.text and "to get back" in alert.text
    alert.dismiss()  # "no" changes nothing
    assert color() == "red"
    driver.find_element(By.CSS_SELECTOR, button).click()
    until(driver, lambda d: d.switch_to.alert, "no confirmation asked").accept()
    until(driver, lambda d: _note(d).startswith("restored dash-base"),
          "the restore was not said done", DATA_WAIT)
    assert color() == "blue"
    # the automatic snapshot of the red data is named, with the way back, and listed
    note = _note(driver)
    auto = note.split("the data before is in snapshot ")[1].split(" ")[0]
    assert auto.startswith("auto-") and f"devenv db restore {auto}" in note
    until(driver, lambda d: d.find_element(By.CSS_SELECTOR,
                                           f"#snapshots tr[data-snapshot='{auto}']"),
          "the automatic snapshot is not listed")
    until(driver, lambda d: row_state(d, "redis") == "running", "redis not back")

    # a damaged snapshot: one line on the page, and the data stays
    (Path(listed[0]["path"]) / "redis.tar").write_bytes(b"truncated")
    driver.find_element(By.CSS_SELECTOR, button).click()
    until(driver, lambda d: d.switch_to.alert, "no confirmation asked").accept()
    until(driver, lambda d: "is damaged" in _note(d), "the damage was not shown")
    note_node = driver.find_element(By.ID, "snapshot-note")
    assert "failed" in (note_node.get_attribute("class") or "")
    assert "\n" not in note_node.text and "Traceback" not in note_node.text
    assert color() == "blue"


def test_a_service_removed_by_hand_is_shown_removed(stack: Stack, browsers):
    driver = browsers()
    driver.get(stack.dashboard.url)
    until(driver, lambda d: row_state(d, "redis") == "running", "page did not load")
    subprocess.run(["docker", "rm", "-f", container(stack.project, "redis")], check=True,
                   capture_output=True)
    until(driver, lambda d: row_state(d, "redis") == "removed", "the removal was not shown")
    assert "removed (container gone)" in driver.find_element(
        By.CSS_SELECTOR, "#services tr[data-service='redis'] td.state").text
    assert driver.find_element(By.CSS_SELECTOR, "#graph g[data-service='redis']"
                               ).get_attribute("data-state") == "removed"
    assert row_state(driver, "prometheus") == "running"  # the rest is unaffected
