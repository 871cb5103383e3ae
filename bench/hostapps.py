#!/usr/bin/env python3
"""A host app under devenv vs the same command by hand: from `devenv up --only frontend` to
the frontend answering, next to starting the very command in a shell and polling until it
answers. Medians of N alternating runs; the target is devenv at most 1.1x the hand.

Standard library only. The frontend is a real Vite dev server (scripts/install-devservers.sh
installs it under testbed/devservers/); each run gets a throw-away project, removed after.

    python3 bench/hostapps.py                 # 5 runs
    python3 bench/hostapps.py --runs 9 --devenv .venv/bin/devenv --json
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "testbed" / "devservers" / "node_modules"
COMMAND = "exec node_modules/.bin/vite --port $PORT --strictPort --host 127.0.0.1"
TARGET = 1.1
POLL = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project(base: Path, port: int) -> Path:
    path = base / f"bench-{uuid.uuid4().hex[:8]}"
    (path / "web").mkdir(parents=True)
    (path / "web" / "node_modules").symlink_to(MODULES)
    (path / "web" / "index.html").write_text("<!doctype html><title>bench</title>\n")
    (path / "devenv.toml").write_text(
        f"[host_apps.web]\ncommand = {json.dumps(COMMAND)}\ncwd = \"web\"\nport = {port}\n"
        "probe = \"http:/\"\n")
    return path


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as reply:
            return 200 <= reply.status < 300
    except OSError:
        return False


def by_hand(path: Path, port: int) -> float:
    began = time.perf_counter()
    proc = subprocess.Popen(["sh", "-c", COMMAND], cwd=path / "web",
                            env={**os.environ, "PORT": str(port)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not answers(port):
            if proc.poll() is not None:
                raise SystemExit(f"vite exited {proc.returncode}")
            time.sleep(POLL)
        return time.perf_counter() - began
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def with_devenv(devenv: str, path: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run([devenv, "up", "--only", "web"], cwd=path, env=env,
                          capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"devenv up failed ({done.returncode}): {done.stderr[-600:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--devenv", default=shutil.which("devenv"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.devenv:
        raise SystemExit("no devenv command: pass --devenv")
    if not (MODULES / ".bin" / "vite").exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "install-devservers.sh")], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVENV_", "COMPOSE_"))}
    hand: list[float] = []
    devenv: list[float] = []
    with tempfile.TemporaryDirectory(prefix="devenv-bench-apps-") as tmp:
        if env.pop("PYTHONDONTWRITEBYTECODE", None):
            # as bench/bench.py does: an editable install would compile devenv's modules
            # on every command, which an installed wheel never does
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        for i in range(args.runs + 1):  # the first pair warms the caches, untimed
            port = free_port()
            path = project(Path(tmp), port)
            run_env = {**env, "DEVENV_PROJECT": path.name}
            try:
                d = with_devenv(args.devenv, path, run_env)
            finally:
                subprocess.run([args.devenv, "down"], cwd=path, env=run_env,
                               capture_output=True)
            h = by_hand(path, free_port())
            if i:
                devenv.append(d)
                hand.append(h)
    result = {"figure": "host app: up to answering", "runs": args.runs,
              "devenv_s": round(statistics.median(devenv), 3),
              "hand_s": round(statistics.median(hand), 3)}
    result["ratio"] = round(result["devenv_s"] / result["hand_s"], 2)
    result["overhead_s"] = round(result["devenv_s"] - result["hand_s"], 3)
    result["target"] = TARGET
    result["verdict"] = "PASS" if result["ratio"] <= TARGET else "FAIL"
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'figure':<28} {'devenv':>8} {'by hand':>8} {'ratio':>6} {'target':>7}")
        print(f"{result['figure']:<28} {result['devenv_s']:>7.3f}s {result['hand_s']:>7.3f}s "
              f"{result['ratio']:>6.2f} {'<=' + str(TARGET):>7} {result['verdict']}")
        print(f"devenv's own part: {result['overhead_s']:.3f}s (Python, planning against the "
              "engine, the supervisor's start, the probe)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
