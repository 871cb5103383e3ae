"""The click group: the one place where errors become messages and exit codes, and the
list of commands. The commands live in the modules beside this one (stack, loop, data,
tunnel, dashboard), which import `common`, never this module; each parses, calls one use
case and prints. Use cases are imported inside each command, so `devenv --help` loads
click only.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, DevenvError, Terminated
from . import ca, dashboard, data, loop, projects, stack, tunnel
from .common import err


def _terminate(signum: int, frame: Any) -> None:
    # A second SIGTERM ends the process at once, as a second Ctrl-C would.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


@contextmanager
def sigterm_like_ctrl_c() -> Iterator[None]:
    """SIGTERM raises Terminated, so it unwinds like Ctrl-C: locks released, no traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class DevenvGroup(click.Group):
    """The one place where errors become messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with sigterm_like_ctrl_c():
                return super().invoke(ctx)
        except Terminated:
            err("devenv: terminated (SIGTERM); run the command again to finish")
            ctx.exit(EXIT_TERMINATED)
        except DevenvError as exc:
            err(f"devenv: error: {exc.message}")
            if exc.detail:
                err(exc.detail.rstrip())
            if exc.hint:
                err(f"hint: {exc.hint}")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err("devenv: interrupted; run the command again to finish")
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # the last line of defence: never a traceback
            if os.environ.get("DEVENV_DEBUG"):
                raise
            err(f"devenv: internal error: {type(exc).__name__}: {exc}")
            err("hint: run again with DEVENV_DEBUG=1 for the traceback, and report it")
            ctx.exit(EXIT_FAILURE)


@click.group(cls=DevenvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory holding .env, templates/ and compose/ (default: current).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read settings from this file instead of <project-dir>/.env.")
@click.option("-p", "--project", default=None, metavar="NAME",
              help="Compose project name (DEVENV_PROJECT).")
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR works too).")
@click.version_option(package_name="devenv")
@click.pass_context
def cli(ctx: click.Context, project_dir: Path | None, env_file: Path | None,
        project: str | None, no_color: bool) -> None:
    """The whole local stack with one command: API, PostgreSQL, Redis, Adminer,
    Prometheus and Grafana, on host ports that never collide.

    \b
    Example:
      devenv up                  # start everything, print the URLs
      devenv up --only db,cache  # PostgreSQL and Redis only
      devenv ports --json        # the live URLs, for scripts
    """
    ctx.obj = {"project_dir": (project_dir or Path.cwd()).resolve(), "env_file": env_file,
               "flags": {"DEVENV_PROJECT": project} if project is not None else {},
               "no_color": no_color}


for _command in (stack.up, stack.down, stack.ports, stack.status, stack.logs, stack.restart,
                 stack.render, stack.doctor, stack.config, projects.ls, loop.watch, loop.exec_,
                 loop.run, *data.COMMANDS, tunnel.tunnel, dashboard.dashboard, ca.ca):
    cli.add_command(_command)


def main() -> None:  # pragma: no cover - `python -m devenv`
    cli(prog_name="devenv")
