"""bench/reload.py works: `--runs 1 --json` against the installed devenv and a real engine.
No timing assertions: the script runs, reports its figures for both APIs (the team's
Node/TypeScript one and the Python one) with numbers, and cleans up."""

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
    assert report["schema"] == "devenv.bench-reload/2"
    assert [f["id"] for f in report["figures"]] == ["R1", "R2", "R3", "R4", "R5", "R6"]
    assert set(report["apis"]) == {"node", "python"}
    by_api = {api: [f for f in report["figures"] if f["api"] == api]
              for api in ("node", "python")}
    for watch, rebuild, ratio in by_api.values():
        assert watch["seconds"] > 0 and rebuild["seconds"] > 0 and ratio["ratio"] > 0
        assert watch["result"] in ("PASS", "FAIL")
        assert len(watch["compose_action"]) == 1  # one watch event per counted edit
    # the ratio target is judged on the team's Node/TypeScript API only
    assert by_api["node"][2]["result"] in ("PASS", "FAIL")
    assert by_api["python"][2]["result"] == "-"
    assert _bench_projects() <= before
