#!/usr/bin/env python3
"""[data] branches' speed targets, side by side in one throw-away project (`--only
db,cache`, a real git repository), alternating and taking medians:

  switch  `devenv up` after `git checkout` of a branch that has data (copies nothing:
          PostgreSQL and Redis recreated on its volumes)   vs `devenv restart db`
  create  the first `devenv up` on a new branch: its data copied from a parent of the
          chosen size                                      vs `devenv db restore` of the
                                                              same data (a snapshot of it)

Reuses bench/bench.py's helpers and bench/data.py's database.

    python3 bench/branches.py                 # 1 M rows (~130 MB), 3 runs
    python3 bench/branches.py --big           # 5 M rows and an index (~650 MB)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as databench  # noqa: E402

import bench as core  # noqa: E402

SCHEMA = "devenv.bench.branches/1"
TARGETS = {"switch": 1.5, "create": 1.1}
TITLES = {"switch": "switch to a branch with data vs `devenv restart db`",
          "create": "a new branch's data from its parent vs `devenv db restore`"}


def git(p: core.Project, *args: str) -> None:
    core.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
             cwd=p.path).check()


def measure(p: core.Project, runs: int, say: Any) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {
        "switch": {"devenv": [], "reference": []}, "create": {"devenv": [], "reference": []}}
    up = ("up", "--only", "db,cache")
    for n in range(runs):
        git(p, "checkout", "-q", "main")
        p.devenv(*up).check()
        git(p, "checkout", "-q", "-b", f"bench-{n}")
        say(f"run {n + 1}/{runs}: first up on a new branch (copy from main)")
        databench.settle()
        times["create"]["devenv"].append(p.devenv(*up).check().seconds)
        say(f"run {n + 1}/{runs}: devenv db restore of the same data")
        databench.settle()
        times["create"]["reference"].append(p.devenv("db", "restore", "bench").check().seconds)
        p.devenv("db", "snapshots").check()  # waits for its automatic snapshot, untimed
        git(p, "checkout", "-q", "main")
        say(f"run {n + 1}/{runs}: switch back to main")
        databench.settle()
        times["switch"]["devenv"].append(p.devenv(*up).check().seconds)
        say(f"run {n + 1}/{runs}: devenv restart db")
        databench.settle()
        times["switch"]["reference"].append(p.devenv("restart", "db").check().seconds)
        p.devenv("db", "branch", "rm", f"bench-{n}", "--yes").check()
    return times


def row(key: str, runs: dict[str, list[float]]) -> dict[str, Any]:
    mine, ref = core.median(runs["devenv"]), core.median(runs["reference"])
    ratio = mine / ref if mine and ref else None
    return {"figure": key, "title": TITLES[key], "devenv": mine, "reference": ref,
            "ratio": ratio, "target": f"<= {TARGETS[key]}x",
            "result": "-" if ratio is None else ("PASS" if ratio <= TARGETS[key] else "FAIL"),
            "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1 M)")
    parser.add_argument("--big", action="store_true", help="5 M rows and an index (~650 MB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devenv", default=None, help="the devenv command (default: PATH)")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    args = parser.parse_args(argv)
    rows = 5_000_000 if args.big else args.rows
    args.devenv = core.devenv_command(args.devenv)
    if not args.devenv:
        print("bench/branches.py: no devenv command (pass --devenv)", file=sys.stderr)
        return 2

    def say(message: str) -> None:
        print(f"bench/branches.py: {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="devenv-bench-branches-") as tmp:
        bench = core.Bench(args.devenv, core.interpreter_of(args.devenv), Path(tmp),
                           ("db", "cache"))
        try:
            machine = core.machine_info(args.devenv, bench.interpreter)
            p = bench.project("branches", clusters=False)
            (p.path / "devenv.toml").write_text("[data]\nbranches = true\n")
            git(p, "init", "-q", "-b", "main")
            git(p, "commit", "-q", "--allow-empty", "-m", "bench")
            say(f"starting {p.name} (db, cache) on main and building {rows:,} rows")
            p.up().check()
            size = databench.build_data(p, rows)
            say(f"database size {size / 1e6:.0f} MB")
            p.devenv("db", "snapshot", "bench").check()
            times = measure(p, args.runs, say)
        except core.BenchError as exc:
            print(f"bench/branches.py: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.cleanup_all()
    report = {"schema": SCHEMA, "machine": machine,
              "settings": {"rows": rows, "runs": args.runs, "database_bytes": size},
              "figures": [row(key, runs) for key, runs in times.items()]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = machine
    print(f"machine: {m['cpu']}, {m['cores']} cores; Docker Engine {m['docker_engine']}, "
          f"Compose {m['compose']}; {m['devenv_version']}; {m['date']}")
    print(f"data: {rows:,} rows, database {size / 1e6:.0f} MB; median of {args.runs} "
          "alternating runs\n")
    for f in report["figures"]:
        ratio = f"{f['ratio']:.2f}x" if f["ratio"] else "-"
        print(f"{f['title']:<58} {f['devenv'] or 0:7.2f} s {f['reference'] or 0:7.2f} s "
              f"{ratio:>6}  {f['target']}  {f['result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
