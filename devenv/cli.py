"""The click layer: parse, call one use case, print its report. No logic lives here.

Imports of the use cases are deferred into each command so `devenv --help` loads click only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import EXIT_FAILURE, EXIT_INTERRUPTED, DevenvError


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


class DevenvGroup(click.Group):
    """The one place where errors become messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DevenvError as exc:
            _echo_err(f"devenv: error: {exc.message}")
            if exc.detail:
                _echo_err(exc.detail.rstrip())
            if exc.hint:
                _echo_err(f"hint: {exc.hint}")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _echo_err("devenv: interrupted; nothing was left half-written "
                      "(run the command again to finish)")
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks
            if os.environ.get("DEVENV_DEBUG"):
                raise
            _echo_err(f"devenv: internal error: {type(exc).__name__}: {exc}")
            _echo_err("hint: run again with DEVENV_DEBUG=1 for the traceback, and report it")
            ctx.exit(EXIT_FAILURE)


@click.group(cls=DevenvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory holding .env, templates/ and compose/ (default: current).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read settings from this file instead of <project-dir>/.env.")
@click.option("-p", "--project", default=None, metavar="NAME",
              help="Compose project name (DEVENV_PROJECT).")
@click.version_option(package_name="devenv")
@click.pass_context
def cli(ctx: click.Context, project_dir: Path | None, env_file: Path | None,
        project: str | None) -> None:
    """The whole local stack with one command: API, PostgreSQL, Redis, Adminer,
    Prometheus and Grafana, on ports that never collide.

    \b
    Example:
      devenv up                 # start everything, print the URLs
      devenv up --only db,cache # PostgreSQL and Redis only
      devenv ports --json       # the live URLs, for scripts
    """
    flags = {"DEVENV_PROJECT": project} if project else {}
    ctx.obj = {"project_dir": (project_dir or Path.cwd()).resolve(), "env_file": env_file,
               "flags": flags}


def _context(ctx: click.Context, extra_flags: dict[str, str] | None = None,
             on_wait: Callable[..., None] | None = None) -> Any:
    from .stack import Context

    obj = ctx.obj
    return Context(project_dir=obj["project_dir"], environ=dict(os.environ),
                   flags={**obj["flags"], **(extra_flags or {})}, env_file=obj["env_file"],
                   notify=_echo_err, on_wait=on_wait)


def _on_wait(event: Any) -> None:
    if event.state == "ready":
        _echo_err(f"  {event.service:<11} ready in {event.elapsed:.1f}s ({event.detail})")
    elif event.state == "failed":
        _echo_err(f"  {event.service:<11} FAILED after {event.elapsed:.1f}s: {event.detail}")


only_option = click.option(
    "--only", "only", multiple=True, metavar="NAMES",
    help="Comma-separated services or aliases (db, cache, admin, metrics, dashboards, "
    "backend); repeatable. Dependencies follow.")


@cli.command()
@only_option
@click.option("--timeout", type=str, default=None, metavar="SECONDS",
              help="Seconds to wait for every service (DEVENV_WAIT_TIMEOUT, default 120).")
@click.option("--reset-ports", is_flag=True, help="Forget remembered ports and plan afresh.")
@click.option("--strict-ports", is_flag=True,
              help="Fail instead of moving a service whose port is taken.")
@click.option("--show-secrets", is_flag=True, help="Show passwords in the URLs.")
@click.pass_context
def up(ctx: click.Context, only: tuple[str, ...], timeout: str | None, reset_ports: bool,
       strict_ports: bool, show_secrets: bool) -> None:
    """Render compose/, start the stack, wait until every service answers, print URLs.

    \b
    Example:
      devenv up --only db,cache
    """
    from . import stack
    from .catalog import split_words
    from .report import format_rows

    flags = {"DEVENV_WAIT_TIMEOUT": timeout} if timeout is not None else {}
    context = _context(ctx, flags, on_wait=_on_wait)
    result = stack.up(context, split_words(only) if only else None, reset_ports=reset_ports,
                      strict_ports=strict_ports, show_secrets=show_secrets)
    if not result.started:
        _echo_err("already up to date: nothing started or recreated")
    click.echo(format_rows(result.rows))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per service.")
@click.option("--env", "as_env", is_flag=True,
              help="dotenv lines (DATABASE_URL, REDIS_URL, ...) for apps on the host.")
@click.option("--show-secrets", is_flag=True, help="Show passwords in the URLs.")
@click.pass_context
def ports(ctx: click.Context, as_json: bool, as_env: bool, show_secrets: bool) -> None:
    """Print the live URLs, read back from Docker.

    \b
    Example:
      devenv ports --json
    """
    from . import stack
    from .report import format_env, format_rows, format_rows_json

    settings, rows = stack.live_rows(_context(ctx), show_secrets=show_secrets)
    if as_env:
        click.echo(format_env(stack.app_env(settings, rows)), nl=False)
    elif as_json:
        click.echo(format_rows_json(rows))
    elif rows:
        click.echo(format_rows(rows))
    else:
        _echo_err(f"nothing of project {settings.project} is running (start it: devenv up)")


@cli.command()
@only_option
@click.pass_context
def render(ctx: click.Context, only: tuple[str, ...]) -> None:
    """Write compose/ from the templates without starting anything.

    \b
    Example:
      devenv render && docker compose -f compose/docker-compose.yml config
    """
    from . import stack
    from .catalog import split_words

    for result in stack.render(_context(ctx), split_words(only) if only else None):
        click.echo(f"{result.status:<10} compose/{result.path}")


@cli.command()
@click.option("--volumes", is_flag=True, help="Also delete the data volumes (asks first).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting volumes.")
@click.pass_context
def down(ctx: click.Context, volumes: bool, yes: bool) -> None:
    """Stop and remove the stack's containers and network; data is kept.

    \b
    Example:
      devenv down --volumes --yes   # also delete the data
    """
    from . import stack

    context = _context(ctx)
    if volumes and not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("--volumes deletes data: add --yes to confirm in a script")
        project = context.settings().project
        click.confirm(f"Delete the data volumes of project {project}?", abort=True)
    removed = stack.down(context, volumes=volumes)
    what = ", ".join(removed) if removed else "nothing was running"
    _echo_err(f"stopped: {what}" + ("; volumes deleted" if volumes else "; data kept"))


def main() -> None:  # pragma: no cover - console entry point alias
    cli(prog_name="devenv")
