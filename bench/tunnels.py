#!/usr/bin/env python3
"""How long a named tunnel takes: `devenv tunnel up` to a working far end, the way back
after its ssh is killed, and `devenv tunnel down`. Medians of N runs.

Standard library only. Starts the test bed of tests/e2e/test_tunnels.py on this machine (a
devenv-test/sshd bastion and a devenv-test/postgres "prod-db" behind it on a throw-away
network, keys made here) and removes all of it afterwards.

    python3 bench/tunnels.py                  # 5 runs
    python3 bench/tunnels.py --runs 9 --devenv .venv/bin/devenv --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SSHD_IMAGE = "devenv-test/sshd:latest"
POSTGRES_IMAGE = "devenv-test/postgres:latest"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}): "
                         f"{result.stderr.strip()[-400:]}")
    return result.stdout.strip()


def keygen(path: Path) -> Path:
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))
    return path


def ls(devenv: str, env: dict[str, str], cwd: Path) -> dict:
    rows = json.loads(run(devenv, "tunnel", "ls", "--json", env=env, cwd=cwd))
    return {row["name"]: row for row in rows}


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--devenv", default=shutil.which("devenv"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.devenv:
        print("devenv is not on PATH (use --devenv)", file=sys.stderr)
        return 2
    args.devenv = str(Path(args.devenv).resolve())  # the project directory is the cwd
    work = Path(tempfile.mkdtemp(prefix="bench-tunnels-"))
    network = f"bench-{uuid.uuid4().hex[:8]}"
    names = [f"{network}-prod-db", f"{network}-bastion"]
    figures: dict[str, list[float]] = {"tunnel up": [], "back after ssh killed": [],
                                       "tunnel down": []}
    try:
        user_key, host_key = keygen(work / "id"), keygen(work / "host_key")
        mount = work / "mount"
        mount.mkdir()
        (mount / "host_key").write_bytes(host_key.read_bytes())
        (mount / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
        for f in mount.iterdir():
            f.chmod(0o644)
        run("docker", "network", "create", network)
        run("docker", "run", "-d", "--name", names[0], "--network", network,
            "--network-alias", "prod-db", "-e", "POSTGRES_PASSWORD=pw", POSTGRES_IMAGE)
        run("docker", "run", "-d", "--name", names[1], "--network", network,
            "-p", "127.0.0.1::22", "-v", f"{mount}:/keys:ro", SSHD_IMAGE)
        port = int(run("docker", "port", names[1], "22").splitlines()[0].rsplit(":", 1)[1])
        for _ in range(300):
            if subprocess.run(["docker", "exec", names[0], "pg_isready", "-q", "-h",
                               "127.0.0.1"], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        (work / "known_hosts").write_text(
            f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
        (work / "ssh_config").write_text(
            f"Host bastion\n  HostName 127.0.0.1\n  Port {port}\n  User tunnel\n"
            f"  IdentityFile {user_key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
            f"  UserKnownHostsFile {work / 'known_hosts'}\n")
        project = work / "project"
        project.mkdir()
        (project / "devenv.toml").write_text(
            '[tunnels.prod-db]\nvia = "bastion"\ntarget = "prod-db:5432"\nkind = "postgres"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVENV_")}
        env.update(DEVENV_PROJECT=network, DEVENV_SSH_CONFIG=str(work / "ssh_config"),
                   DEVENV_TUNNEL_PROD_DB_PASSWORD="pw")
        for _ in range(args.runs):
            began = time.perf_counter()
            run(args.devenv, "tunnel", "up", "prod-db", env=env, cwd=project)
            figures["tunnel up"].append(time.perf_counter() - began)
            row = ls(args.devenv, env, project)["prod-db"]
            os.kill(children(row["pid"])[0], 9)
            began = time.perf_counter()
            while True:  # up again: a new ssh, the tunnel answering (ls probes through it)
                again = ls(args.devenv, env, project)["prod-db"]
                if again["restarts"] >= 1 and again["state"] == "up":
                    break
                time.sleep(0.05)
            figures["back after ssh killed"].append(time.perf_counter() - began)
            began = time.perf_counter()
            run(args.devenv, "tunnel", "down", env=env, cwd=project)
            figures["tunnel down"].append(time.perf_counter() - began)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", *names], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: round(statistics.median(values), 2) for name, values in figures.items()}
    if args.json:
        print(json.dumps({"schema": "devenv.bench-tunnels/1", "runs": args.runs,
                          "median_seconds": medians}, indent=2))
    else:
        for name, value in medians.items():
            print(f"{name:<24} {value:6.2f} s  (median of {args.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
