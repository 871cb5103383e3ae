"""Container output and the dashboard's entry on a real engine: a service that writes one
megabyte line without blanks (the default password as a value at both ends) and a progress
bar redrawn with carriage returns, read by `devenv logs` and by the dashboard; a malformed
request and `dashboard --open` against the real server, the page in headless Chromium.

One stack for the module: a service of devenv.toml alone (`--only writer`), no database.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_IMAGES, Project, devenv_command, free_port, new_project

pytestmark = pytest.mark.e2e

#: a progress bar, then a JSON body of one line: the default password as its value at both
#: ends of a 1 MB base64 blob (no blank in the whole line), then a marker
WRITER = r"""
i=0
while [ $i -le 100 ]; do printf '\rloading %d%%' $i; i=$((i+1)); done
printf '\n{"password":"password","blob":"'
head -c 750000 /dev/zero | base64 -w0
printf '","again":"password"}\n'
echo after-it
exec python3 -m http.server 8080
"""

DEVENV_TOML = """
[services.writer]
image = "{image}"
port = 8080
host_port = {port}
probe = "http:/"
command = ["sh", "-c", {script}]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Project]:
    project = new_project(tmp_path_factory.mktemp("output"),
                          DEVENV_DASHBOARD_PORT=str(free_port()))
    port = int(project.env["DEVENV_API_PORT"]) + 11  # inside the project's free block
    (project.path / "devenv.toml").write_text(DEVENV_TOML.format(
        image=TEST_IMAGES["DEVENV_API_BASE_IMAGE"], port=port, script=json.dumps(WRITER)))
    try:
        project.run("up", "--only", "writer")
        yield project
    finally:
        project.cleanup()


def test_a_megabyte_line_without_blanks_is_shown_whole_and_masked_at_once(stack: Project):
    # the mask was quadratic in such a line: hours for this one; now milliseconds
    lines = stack.run("logs", "writer", timeout=60).stdout.splitlines()
    long = next(line for line in lines if '"blob":"' in line)
    assert long.startswith("writer-1")  # whole (1 MB is under the 1 MiB a line may hold)
    assert long.endswith('{"password":"***","blob":"' + "A" * 1_000_000 + '","again":"***"}')
    assert any(line.endswith("loading 100%") for line in lines)
    assert any(line.endswith("after-it") for line in lines)


class Dashboard:
    def __init__(self, project: Project, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [devenv_command(), "dashboard", "--json", *args], cwd=project.path,
            env={**os.environ, **project.env, **(env or {})}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.process.kill()
            raise AssertionError(f"dashboard did not start: {self.process.communicate()}")
        data = json.loads(line)
        self.url, self.port = data["url"], data["port"]
        self.token = data["url"].split("token=")[1]

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}"
                                    f"{'&' if '?' in path else '?'}token={self.token}",
                                    timeout=10) as answer:
            return json.loads(answer.read())

    def stop(self) -> str:
        """Stop it; what it said on stderr."""
        self.process.terminate()
        try:
            _out, said = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, said = self.process.communicate()
        return said


@pytest.fixture
def dashboard(stack: Project) -> Iterator[Dashboard]:
    served = Dashboard(stack)
    try:
        yield served
    finally:
        served.stop()


def _until(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_the_dashboard_holds_a_long_line_cut_and_a_progress_bar_as_its_last_state(
        dashboard: Dashboard):
    def lines() -> list[str]:
        found = [e["line"] for e in dashboard.get("/api/logs?service=writer")["lines"]]
        return found if "after-it" in found else []

    shown = _until(lines, "the writer's lines did not reach the dashboard")
    assert "loading 100%" in shown  # the bar's last state, not a hundred redraws
    [long] = [line for line in shown if '"blob":"' in line]
    assert long.startswith('{"password":"***","blob":"AAAA')
    assert long.endswith(" [... cut: the line is longer than 8 KiB]")
    assert len(long.encode()) < 8 * 1024 + 100


def test_a_token_that_is_not_utf8_is_a_400_said_once_and_the_server_goes_on(stack: Project):
    served = Dashboard(stack)
    try:
        statuses = []
        for token in (b"\xff\xfe" + served.token.encode(), b"\xc3\x28", served.token.encode()):
            with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
                s.sendall(b"GET /api/logs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % served.port
                          + b"X-Devenv-Token: " + token + b"\r\nConnection: close\r\n\r\n")
                statuses.append(s.recv(65536).split(b"\r\n")[0].split(b" ")[1])
    finally:
        said = served.stop()
    assert statuses == [b"400", b"400", b"200"]
    assert said.count("refused a malformed request") == 1, said
    assert "Traceback" not in said and served.token not in said


def test_open_hands_the_browser_a_private_page_and_the_page_works(stack: Project,
                                                                   tmp_path: Path):
    from test_dashboard_browser import chromium, row_state, until

    record = tmp_path / "browser-argv"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}.tmp\n'
                       f"mv {record}.tmp {record}\n")
    browser.chmod(0o755)
    served = Dashboard(stack, "--open", env={"BROWSER": str(browser)})
    driver = None
    try:
        argv = _until(lambda: record.exists() and record.read_text().split(), "no browser")
        # what the process list shows of the browser: no token
        assert len(argv) == 1 and served.token not in argv[0], argv
        assert argv[0].startswith("file:///")
        page = Path(urllib.parse.unquote(urllib.parse.urlparse(argv[0]).path))
        assert page.parent == stack.path / ".devenv"
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        driver = chromium()
        driver.get(argv[0])
        until(driver, lambda d: row_state(d, "writer") == "running",
              "the launch page did not lead to the dashboard")
        assert driver.current_url == served.url
        _until(lambda: not page.exists(), "the launch page stayed after it was used")
    finally:
        if driver is not None:
            driver.quit()
        served.stop()
