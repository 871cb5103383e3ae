"""bench/reload.py works: `--runs 1 --json` against the installed devenv and a real engine.
No timing assertions: the script runs, reports its three figures with numbers, and cleans up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import devenv_command

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[2] / "bench" / "reload.py"


def _bench_projects() -> set[str]:
    out = subprocess.run(["docker", "ps", "-a", "--format",
                          '{{.Label "com.docker.compose.project"}}'],
                         capture_output=True, text=True, check=True).stdout
    return {line for line in out.split() if line.startswith("bench-")}


def test_reload_bench_reports_its_figures(tmp_path: Path, engine: str) -> None:
    before = _bench_projects()
    result = subprocess.run([sys.executable, str(BENCH), "--runs", "1", "--json",
                             "--devenv", devenv_command()],
                            capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema"] == "devenv.bench-reload/1"
    r1, r2, r3 = report["figures"]
    assert [f["id"] for f in report["figures"]] == ["R1", "R2", "R3"]
    assert r1["seconds"] > 0 and r2["seconds"] > 0 and r3["ratio"] > 0
    assert r1["result"] in ("PASS", "FAIL") and r3["result"] in ("PASS", "FAIL")
    assert len(r1["compose_sync_restart"]) == 1  # one watch event per edit
    assert _bench_projects() <= before
