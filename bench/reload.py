#!/usr/bin/env python3
"""The inner loop's figures: edit-to-served through `devenv watch` with devenv's own sync
against Compose's `develop.watch`, side by side in one run, on the same API and the same
save; and a burst of 2,000 touched files (a branch switch).

The API is the team's Node/TypeScript API (testbed/team_api.py: 18 files, ~1,700 lines of
TypeScript; its image copies package.json, tsconfig and src, runs `tsc`, starts `node
dist/server.js`), running the team's dev command (DEVENV_API_COMMAND: `tsc --watch` +
`node --watch`) with the sync action: the engine only copies, the dev server reloads.
Its folder also holds static/ with 2,000 small files, synced too, for the burst.

    python3 bench/reload.py                  # median of 5 edits per engine
    python3 bench/reload.py --runs 9 --json

Edit-to-served: from the moment the edited file is saved to the first response of the API's
URL that carries the change (polled every 20 ms). The two engines alternate edit by edit
(compose, devenv, compose, ...) on one running API, so a busy moment of the machine costs
both alike. The burst touches every static file and edits the greeting in one go, with
devenv's sync: served within the target, and synced as one batch.
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed"))
import team_api  # noqa: E402 - the team's Node/TypeScript API, shared with the tests

import bench as b  # noqa: E402 - the sibling script, for its projects and machine info

SCHEMA = "devenv.bench-reload/3"
SERVED_TARGET = 0.8  # seconds, devenv's sync, median
RATIO_TARGET = 0.65  # devenv's sync / Compose's watch
BURST_FILES = 2000
BURST_TARGET = 2.0  # seconds
POLL = 0.02
ENGINES = ("compose", "devenv")

def greeting_of(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=0.25) as response:
            return str(json.loads(response.read())["greeting"])
    except Exception:  # noqa: BLE001 - restarting: no answer yet
        return None


def edit_to_served(save: Callable[[str], None], url: str, value: str,
                   timeout: float = 60) -> float:
    """Save the edited file with `value`; seconds until the API serves it."""
    save(value)
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if greeting_of(url) == value:
            return time.perf_counter() - began
        time.sleep(POLL)
    raise b.BenchError(f"{value!r} not served within {timeout:g} s")


def wait_for_log(project: b.Project, text: str, timeout: float = 120) -> None:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if text in project.compose("logs", "api").stdout:
            return
        time.sleep(0.3)
    raise b.BenchError(f"the API never logged {text!r}")


class Watch:
    """`devenv watch --json` with one engine, its events as they come."""

    def __init__(self, project: b.Project, engine: str):
        self.process = subprocess.Popen(
            [project.bench.devenv, "watch", "--json"], cwd=project.path,
            env={**project.env, "DEVENV_API_WATCH_ENGINE": engine},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.ready = threading.Event()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(180):
            self.stop()
            raise b.BenchError(f"devenv watch ({engine}) did not start watching")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["kind"] == "watching":
                self.ready.set()

    def synced(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] in ("synced", "restarted")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)
            self.process.wait(timeout=30)


def settle(watch: Watch, count: int, timeout: float = 10) -> None:
    """Wait until the watch has reported `count` syncs (its probe after the change done)."""
    deadline = time.perf_counter() + timeout
    while len(watch.synced()) < count and time.perf_counter() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)


def measure(bench: b.Bench, folder: Path, save: Callable[[str], None], static: Path,
            runs: int) -> dict[str, Any]:
    """Edit-to-served with each engine, alternating, then the burst, on one project."""
    project = bench.project("reload-node")
    project.env["DEVENV_API_BUILD"] = str(folder)
    project.env["DEVENV_API_COMMAND"] = team_api.DEV_COMMAND
    project.env["DEVENV_API_WATCH_ACTION"] = "sync"
    token = uuid.uuid4().hex[:8]
    served: dict[str, list[float]] = {e: [] for e in ENGINES}
    events: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
    burst: dict[str, Any] = {}
    try:
        project.up().check()
        wait_for_log(project, team_api.WATCHING)
        url = f"http://127.0.0.1:{project.published()['api']}/"
        for engine in ENGINES:  # one edit each first, not counted: the first compile
            watch = Watch(project, engine)
            try:
                edit_to_served(save, url, f"warm-up {engine} {token}")
                settle(watch, 1)
            finally:
                watch.stop()
        for i in range(runs):
            for engine in ENGINES:
                watch = Watch(project, engine)
                try:
                    served[engine].append(edit_to_served(save, url, f"{engine} {i} {token}"))
                    settle(watch, 1)
                    events[engine] += watch.synced()[:1]
                finally:
                    watch.stop()
        watch = Watch(project, "devenv")
        try:
            value = f"burst {token}"
            began = time.perf_counter()
            for path in static.iterdir():
                path.touch()
            touched = time.perf_counter() - began
            seconds = touched + edit_to_served(save, url, value)
            settle(watch, 1)
            time.sleep(1.0)  # a second batch, if any, would come now
            batches = watch.synced()
            burst = {"seconds": round(seconds, 3), "batches": len(batches),
                     "files": sum(e.get("files") or 0 for e in batches)}
        finally:
            watch.stop()
    finally:
        project.cleanup()
    return {"served": served, "events": events, "burst": burst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--devenv", default=os.environ.get("DEVENV", "devenv"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--resources", type=int, default=team_api.DEFAULT_RESOURCES,
                        help="resource modules in the TypeScript API (default "
                        f"{team_api.DEFAULT_RESOURCES}: about 1,700 lines)")
    args = parser.parse_args(argv)
    devenv = b.devenv_command(args.devenv)
    if devenv is None:
        raise b.BenchError(f"no devenv command at {args.devenv}; pass --devenv PATH")
    b.preflight(devenv)
    if b.run(["docker", "image", "inspect", team_api.IMAGE], timeout=60).returncode:
        raise b.BenchError(f"the test image {team_api.IMAGE} is missing; run "
                           "`bash scripts/build-test-images.sh node`")
    interpreter = b.interpreter_of(devenv)
    with tempfile.TemporaryDirectory(prefix="devenv-reload-") as tmp:
        root = Path(tmp)
        folder = root / "backend-node"
        edited = team_api.write_team_api(folder, resources=args.resources)
        files, lines = team_api.source_size(folder)
        static = folder / "static"
        static.mkdir()
        for n in range(BURST_FILES):
            (static / f"asset-{n:04d}.txt").write_text(f"asset {n}\n")

        def save(value: str) -> None:
            edited.write_text(team_api.greeting_source(value))

        bench = b.Bench(devenv, interpreter, root, ("api",))
        try:
            result = measure(bench, folder, save, static, args.runs)
        finally:
            bench.cleanup_all()
    ours, theirs = (b.median(result["served"][e]) for e in ("devenv", "compose"))
    ratio = ours / theirs

    def parts(engine: str) -> dict[str, Any]:
        evs = result["events"][engine]
        return {"in_container_after_save": [e.get("copied_seconds") for e in evs],
                "engine_action": [e.get("seconds") for e in evs]}

    burst = result["burst"]
    figures = [
        {"id": "R1", "title": "edit-to-served, devenv's sync (DEVENV_API_WATCH_ENGINE=devenv)",
         "seconds": round(ours, 3), "target": f"<= {SERVED_TARGET:g} s",
         "result": "PASS" if ours <= SERVED_TARGET else "FAIL",
         "runs": [round(x, 3) for x in result["served"]["devenv"]], **parts("devenv")},
        {"id": "R2", "title": "edit-to-served, Compose's develop.watch (=compose)",
         "seconds": round(theirs, 3), "target": "",
         "runs": [round(x, 3) for x in result["served"]["compose"]], **parts("compose")},
        {"id": "R3", "title": "R1 / R2", "ratio": round(ratio, 3),
         "target": f"<= {RATIO_TARGET:g}x", "result": "PASS" if ratio <= RATIO_TARGET
         else "FAIL"},
        {"id": "R4", "title": f"a burst of {BURST_FILES} touched files and the edit, "
         "devenv's sync: served", "seconds": burst["seconds"],
         "target": f"<= {BURST_TARGET:g} s, 1 batch",
         "result": "PASS" if burst["seconds"] <= BURST_TARGET and burst["batches"] == 1
         else "FAIL", "batches": burst["batches"], "files": burst["files"]},
    ]
    what = (f"Node/TypeScript, {files} files, {lines} lines in src/, plus {BURST_FILES} "
            "files in static/; dev command tsc --watch + node --watch; action sync")
    report = {"schema": SCHEMA, "machine": b.machine_info(devenv, interpreter),
              "runs": args.runs, "api": what, "figures": figures}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = report["machine"]
    print(f"# devenv reload figures, {m.get('date')}: {m.get('cpu')} ({m.get('cores')} "
          f"cores), Docker {m.get('docker_engine')}, Compose {m.get('compose')}; "
          f"median of {args.runs}")
    print(f"# {what}")
    for f in figures:
        if "ratio" in f:
            print(f"{f['id']:<3} {f['title']:<66} {f['ratio']:>7.2f}x  {f['target']:<10} "
                  f"{f['result']}")
            continue
        print(f"{f['id']:<3} {f['title']:<66} {f['seconds']:>7.2f} s  {f['target']:<10} "
              f"{f.get('result', '')}  " + (f"runs {f['runs']}" if "runs" in f else
                                             f"{f['batches']} batch(es), {f['files']} files"))
        if "engine_action" in f:
            print(f"    in the container after the save {f['in_container_after_save']} s; "
                  f"the engine's action {f['engine_action']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
