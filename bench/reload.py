#!/usr/bin/env python3
"""The inner loop's figures: edit-to-served through `devenv watch` against a full
`devenv up` rebuild, on the same team-style API (a Dockerfile and source, made here).

    python3 bench/reload.py                  # median of 5 edits each way
    python3 bench/reload.py --runs 9 --json

Edit-to-served: from the moment the edited file is saved to the first response of the API's
URL that carries the change (polled every 20 ms). With watch, Compose's develop.watch syncs
the file and restarts the container; without it, `devenv up --only api` sees the changed
build context, rebuilds the image (from Docker's layer cache) and recreates the container.
Standard library only; uses bench.py's throw-away projects (own name, ports, clean-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b  # noqa: E402 - the sibling script, for its projects and machine info

SCHEMA = "devenv.bench-reload/1"
SYNC_TARGET = 2.0  # seconds
RATIO_TARGET = 0.2
POLL = 0.02

DOCKERFILE = """FROM {base}
WORKDIR /app
COPY . /app
{build_step}CMD ["python3", "/app/server.py"]
"""
SERVER = '''import http.server, json, os
from greeting import GREETING

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"greeting": GREETING}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def greeting_of(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=0.25) as response:
            return str(json.loads(response.read())["greeting"])
    except Exception:  # noqa: BLE001 - restarting: no answer yet
        return None


def edit_to_served(folder: Path, url: str, value: str, then: Any = None,
                   timeout: float = 180) -> float:
    """Save greeting.py with `value`; seconds until the API serves it."""
    (folder / "greeting.py").write_text(f"GREETING = {value!r}\n")
    began = time.perf_counter()
    if then is not None:
        then()
    while time.perf_counter() - began < timeout:
        if greeting_of(url) == value:
            return time.perf_counter() - began
        time.sleep(POLL)
    raise b.BenchError(f"{value!r} not served within {timeout:g} s")


class Watch:
    def __init__(self, project: b.Project):
        self.process = subprocess.Popen([project.bench.devenv, "watch", "--json"],
                                        cwd=project.path, env=project.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True)
        self.ready = threading.Event()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(180):
            self.stop()
            raise b.BenchError("devenv watch did not start watching")

    def _read(self) -> None:
        for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["kind"] == "watching":
                self.ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)
            self.process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--devenv", default=os.environ.get("DEVENV", "devenv"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--build-step", default="", metavar="COMMAND",
                        help="a RUN after the COPY, standing for the build a real API does "
                        "on its source (tsc, npm run build); default none")
    args = parser.parse_args(argv)
    devenv = os.path.abspath(b.shutil.which(args.devenv) or args.devenv)
    b.preflight(devenv)
    interpreter = b.interpreter_of(devenv)
    with tempfile.TemporaryDirectory(prefix="devenv-reload-") as tmp:
        root = Path(tmp)
        bench = b.Bench(devenv, interpreter, root, ("api",))
        project = bench.project("reload")
        folder = root / "backend"
        folder.mkdir()
        (folder / "Dockerfile").write_text(
            DOCKERFILE.format(base=b.TEST_IMAGES["DEVENV_API_BASE_IMAGE"],
                              build_step=f"RUN {args.build_step}\n" if args.build_step
                              else ""))
        (folder / "server.py").write_text(SERVER)
        (folder / "greeting.py").write_text("GREETING = 'start'\n")
        project.env["DEVENV_API_BUILD"] = str(folder)
        try:
            project.up().check()
            url = f"http://127.0.0.1:{project.published()['api']}/"
            synced: list[float] = []
            watch = Watch(project)
            try:
                for i in range(args.runs):
                    synced.append(edit_to_served(folder, url, f"synced {i}"))
                    time.sleep(1.0)  # let the probe after the restart finish
                events = [e for e in watch.events if e["kind"] == "restarted"]
            finally:
                watch.stop()
            rebuilt: list[float] = []
            for i in range(args.runs):
                rebuilt.append(edit_to_served(
                    folder, url, f"rebuilt {i}",
                    then=lambda: project.devenv("up", "--only", "api").check()))
        finally:
            bench.cleanup_all()
    sync_s, rebuild_s = b.median(synced), b.median(rebuilt)
    ratio = sync_s / rebuild_s
    report = {
        "schema": SCHEMA,
        "machine": b.machine_info(devenv, interpreter),
        "runs": args.runs,
        "build_step": args.build_step,
        "figures": [
            {"id": "R1", "title": "edit-to-served, synced change (devenv watch)",
             "seconds": round(sync_s, 3), "target": f"<= {SYNC_TARGET:g} s",
             "result": "PASS" if sync_s <= SYNC_TARGET else "FAIL",
             "runs": [round(x, 3) for x in synced],
             "compose_sync_restart": [e["seconds"] for e in events],
             "probe_ready_after": [e["ready_seconds"] for e in events]},
            {"id": "R2", "title": "edit-to-served, full `devenv up` rebuild",
             "seconds": round(rebuild_s, 3), "runs": [round(x, 3) for x in rebuilt]},
            {"id": "R3", "title": "R1 / R2", "ratio": round(ratio, 3),
             "target": f"<= {RATIO_TARGET:g}x",
             "result": "PASS" if ratio <= RATIO_TARGET else "FAIL"},
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        m = report["machine"]
        print(f"# devenv reload figures, {m.get('date')}: {m.get('cpu')} ({m.get('cores')} "
              f"cores), Docker {m.get('docker_engine')}, Compose {m.get('compose')}; "
              f"median of {args.runs}"
              + (f"; build step: RUN {args.build_step}" if args.build_step else ""))
        r1, r2, r3 = report["figures"]
        print(f"R1 {r1['title']:<48} {r1['seconds']:>7.2f} s   {r1['target']:<10} "
              f"{r1['result']}   runs {r1['runs']}")
        print(f"   compose's sync+restart {r1['compose_sync_restart']} s, then ready after "
              f"{r1['probe_ready_after']} s")
        print(f"R2 {r2['title']:<48} {r2['seconds']:>7.2f} s   {'':<10}        runs "
              f"{r2['runs']}")
        print(f"R3 {r3['title']:<48} {r3['ratio']:>7.2f}x   {r3['target']:<10} "
              f"{r3['result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
