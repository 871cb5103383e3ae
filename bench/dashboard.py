"""Speed and weight of `devenv dashboard` on the test bed (not run by the tests).

Starts the six services with the offline images under a throw-away project, serves the
dashboard, and measures:
  1. first load: the page and its assets over HTTP, and in headless Chromium until the
     services table shows the running services (a fresh browser each run);
  2. state change to page: `docker pause` of redis (sent on the Engine API) until the
     Server-Sent Event says so, and until the page in Chromium shows it;
  3. the server's memory (RSS and peak) while it follows all six logs.
Targets (issue 15): first load <= 200 ms, a state change on the page within 1 s, memory
under 80 MB.

Run from the repository with the venv that has devenv and the test extras:
  .venv/bin/python bench/dashboard.py [--runs 7] [--json] [--screenshot docs/dashboard.png]
Needs a Docker engine, the offline images (scripts/build-test-images.sh) and Debian's
chromium + chromium-driver (scripts/install-browser.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("API", "POSTGRES", "REDIS", "ADMINER", "PROMETHEUS", "GRAFANA")


def images() -> dict[str, str]:
    out = {}
    for line in (ROOT / "testbed" / "test-images.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("DEVENV_") and value:
            out[key.strip()] = value.strip()
    return out


def free_block(size: int = 8) -> int:
    for start in range(21000, 60000, 97):
        ok = True
        for port in range(start, start + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return start
    raise SystemExit("no free block of ports")


def engine_post(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect("/var/run/docker.sock")
        s.sendall(f"POST {path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n".encode())
        answer = s.recv(4096)
    if not answer.split(b" ", 2)[1].startswith(b"2"):
        raise SystemExit(f"engine refused POST {path}: {answer[:200]!r}")


class DockerEvents:
    """Docker's own event stream, read beside the dashboard's: when the engine said it."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str]] = []  # (engine time, action, container name)
        self.lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect("/var/run/docker.sock")
        sock.sendall(b'GET /events?filters={"type":["container"]} HTTP/1.0\r\nHost: d\r\n\r\n')
        buffer = b""
        decoder = json.JSONDecoder()
        while chunk := sock.recv(65536):
            buffer += chunk
            if b"\r\n\r\n" in buffer and buffer.startswith(b"HTTP"):
                buffer = buffer.split(b"\r\n\r\n", 1)[1]
            text = buffer.decode(errors="replace").lstrip()
            while text:
                try:
                    event, end = decoder.raw_decode(text)
                except ValueError:
                    break
                text = text[end:].lstrip()
                with self.lock:
                    self.seen.append((event.get("timeNano", 0) / 1e9, event.get("Action", ""),
                                      event.get("Actor", {}).get("Attributes", {}).get("name",
                                                                                       "")))
                    self.lock.notify_all()
            buffer = text.encode()

    def when(self, after: float, action: str, name: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for at, act, who in self.seen:
                    if at >= after - 0.5 and act == action and who == name:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"docker never said {action} {name}")
                self.lock.wait(left)


class Events:
    """A Server-Sent Events reader that timestamps each event as it arrives."""

    def __init__(self, url: str):
        self.response = urllib.request.urlopen(url, timeout=60)
        self.received: list[tuple[float, str, Any]] = []
        self.wall: dict[int, float] = {}
        self.lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        kind, data = "", ""
        for raw in self.response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and kind:
                with self.lock:
                    self.received.append((time.perf_counter(), kind, json.loads(data)))
                    self.wall[len(self.received) - 1] = time.time()
                    self.lock.notify_all()
                kind, data = "", ""

    def wait_for(self, after: float, check: Any, timeout: float = 10) -> tuple[float, float]:
        """(perf_counter, wall clock) when the first matching state event arrived."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for i, (at, kind, data) in enumerate(self.received):
                    if at >= after and kind == "state" and check(data):
                        return at, self.wall[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit("no state event in time")
                self.lock.wait(left)


def redis_state(doc: dict[str, Any]) -> str:
    return next(s["state"] for s in doc["services"] if s["service"] == "redis")


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1300,1400"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def page_shows(driver: Any, script: str, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(script):
            return time.perf_counter()
        time.sleep(0.005)
    raise SystemExit(f"page did not show: {script}")


def rss(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    values = {k: int(v.split()[0]) * 1024 for k, _, v in
              (line.partition(":") for line in status.splitlines()) if k in ("VmRSS", "VmHWM")}
    return values["VmRSS"], values["VmHWM"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--devenv", default=shutil.which("devenv") or "devenv")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--follow-seconds", type=float, default=20.0,
                        help="how long the server follows six logs before its memory is read")
    args = parser.parse_args()
    if os.sep in args.devenv:  # the stack runs in its own directory: a relative path would miss
        args.devenv = str(Path(args.devenv).resolve())

    name = f"bench-dash-{uuid.uuid4().hex[:6]}"
    base = free_block()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVENV_")}
    env.update(images())
    env.update({"DEVENV_PROJECT": name, "DEVENV_WAIT_TIMEOUT": "120",
                "DEVENV_DASHBOARD_PORT": str(base + 7)})
    for i, service in enumerate(SERVICES):
        env[f"DEVENV_{service}_PORT"] = str(base + i)
    workdir = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    dashboard = None
    # a listener on redis's configured port: redis moves, and the page tells why
    holder = socket.socket()
    holder.bind(("127.0.0.1", base + 2))
    holder.listen()
    try:
        subprocess.run([args.devenv, "up"], cwd=workdir, env=env, check=True,
                       capture_output=True, timeout=300)
        dashboard = subprocess.Popen([args.devenv, "dashboard", "--json"], cwd=workdir,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        url = json.loads(dashboard.stdout.readline())["url"]
        token = url.split("token=")[1]
        origin = url.split("/?")[0]
        time.sleep(1.0)  # first state built, logs followed

        # 1. first load
        http_ms, page_ms, nav_ms, reload_ms = [], [], [], []
        for _ in range(args.runs):
            began = time.perf_counter()
            for path in ("/", "/static/app.js", "/static/style.css", "/api/state"):
                with urllib.request.urlopen(f"{origin}{path}?token={token}", timeout=10) as r:
                    r.read()
            http_ms.append((time.perf_counter() - began) * 1000)
        for _ in range(args.runs):
            driver = chromium()
            try:
                began = time.perf_counter()
                driver.get(url)
                shown = page_shows(driver, "return document.querySelectorAll("
                                   "\"#services tr[data-state='running']\").length == 6")
                page_ms.append((shown - began) * 1000)
                mark = ("return (performance.getEntriesByName('devenv:first-render')[0] || {})"
                        ".startTime")
                nav_ms.append(driver.execute_script(mark))
                driver.refresh()  # the same page again in a browser that is running
                page_shows(driver, "return document.querySelectorAll("
                           "\"#services tr[data-state='running']\").length == 6")
                reload_ms.append(page_shows(driver, mark + " > 0") and
                                 driver.execute_script(mark))
            finally:
                driver.quit()

        # 2. state change to the event and to the page
        container = f"{name}-redis-1"
        events = Events(f"{origin}/api/events?token={token}")
        docker_events = DockerEvents()
        driver = chromium()
        event_ms, dom_ms, engine_ms, after_docker_ms = [], [], [], []
        try:
            driver.get(url)
            page_shows(driver, "return document.querySelectorAll("
                       "\"#services tr[data-state='running']\").length == 6")
            if args.screenshot:  # before the pauses below make redis's health unhealthy
                time.sleep(2.5)  # CPU and memory sampled
                driver.save_screenshot(str(args.screenshot))
            for _ in range(args.runs):
                for action, want in (("pause", "paused"), ("unpause", "running")):
                    began, began_wall = time.perf_counter(), time.time()
                    engine_post(f"/containers/{container}/{action}")
                    engine_ms.append((time.perf_counter() - began) * 1000)
                    at, at_wall = events.wait_for(began, lambda d, w=want: redis_state(d) == w)
                    said = docker_events.when(began_wall, action, container)
                    after_docker_ms.append((at_wall - said) * 1000)
                    shown = page_shows(driver, "return document.querySelector("
                                       f"\"#services tr[data-service='redis']\").dataset.state"
                                       f" == '{want}'")
                    event_ms.append((at - began) * 1000)
                    dom_ms.append((shown - began) * 1000)
                    time.sleep(0.3)
        finally:
            driver.quit()

        # 3. memory while following six logs
        time.sleep(args.follow_seconds)
        now, peak = rss(dashboard.pid)
        state = json.loads(urllib.request.urlopen(f"{origin}/api/state?token={token}").read())
        running = sum(s["state"] == "running" for s in state["services"])

        def med(values: list[float]) -> float:
            return round(statistics.median(values), 1)

        result = {
            "first_load_http_ms": med(http_ms), "first_load_browser_ms": med(page_ms),
            "first_load_navigation_ms": med(nav_ms), "reload_navigation_ms": med(reload_ms),
            "engine_pause_call_ms": med(engine_ms),
            "docker_event_to_server_sent_event_ms": med(after_docker_ms),
            "state_change_to_event_ms": med(event_ms),
            "state_change_to_page_ms": med(dom_ms),
            "state_change_to_page_max_ms": round(max(dom_ms), 1),
            "server_rss_mb": round(now / 1e6, 1), "server_peak_rss_mb": round(peak / 1e6, 1),
            "logs_followed": running, "runs": args.runs,
        }
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            rows = [
                ("first load, page + assets + state over HTTP (median)",
                 result["first_load_http_ms"], "ms", "<= 200 ms"),
                ("first load in Chromium, navigation start -> first view (median)",
                 result["first_load_navigation_ms"], "ms", "<= 200 ms"),
                ("reload in a running browser, navigation start -> view (median)",
                 result["reload_navigation_ms"], "ms", "<= 200 ms"),
                ("  first load from driver.get(), incl. a fresh browser's start",
                 result["first_load_browser_ms"], "ms", ""),
                ("the engine's pause/unpause call itself (median)",
                 result["engine_pause_call_ms"], "ms", ""),
                ("Docker's event -> the dashboard's server-sent event",
                 result["docker_event_to_server_sent_event_ms"], "ms", ""),
                ("state change -> server-sent event (median)",
                 result["state_change_to_event_ms"], "ms", ""),
                ("state change -> page in Chromium (median)",
                 result["state_change_to_page_ms"], "ms", "<= 1000 ms"),
                ("state change -> page in Chromium (worst)",
                 result["state_change_to_page_max_ms"], "ms", "<= 1000 ms"),
                (f"server RSS following {running} logs", result["server_rss_mb"], "MB",
                 "< 80 MB"),
                ("server peak RSS", result["server_peak_rss_mb"], "MB", "< 80 MB"),
            ]
            for label, value, unit, target in rows:
                print(f"{label:<58} {value:>8} {unit:<3} {target}")
        return 0
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=10)
        subprocess.run([args.devenv, "down", "--volumes", "--yes"], cwd=workdir, env=env,
                       capture_output=True, timeout=180)
        shutil.rmtree(workdir, ignore_errors=True)
        holder.close()


if __name__ == "__main__":
    sys.exit(main())
