#!/usr/bin/env python3
"""A host app under devenv vs the same command by hand: from `devenv up --only APP` to the
app answering, next to starting the very command in a shell and polling until it answers.
Medians of N alternating runs; the target is devenv at most 1.1x the hand.

Standard library only. The apps are the real dev servers the e2e tests run
(scripts/install-devservers.sh installs them under testbed/devservers/): an empty Vite
project (index.html only: the fastest app there is, so devenv's own part weighs most),
Metro serving a one-file bundle, and the Expo CLI offline; each polled on the same path
by hand and by devenv. Each run gets a throw-away project, removed after.

    python3 bench/hostapps.py                      # every app, 5 runs each
    python3 bench/hostapps.py --app vite --runs 9 --devenv .venv/bin/devenv --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "testbed" / "devservers" / "node_modules"
EXPO_MODULES = ROOT / "testbed" / "devservers" / "expo" / "node_modules"
TARGET = 1.1
POLL = 0.02


@dataclass(frozen=True)
class App:
    command: str
    path: str  # what "answers" means: a 2xx on this path
    modules: Path
    files: dict[str, str]
    environment: dict[str, str]


APPS = {
    "vite": App("exec node_modules/.bin/vite --port $PORT --strictPort --host 127.0.0.1", "/",
                MODULES, {"index.html": "<!doctype html><title>bench</title>\n"}, {}),
    "metro": App("exec node_modules/.bin/metro serve --port $PORT",
                 "/index.bundle?platform=web&dev=true", MODULES, {
        "index.js": "console.log('bench');\n",
        "package.json": '{"name": "bench", "private": true}\n',
        "metro.config.js": "const fs = require('fs'), path = require('path');\n"
        "module.exports = {watchFolders: "
        "[fs.realpathSync(path.join(__dirname, 'node_modules'))]};\n"}, {}),
    "expo": App("exec node_modules/.bin/expo start --offline --port $PORT", "/status",
                EXPO_MODULES, {
                    "package.json": '{"name": "bench", "private": true, "main": "index.js"}\n',
                    "app.json": '{"expo": {"name": "bench", "slug": "bench"}}\n',
                    "index.js": "import { registerRootComponent } from 'expo';\n"
                    "registerRootComponent(() => null);\n"}, {"CI": "1"}),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project(base: Path, app: App, port: int) -> Path:
    path = base / f"bench-{uuid.uuid4().hex[:8]}"
    (path / "web").mkdir(parents=True)
    (path / "web" / "node_modules").symlink_to(app.modules)
    for name, text in app.files.items():
        (path / "web" / name).write_text(text)
    environment = "".join(f"{k} = {json.dumps(v)}\n" for k, v in app.environment.items())
    (path / "devenv.toml").write_text(
        f"[host_apps.web]\ncommand = {json.dumps(app.command)}\ncwd = \"web\"\n"
        f"port = {port}\nprobe = \"http:{app.path}\"\n"
        + (f"[host_apps.web.environment]\n{environment}" if environment else ""))
    return path


def answers(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as reply:
            return 200 <= reply.status < 300
    except OSError:
        return False


def by_hand(app: App, path: Path, port: int) -> float:
    began = time.perf_counter()
    proc = subprocess.Popen(["sh", "-c", app.command], cwd=path / "web",
                            env={**os.environ, **app.environment, "PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while not answers(port, app.path):
            if proc.poll() is not None:
                raise SystemExit(f"{app.command.split()[1]} exited {proc.returncode}")
            time.sleep(POLL)
        return time.perf_counter() - began
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def with_devenv(devenv: str, path: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run([devenv, "up", "--only", "web", "--timeout", "120"], cwd=path,
                          env=env, capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"devenv up failed ({done.returncode}): {done.stderr[-600:]}")
    return took


def measure(name: str, args: argparse.Namespace, env: dict[str, str],
            tmp: Path) -> dict[str, object]:
    app = APPS[name]
    hand: list[float] = []
    devenv: list[float] = []
    for i in range(args.runs + 1):  # the first pair warms the caches, untimed
        port = free_port()
        path = project(tmp, app, port)
        run_env = {**env, "DEVENV_PROJECT": path.name}
        try:
            d = with_devenv(args.devenv, path, run_env)
        finally:
            subprocess.run([args.devenv, "down"], cwd=path, env=run_env, capture_output=True)
        h = by_hand(app, path, free_port())
        if i:
            devenv.append(d)
            hand.append(h)
    mine, theirs = statistics.median(devenv), statistics.median(hand)
    ratio = round(mine / theirs, 2)
    return {"figure": f"{name}: up to answering", "runs": args.runs,
            "devenv_s": round(mine, 3), "hand_s": round(theirs, 3), "ratio": ratio,
            "overhead_s": round(mine - theirs, 3), "target": TARGET,
            "verdict": "PASS" if ratio <= TARGET else "FAIL"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--app", choices=[*APPS, "all"], default="all")
    parser.add_argument("--devenv", default=shutil.which("devenv"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.devenv:
        raise SystemExit("no devenv command: pass --devenv")
    if not (MODULES / ".bin" / "vite").exists() or not (EXPO_MODULES / ".bin" / "expo").exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "install-devservers.sh")], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVENV_", "COMPOSE_"))}
    with tempfile.TemporaryDirectory(prefix="devenv-bench-apps-") as tmp:
        if env.pop("PYTHONDONTWRITEBYTECODE", None):
            # as bench/bench.py does: an editable install would compile devenv's modules
            # on every command, which an installed wheel never does
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        results = [measure(name, args, env, Path(tmp))
                   for name in (APPS if args.app == "all" else [args.app])]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'figure':<28} {'devenv':>8} {'by hand':>8} {'ratio':>6} {'target':>7}")
    for r in results:
        print(f"{r['figure']:<28} {r['devenv_s']:>7.3f}s {r['hand_s']:>7.3f}s "
              f"{r['ratio']:>6.2f} {'<=' + str(TARGET):>7} {r['verdict']}  "
              f"(devenv's own part {r['overhead_s']:.3f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
