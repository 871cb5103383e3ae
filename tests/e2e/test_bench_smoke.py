"""bench/bench.py works: `--quick --json` against the installed devenv and a real engine.

No timing assertions: a figure may FAIL its target without failing this test. The test only
checks that the script runs, cleans up after itself, and reports every figure it should,
with numbers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import devenv_command

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench.py"
QUICK_FIGURES = {"3", "4", "5"}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0


def _bench_containers() -> set[str]:
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Label \"com.docker.compose."
                          "project\"}}"], capture_output=True, text=True, check=True).stdout
    return {line for line in out.split() if line.startswith("bench-")}


def test_quick_json_reports_every_figure(tmp_path: Path, engine: str) -> None:
    before = _bench_containers()

    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", "--devenv", devenv_command(),
         "--tmpdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    report = json.loads(result.stdout)
    assert report["schema"] == "devenv.bench/1"
    machine = report["machine"]
    for key in ("cpu", "cores", "docker_engine", "compose", "date"):
        assert machine[key], key
    assert report["settings"]["quick"] is True
    assert report["settings"]["runs"] == 1
    assert set(report["settings"]["services"]) == {"postgres", "redis"}

    figures = {f["id"]: f for f in report["figures"]}
    assert set(figures) == QUICK_FIGURES
    for fid, figure in figures.items():
        assert figure["result"] in ("PASS", "FAIL"), (fid, figure)
        assert _number(figure["devenv"]), (fid, figure)
        assert _number(figure["reference"]), (fid, figure)
        assert _number(figure["ratio"]), (fid, figure)
        assert math.isclose(figure["ratio"], figure["devenv"] / figure["reference"])
        assert figure["target"].startswith("<="), (fid, figure)
        assert len(figure["runs"]["devenv"]) == len(figure["runs"]["reference"]) >= 1
    assert set(report["skipped"]) == {"1", "1w", "2", "2f", "6", "7"}

    # everything the benchmark started is gone, and its temp dirs too
    assert _bench_containers() <= before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("devenv-bench-")]
