"""Run the installed devenv with a pause between its plan and its first `docker compose up`
(test-only; production code has no hook for it).

    python paused.py SEAM devenv-args...

It wraps the engine the CLI connects to, at devenv's one seam to Docker: before the first
`compose up` it writes the planned host ports, read from the compose file devenv has just
rendered, to SEAM.plan ({"service": port}) and waits (up to 30 s) for SEAM.go. Meanwhile a
test can take a planned port (a real race), send Ctrl-C, or start a second devenv.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

import devenv.engine
from devenv.cli.main import cli


def planned_ports(compose_file: Path) -> dict[str, int]:
    doc = yaml.safe_load(compose_file.read_text())
    return {name: int(service["ports"][0]["published"])
            for name, service in doc["services"].items() if service.get("ports")}


def pause_before_first_up(seam: Path) -> None:
    real_connect = devenv.engine.connect
    paused: list[bool] = []

    def connect(environ: Any) -> Any:
        engine = real_connect(environ)
        real_compose = engine.compose

        def compose(project: str, compose_file: Path | None = None) -> Any:
            client = real_compose(project, compose_file)
            real_up = client.up

            def up(services: Any, build: bool = False) -> None:
                if not paused and compose_file is not None:
                    paused.append(True)
                    Path(f"{seam}.plan").write_text(json.dumps(planned_ports(compose_file)))
                    deadline = time.monotonic() + 30
                    while not Path(f"{seam}.go").exists() and time.monotonic() < deadline:
                        time.sleep(0.05)
                real_up(services, build=build)

            client.up = up
            return client

        engine.compose = compose
        return engine

    devenv.engine.connect = connect


if __name__ == "__main__":
    pause_before_first_up(Path(sys.argv[1]))
    cli(sys.argv[2:], prog_name="devenv")
