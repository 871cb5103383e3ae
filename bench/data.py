#!/usr/bin/env python3
"""devenv's data speed targets, side by side with PostgreSQL's own tools on the same data.

Builds a database of a chosen size in a throw-away project (`--only db,cache`), then times,
alternating and taking medians:

  snapshot  `devenv db snapshot`            vs `pg_dump -Fc` of the same database
  restore   `devenv db restore` (with its automatic snapshot of the current data first)
                                            vs `pg_restore -j 2` into an empty database
  cold up   figure 2 of bench/bench.py: cold `devenv up` of the full stack vs the slowest
            service (postgres) started alone (`--no-cold-up` leaves it out)

pg_dump and pg_restore run inside the PostgreSQL container (its image has them), writing
and reading the dump inside the container. Standard library only; reuses bench/bench.py's
helpers (projects, ports, machine description, cleanup).

    python3 bench/data.py                     # 1 M rows (~130 MB), 3 runs: about 2 minutes
    python3 bench/data.py --big               # the issue's 5 M rows and an index (~650 MB)
    python3 bench/data.py --rows 200000 --runs 1 --no-cold-up --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as core  # noqa: E402  (bench/bench.py, beside this file)

SCHEMA = "devenv.bench.data/1"
TARGETS: dict[str, float | None] = {"snapshot": 0.5, "restore": 0.2, "restore_all": None,
                                    "cold_up": 1.2}
TITLES = {"snapshot": "`devenv db snapshot` vs `pg_dump -Fc`",
          "restore": "`devenv db restore` vs `pg_restore -j 2` into an empty database",
          "restore_all": "the same, until its automatic snapshot is written (info)",
          "cold_up": "cold `devenv up` (full stack) vs postgres alone",
          "cold_up_first": "the same, first-ever: no prepared cluster yet (initdb; info)"}
DB = "cirkelline_agents"


def build_data(p: core.Project, rows: int) -> int:
    """A table of `rows` rows (an int, an md5 text, a timestamp) and an index on the text,
    the shape of the issue's 5 M rows and an index (about 635 MB); returns the database
    size in bytes."""
    p.devenv("psql", "-q", "-v", "ON_ERROR_STOP=1", "-c",
             "DROP TABLE IF EXISTS big; CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, "
             f"now() AS t FROM generate_series(1, {rows}) g; "
             "CREATE INDEX big_a ON big (a); CHECKPOINT").check()
    size = p.devenv("psql", "-Atc", f"SELECT pg_database_size('{DB}')").check().stdout
    return int(size.strip())


def container(p: core.Project, service: str) -> str:
    label = f"label=com.docker.compose.project={p.name}"
    out = core.run(["docker", "ps", "-q", "--filter", label, "--filter",
                    f"label=com.docker.compose.service={service}"]).check().stdout.split()
    if not out:
        raise core.BenchError(f"no running {service} container in {p.name}")
    return out[0]


def in_pg(p: core.Project, script: str) -> core.Ran:
    return core.run(["docker", "exec", container(p, "postgres"), "sh", "-c", script])


def settle() -> None:
    """Flush the dirty pages earlier steps left (untimed, before every timed step, both
    sides): the engine flushes them at the next container exit, so without this a step
    would pay for the writes of the one before it."""
    core.run(["sync"]).check()


def measure(p: core.Project, runs: int, say: Any) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {
        "snapshot": {"devenv": [], "reference": []}, "restore": {"devenv": [], "reference": []},
        "restore_all": {"devenv": [], "reference": []}}
    user = "-U postgres"
    for n in range(runs):
        say(f"run {n + 1}/{runs}: pg_dump -Fc")
        settle()
        times["snapshot"]["reference"].append(
            in_pg(p, f"pg_dump -Fc {user} -d {DB} -f /tmp/ref.dump").check().seconds)
        say(f"run {n + 1}/{runs}: devenv db snapshot")
        settle()
        times["snapshot"]["devenv"].append(
            p.devenv("db", "snapshot", "bench", "--force").check().seconds)
        in_pg(p, f"dropdb {user} --if-exists r && createdb {user} r").check()
        say(f"run {n + 1}/{runs}: pg_restore -j 2")
        settle()
        times["restore"]["reference"].append(
            in_pg(p, f"pg_restore -j 2 {user} -d r /tmp/ref.dump").check().seconds)
        in_pg(p, f"dropdb {user} r").check()
        say(f"run {n + 1}/{runs}: devenv db restore")
        settle()
        restored = p.devenv("db", "restore", "bench").check().seconds
        times["restore"]["devenv"].append(restored)
        # the automatic snapshot of the replaced data is written after the command returns;
        # `db snapshots` waits for it: the whole cost, and the next run starts after it
        times["restore_all"]["devenv"].append(
            restored + p.devenv("db", "snapshots").check().seconds)
        times["restore_all"]["reference"].append(times["restore"]["reference"][-1])
    in_pg(p, "rm -f /tmp/ref.dump")
    return times


def cold_up(args: argparse.Namespace, say: Any) -> dict[str, Any] | None:
    say("cold up: bench/bench.py --figures 2")
    ran = core.run([sys.executable, str(Path(__file__).with_name("bench.py")), "--figures",
                    "2", "--runs", str(args.runs), "--json", "--devenv", args.devenv],
                   timeout=1800)
    if ran.returncode != 0:
        say(f"cold up not measured: {core._tail(ran.stderr, 5)}")
        return None
    figures = {f["id"]: f for f in json.loads(ran.stdout)["figures"]}
    return {key: {"devenv": [figures[fid]["devenv"]], "reference": [figures[fid]["reference"]]}
            for key, fid in (("cold_up", "2"), ("cold_up_first", "2f")) if fid in figures}


def row(key: str, runs: dict[str, list[float]]) -> dict[str, Any]:
    mine, ref = core.median(runs["devenv"]), core.median(runs["reference"])
    ratio = mine / ref if mine and ref else None
    limit = TARGETS.get(key)
    return {"figure": key, "title": TITLES[key], "devenv": mine, "reference": ref,
            "ratio": ratio, "target": f"<= {limit}x" if limit else "info",
            "result": "INFO" if limit is None else "-" if ratio is None else
            ("PASS" if ratio <= limit else "FAIL"),
            "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1 M)")
    parser.add_argument("--big", action="store_true",
                        help="5 M rows and an index, about 650 MB (the issue's figure)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-cold-up", action="store_true", help="leave out the cold up")
    parser.add_argument("--devenv", default=None, help="the devenv command (default: PATH)")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    args = parser.parse_args(argv)
    rows = 5_000_000 if args.big else args.rows
    args.devenv = core.devenv_command(args.devenv)
    if not args.devenv:
        print("bench/data.py: no devenv command (pass --devenv)", file=sys.stderr)
        return 2

    def say(message: str) -> None:
        print(f"bench/data.py: {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="devenv-bench-data-") as tmp:
        bench = core.Bench(args.devenv, core.interpreter_of(args.devenv), Path(tmp),
                           ("db", "cache"))
        try:
            machine = core.machine_info(args.devenv, bench.interpreter)
            # no prepared cluster: its background preparation would share the CPU with
            # the timed snapshots and restores
            p = bench.project("data", clusters=False)
            say(f"starting {p.name} (db, cache) and building {rows:,} rows")
            p.up().check()
            size = build_data(p, rows)
            say(f"database size {size / 1e6:.0f} MB")
            times = measure(p, args.runs, say)
            snap_bytes = sum(f.stat().st_size for f in
                             (p.path / ".devenv" / "snapshots" / "bench").iterdir())
        except core.BenchError as exc:
            print(f"bench/data.py: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.cleanup_all()
    if not args.no_cold_up:
        measured = cold_up(args, say)
        if measured:
            times.update(measured)
    report = {"schema": SCHEMA, "machine": machine,
              "settings": {"rows": rows, "runs": args.runs, "database_bytes": size,
                           "snapshot_bytes": snap_bytes},
              "figures": [row(key, runs) for key, runs in times.items()]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = machine
    print(f"machine: {m['cpu']}, {m['cores']} cores; Docker Engine {m['docker_engine']}, "
          f"Compose {m['compose']}; {m['devenv_version']}; {m['date']}")
    print(f"data: {rows:,} rows, database {size / 1e6:.0f} MB, snapshot {snap_bytes / 1e6:.0f} "
          f"MB; median of {args.runs} alternating runs\n")
    for f in report["figures"]:
        ratio = f"{f['ratio']:.2f}x" if f["ratio"] else "-"
        print(f"{f['title']:<66} {f['devenv'] or 0:7.2f} s {f['reference'] or 0:7.2f} s "
              f"{ratio:>6}  {f['target']}  {f['result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
