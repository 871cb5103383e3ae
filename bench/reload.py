#!/usr/bin/env python3
"""The inner loop's figures: edit-to-served through `devenv watch` against a full
`devenv up` rebuild, side by side on two team-style APIs (a Dockerfile and source, made here):

- node: the team's Node/TypeScript API (testbed/team_api.py: 18 files, ~1,700 lines of
  TypeScript; its image copies package.json, tsconfig and src, runs `tsc`, starts `node
  dist/server.js`). In the loop it runs the team's dev command (DEVENV_API_COMMAND: `tsc
  --watch` + `node --watch`) and Compose only syncs (DEVENV_API_WATCH_ACTION=sync). The
  ratio target is judged on this API: it is what the team runs.
- python: a Python API without a build step (`COPY . /app`), synced and restarted
  (sync+restart): the floor, where a cached rebuild costs about a restart.

    python3 bench/reload.py                  # median of 5 edits each way, both APIs
    python3 bench/reload.py --api node --runs 9 --json

Edit-to-served: from the moment the edited file is saved to the first response of the API's
URL that carries the change (polled every 20 ms). With watch, Compose's develop.watch syncs
the file (and restarts the container, or the dev server reloads itself); without it,
`devenv up --only api` sees the changed build context, rebuilds the image (from Docker's
layer cache, so only the layers from the copied source on: for node the `tsc` run) and
recreates the container with the image's own command.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed"))
import team_api  # noqa: E402 - the team's Node/TypeScript API, shared with the tests

import bench as b  # noqa: E402 - the sibling script, for its projects and machine info

SCHEMA = "devenv.bench-reload/2"
SYNC_TARGET = 2.0  # seconds
RATIO_TARGET = 0.2
POLL = 0.02

def greeting_of(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=0.25) as response:
            return str(json.loads(response.read())["greeting"])
    except Exception:  # noqa: BLE001 - restarting: no answer yet
        return None


def edit_to_served(save: Callable[[str], None], url: str, value: str, then: Any = None,
                   timeout: float = 180) -> float:
    """Save the edited file with `value`; seconds until the API serves it."""
    save(value)
    began = time.perf_counter()
    if then is not None:
        then()
    while time.perf_counter() - began < timeout:
        if greeting_of(url) == value:
            return time.perf_counter() - began
        time.sleep(POLL)
    raise b.BenchError(f"{value!r} not served within {timeout:g} s")


@dataclass(frozen=True)
class Api:
    """One API measured: how it is written, edited, watched and rebuilt."""

    key: str
    title: str
    #: settings while watching (the dev command, the action)
    watch_env: dict[str, str]
    #: what was measured, for the report
    what: str
    #: a line the dev server logs once it watches its files (a save before may be missed)
    ready_line: str = ""


def python_api(folder: Path, build_step: str) -> tuple[Api, Callable[[str], None]]:
    edited = team_api.write_python_api(folder, b.TEST_IMAGES["DEVENV_API_BASE_IMAGE"],
                                       build_step=build_step)

    def save(value: str) -> None:
        edited.write_text(team_api.python_greeting_source(value))

    what = ("Python, `COPY . /app`" + (f" then RUN {build_step}" if build_step else
                                       ", no build step")
            + "; watch: sync+restart; rebuild: cached build, container recreated")
    return Api("python", "Python API, no build step", {}, what), save


def node_api(folder: Path, resources: int) -> tuple[Api, Callable[[str], None]]:
    edited = team_api.write_team_api(folder, resources=resources)
    files, lines = team_api.source_size(folder)

    def save(value: str) -> None:
        edited.write_text(team_api.greeting_source(value))

    what = (f"Node/TypeScript, {files} files, {lines} lines in src/; image: COPY "
            "package.json, tsconfig, src, RUN tsc, CMD node dist/server.js; watch: sync to "
            "the dev command (tsc --watch + node --watch); rebuild: cached build from the "
            "source layer (tsc), container recreated with the image's CMD")
    return Api("node", "team's Node/TypeScript API",
               {"DEVENV_API_COMMAND": team_api.DEV_COMMAND,
                "DEVENV_API_WATCH_ACTION": "sync"}, what, team_api.WATCHING), save


def wait_for_log(project: b.Project, text: str, timeout: float = 120) -> None:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if text in project.compose("logs", "api").stdout:
            return
        time.sleep(0.3)
    raise b.BenchError(f"the API never logged {text!r}")


def api_image(project: b.Project) -> str:
    """The id of the image the API's container runs."""
    ids = project.compose("ps", "-q", "api").stdout.split()
    if not ids:
        return ""
    return b.run(["docker", "inspect", "--format", "{{.Image}}", ids[0]]).stdout.strip()


def measure(bench: b.Bench, api: Api, folder: Path, save: Callable[[str], None],
            runs: int) -> dict[str, Any]:
    """Edit-to-served via watch, then via full `devenv up` rebuilds, on one project."""
    project = bench.project(f"reload-{api.key}")
    project.env["DEVENV_API_BUILD"] = str(folder)
    project.env.update(api.watch_env)
    # Values never served before: an image built by an earlier run from the same source
    # would otherwise be a cache hit and skip the build being measured.
    token = uuid.uuid4().hex[:8]
    images: set[str] = set()
    project.up().check()
    images.add(api_image(project))
    if api.ready_line:
        wait_for_log(project, api.ready_line)
    url = f"http://127.0.0.1:{project.published()['api']}/"
    synced: list[float] = []
    watch = Watch(project)
    try:
        # one edit first, not counted: a dev server's first compile after its start
        edit_to_served(save, url, f"warm-up watch {token}")
        time.sleep(1.0)
        for i in range(runs):
            synced.append(edit_to_served(save, url, f"synced {i} {token}"))
            time.sleep(1.0)  # let the probe after the change finish
        events = [e for e in watch.events if e["kind"] in ("restarted", "synced")][1:]
    finally:
        watch.stop()
    # The full rebuild is the image as the team builds it, with its own command.
    for key in api.watch_env:
        project.env.pop(key)

    def rebuild() -> None:
        project.devenv("up", "--only", "api").check()
        images.add(api_image(project))

    try:
        edit_to_served(save, url, f"warm-up rebuild {token}", then=rebuild)
        rebuilt = [edit_to_served(save, url, f"rebuilt {i} {token}", then=rebuild)
                   for i in range(runs)]
    finally:
        project.cleanup()
        # each rebuild left the one before it untagged: remove every image built here
        for image in images - {""}:
            b.run(["docker", "image", "rm", image])
    sync_s, rebuild_s = b.median(synced), b.median(rebuilt)
    ratio = sync_s / rebuild_s
    return {"api": api.key, "title": api.title, "measured": api.what,
            "watch": {"seconds": round(sync_s, 3), "target": f"<= {SYNC_TARGET:g} s",
                      "result": "PASS" if sync_s <= SYNC_TARGET else "FAIL",
                      "runs": [round(x, 3) for x in synced],
                      "compose_action": [e["seconds"] for e in events],
                      "probe_ready_after": [e["ready_seconds"] for e in events]},
            "rebuild": {"seconds": round(rebuild_s, 3), "runs": [round(x, 3) for x in rebuilt]},
            "ratio": round(ratio, 3)}


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
    parser.add_argument("--api", default="node,python",
                        help="which APIs to measure, comma separated: node (the team's, "
                        "judged), python (no build step); default both")
    parser.add_argument("--resources", type=int, default=team_api.DEFAULT_RESOURCES,
                        help="resource modules in the TypeScript API (default "
                        f"{team_api.DEFAULT_RESOURCES}: about 1,700 lines)")
    parser.add_argument("--build-step", default="", metavar="COMMAND",
                        help="python API: a RUN after the COPY; default none")
    args = parser.parse_args(argv)
    wanted = [a.strip() for a in args.api.split(",") if a.strip()]
    if not wanted or set(wanted) - {"node", "python"}:
        parser.error("--api takes node, python or both")
    devenv = b.devenv_command(args.devenv)
    if devenv is None:
        raise b.BenchError(f"no devenv command at {args.devenv}; pass --devenv PATH")
    b.preflight(devenv)
    if "node" in wanted and b.run(["docker", "image", "inspect", team_api.IMAGE],
                                  timeout=60).returncode:
        raise b.BenchError(f"the test image {team_api.IMAGE} is missing; run "
                           "`bash scripts/build-test-images.sh node`")
    interpreter = b.interpreter_of(devenv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="devenv-reload-") as tmp:
        root = Path(tmp)
        bench = b.Bench(devenv, interpreter, root, ("api",))
        try:
            for key in wanted:
                folder = root / f"backend-{key}"
                api, save = (node_api(folder, args.resources) if key == "node"
                             else python_api(folder, args.build_step))
                results.append(measure(bench, api, folder, save, args.runs))
        finally:
            bench.cleanup_all()
    figures: list[dict[str, Any]] = []
    for n, result in enumerate(results):
        judged = result["api"] == "node" or len(results) == 1
        ratio = result["ratio"]
        first = 3 * n + 1
        figures += [
            {"id": f"R{first}", "api": result["api"],
             "title": f"edit-to-served, synced change (devenv watch), {result['title']}",
             **result["watch"]},
            {"id": f"R{first + 1}", "api": result["api"],
             "title": f"edit-to-served, full `devenv up` rebuild, {result['title']}",
             **result["rebuild"]},
            {"id": f"R{first + 2}", "api": result["api"],
             "title": f"R{first} / R{first + 1}", "ratio": ratio,
             "target": f"<= {RATIO_TARGET:g}x" if judged else "",
             "result": ("PASS" if ratio <= RATIO_TARGET else "FAIL") if judged else "-"},
        ]
    report = {"schema": SCHEMA, "machine": b.machine_info(devenv, interpreter),
              "runs": args.runs, "build_step": args.build_step,
              "apis": {r["api"]: r["measured"] for r in results}, "figures": figures}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = report["machine"]
    print(f"# devenv reload figures, {m.get('date')}: {m.get('cpu')} ({m.get('cores')} "
          f"cores), Docker {m.get('docker_engine')}, Compose {m.get('compose')}; "
          f"median of {args.runs}")
    for key, what in report["apis"].items():
        print(f"# {key}: {what}")
    for f in figures:
        if "ratio" in f:
            print(f"{f['id']:<3} {f['title']:<70} {f['ratio']:>7.2f}x  {f['target']:<8} "
                  f"{f['result']}")
        elif "target" in f:
            print(f"{f['id']:<3} {f['title']:<70} {f['seconds']:>7.2f} s  {f['target']:<8} "
                  f"{f['result']}  runs {f['runs']}")
            print(f"    compose's action {f['compose_action']} s, then ready after "
                  f"{f['probe_ready_after']} s")
        else:
            print(f"{f['id']:<3} {f['title']:<70} {f['seconds']:>7.2f} s  {'':<8} "
                  f"      runs {f['runs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
