"""The click layer: parse, call one use case, print its report. No logic lives here.

The use cases are imported inside each command, so `devenv --help` loads click only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, DevenvError, Terminated


def _err(message: str) -> None:
    click.echo(message, err=True)


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
            _err("devenv: terminated (SIGTERM); run the command again to finish")
            ctx.exit(EXIT_TERMINATED)
        except DevenvError as exc:
            _err(f"devenv: error: {exc.message}")
            if exc.detail:
                _err(exc.detail.rstrip())
            if exc.hint:
                _err(f"hint: {exc.hint}")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _err("devenv: interrupted; run the command again to finish")
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # the last line of defence: never a traceback
            if os.environ.get("DEVENV_DEBUG"):
                raise
            _err(f"devenv: internal error: {type(exc).__name__}: {exc}")
            _err("hint: run again with DEVENV_DEBUG=1 for the traceback, and report it")
            ctx.exit(EXIT_FAILURE)


def _complete_services(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from ..config.projectfile import builtin_catalog, load_catalog
    from ..errors import DevenvError

    root = ctx.find_root().params.get("project_dir") if ctx.find_root() else None
    try:
        catalog = load_catalog((root or Path.cwd()).resolve())
    except DevenvError:  # a broken devenv.toml: complete the built-in names
        catalog = builtin_catalog()
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in catalog.valid_names() if name.startswith(last)]


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


def _context(ctx: click.Context, extra_flags: dict[str, str] | None = None,
             on_wait: Any = None) -> Any:
    from ..context import Context

    obj = ctx.obj
    return Context(project_dir=obj["project_dir"], environ=dict(os.environ),
                   flags={**obj["flags"], **(extra_flags or {})}, env_file=obj["env_file"],
                   notify=_err, on_wait=on_wait)


def _display(ctx: click.Context) -> Any:
    from .console import WaitDisplay, use_color

    stream = sys.stderr
    live = bool(getattr(stream, "isatty", lambda: False)())
    return WaitDisplay(stream, live=live,
                       color=use_color(stream, os.environ, ctx.obj["no_color"]))


def _words(values: tuple[str, ...]) -> list[str] | None:
    from ..config.catalog import split_words

    return split_words(values) if values else None


only_option = click.option(
    "--only", "only", multiple=True, metavar="NAMES", shell_complete=_complete_services,
    help="Comma-separated services or aliases (e.g. db,cache; a devenv.toml adds its own); "
    "repeatable. Dependencies follow.")
services_argument = click.argument("services", nargs=-1, metavar="[SERVICE]...",
                                   shell_complete=_complete_services)
secrets_option = click.option("--show-secrets", is_flag=True,
                              help="Show passwords in URLs (masked by default).")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="JSON output (versioned: see the `schema` field).")


@cli.command()
@only_option
@click.option("--timeout", type=str, default=None, metavar="SECONDS",
              help="Seconds to wait for every service (DEVENV_WAIT_TIMEOUT, default 120).")
@click.option("--reset-ports", is_flag=True, help="Forget remembered ports; plan afresh.")
@click.option("--strict-ports", is_flag=True,
              help="Fail instead of moving a service whose port is taken.")
@click.option("--watch", is_flag=True,
              help="Then sync the API's source into it as you save (see `devenv watch`).")
@click.option("--logs", "watch_logs", is_flag=True,
              help="With --watch: also print the API's own output (e.g. compile errors).")
@click.option("--lan", multiple=True, metavar="NAMES", shell_complete=_complete_services,
              help="Also publish these services on the LAN address, for phones; db and "
              "cache ask a second time (--yes).")
@click.option("-y", "--yes", is_flag=True, help="Confirm --lan db/cache without asking.")
@secrets_option
@click.option("--dashboard", "with_dashboard", is_flag=True,
              help="Then serve the live page (`devenv dashboard`) until Ctrl-C.")
@click.pass_context
def up(ctx: click.Context, only: tuple[str, ...], timeout: str | None, reset_ports: bool,
       strict_ports: bool, watch: bool, watch_logs: bool, lan: tuple[str, ...], yes: bool,
       show_secrets: bool, with_dashboard: bool) -> None:
    """Start the stack, wait until every service answers, print URLs.

    \b
    Example:
      devenv up --only db,cache
      devenv up --only api --watch --lan api
      devenv up --watch --logs
      devenv up --dashboard
    """
    from ..report import format_rows
    from ..stack import usecases as stack
    from .loop import loop_options

    if watch and with_dashboard:
        raise click.UsageError("--watch and --dashboard both run until Ctrl-C: run "
                               "`devenv dashboard` in a second terminal")
    if watch_logs and not watch:
        raise click.UsageError("--logs prints the API's output while watching: add --watch "
                               "(or follow every service with `devenv logs -f`)")
    flags = {"DEVENV_WAIT_TIMEOUT": timeout} if timeout is not None else {}
    loop = loop_options(ctx, _words(only), watch, _words(lan), yes)
    with _display(ctx) as display:
        result = stack.up(_context(ctx, flags, on_wait=display), _words(only),
                          reset_ports=reset_ports, strict_ports=strict_ports,
                          show_secrets=show_secrets, lan=loop.get("lan"))
    if not result.started:
        _err("already up to date: nothing started or recreated")
    click.echo(format_rows(result.rows))
    if watch:
        from .loop import follow_watch

        follow_watch(ctx, loop["watch"], as_json=False, logs=watch_logs)
    elif with_dashboard:
        from .dashboard import run_dashboard

        run_dashboard(ctx, None, False, False)


@cli.command()
@json_option
@click.option("--env", "as_env", is_flag=True,
              help="dotenv lines (DATABASE_URL, REDIS_URL, ...) for apps on the host.")
@click.option("--plan", "as_plan", is_flag=True,
              help="The spec's port allocation (dev, staging, prod) and this machine's plan.")
@click.option("--device", "as_device", is_flag=True,
              help="The API's URL from an iOS simulator, an Android emulator and a phone, "
              "and a QR code for the phone.")
@secrets_option
@click.pass_context
def ports(ctx: click.Context, as_json: bool, as_env: bool, as_plan: bool, as_device: bool,
          show_secrets: bool) -> None:
    """Print the live URLs, read back from Docker.

    \b
    Example:
      devenv ports --json
      devenv ports --env > .env.local
      devenv ports --device
    """
    from ..live import status as live
    from ..report import format_env, format_rows, format_rows_json

    if as_device:
        from .loop import print_devices

        print_devices(ctx, as_json)
        return

    if as_plan:
        from ..report import format_plan
        from ..stack import usecases as stack

        table = stack.port_table(_context(ctx))
        click.echo(json.dumps(table, indent=2) if as_json else format_plan(table))
        return
    from ..tunnels import usecases as tunnel_stack

    context = _context(ctx)
    settings, rows = live.ports(context, show_secrets=show_secrets)
    if as_env:
        click.echo(format_env({**live.app_env(settings, rows),
                               **tunnel_stack.app_env(context, settings)}), nl=False)
        return
    tunnels = tunnel_stack.rows(context, settings, show_secrets=show_secrets,
                                declared_only_if_running=True)
    _forward_note(settings)
    if as_json:
        click.echo(format_rows_json(rows, tunnels))
    elif rows or tunnels:
        if rows:
            click.echo(format_rows(rows))
            _say_not_running([r.service for r in rows if not r.running])
            service, code = live.login_refused(rows)
            if service:
                _err(f"hint: {live.login_hint(settings, service, code)}")
        if tunnels:
            from ..report import format_tunnels

            click.echo(("\n" if rows else "") + format_tunnels(tunnels))
        if show_secrets and rows:
            from ..stack.usecases import secrets_report

            click.echo(secrets_report(settings, _err))
    else:
        _err(f"nothing of project {settings.project} is running (start it: devenv up)")


def _say_not_running(names: list[str]) -> None:
    if names:
        _err(f"not running: {', '.join(names)} (start again: devenv up --only "
             f"{','.join(names)})")


def _forward_note(settings: Any) -> None:
    """Say it when the remote engine's forward dropped, reconnects, or came back."""
    from ..tunnels.forward import note

    text = note(settings)
    if text:
        _err(text)


@cli.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each service's state, health, URL, uptime and restarts.

    \b
    Example:
      devenv status --json
    """
    from ..live import status as live
    from ..report import format_status, format_status_json, format_tunnel_status
    from ..tunnels import usecases as tunnel_stack

    context = _context(ctx)
    settings, rows = live.status(context)
    tunnels = tunnel_stack.rows(context, settings, declared_only_if_running=True)
    _forward_note(settings)
    if as_json:
        click.echo(format_status_json(rows, tunnels))
    elif rows or tunnels:
        if rows:
            click.echo(format_status(rows))
            _say_not_running([r.service for r in rows if r.state != "running"])
        if tunnels:
            click.echo(("\n" if rows else "") + format_tunnel_status(tunnels))
    else:
        _err(f"nothing of project {settings.project} exists (start it: devenv up)")


@cli.command()
@services_argument
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N",
              help="Only the last N lines of each service.")
@click.pass_context
def logs(ctx: click.Context, services: tuple[str, ...], follow: bool, tail: int | None) -> None:
    """Print the services' logs (names or aliases; default all), secrets masked.

    \b
    Example:
      devenv logs db --tail 20
    """
    from ..stack import usecases as stack

    try:
        for line in stack.logs(_context(ctx), _words(services), follow=follow, tail=tail):
            click.echo(line)
    except KeyboardInterrupt as exc:  # the way out of `logs -f`: nothing is left to finish
        ctx.exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED)


@cli.command()
@services_argument
@secrets_option
@click.pass_context
def restart(ctx: click.Context, services: tuple[str, ...], show_secrets: bool) -> None:
    """Restart services (names or aliases; default all) and wait until they answer.

    \b
    Example:
      devenv restart api
    """
    from ..report import format_rows
    from ..stack import usecases as stack

    with _display(ctx) as display:
        rows = stack.restart(_context(ctx, on_wait=display), _words(services),
                             show_secrets=show_secrets)
    click.echo(format_rows(rows))


@cli.command()
@only_option
@click.pass_context
def render(ctx: click.Context, only: tuple[str, ...]) -> None:
    """Write compose/ from the templates without starting anything.

    \b
    Example:
      devenv render && docker compose -f compose/docker-compose.yml config
    """
    from ..stack import usecases as stack

    for result in stack.render(_context(ctx), _words(only)):
        click.echo(f"{result.status:<10} compose/{result.path}")


@cli.command()
@click.option("--volumes", is_flag=True, help="Also delete the data volumes (asks first).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting volumes.")
@click.option("--tunnels", is_flag=True,
              help="Also close the project's SSH tunnels (left open by default).")
@click.pass_context
def down(ctx: click.Context, volumes: bool, yes: bool, tunnels: bool) -> None:
    """Stop and remove the stack's containers and network; data is kept.

    \b
    Example:
      devenv down --volumes --yes   # also delete the data
      devenv down --tunnels         # also close the SSH tunnels
    """
    from ..stack import usecases as stack
    from ..tunnels import usecases as tunnel_stack

    context = _context(ctx)
    if volumes and not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("--volumes deletes data: add --yes to confirm in a script")
        project = context.settings().project
        click.confirm(f"Delete the data volumes of project {project}?", abort=True)
    result = stack.down(context, volumes=volumes)
    what = ", ".join(result.services) if result.services else "nothing was running"
    _err(f"removed: {what}" + ("; volumes deleted" if volumes else "; data kept"))
    for network, users in result.kept_networks.items():
        _err(f"kept network {network}: still used by {', '.join(users) or 'other containers'}"
             f" (remove it once they are gone: docker network rm {network})")
    if tunnels:
        closed = tunnel_stack.down(context)
        _err("tunnels closed: " + (", ".join(closed) if closed else "none was open"))
    else:
        still = tunnel_stack.open_tunnels(context.settings())
        if still:
            _err(f"tunnels left open: {', '.join(still)} (close them: devenv tunnel down, "
                 "or down --tunnels)")


@cli.command()
@json_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check everything `up` needs: engine, Compose, ports, images, disk, .env.

    Exits 1 when something blocks `up`, with the fix for each.

    \b
    Example:
      devenv doctor
    """
    from ..report import format_checks, format_checks_json
    from ..stack.doctor import blocking, run_checks

    checks = run_checks(_context(ctx))
    click.echo(format_checks_json(checks) if as_json else format_checks(checks))
    if blocking(checks):
        ctx.exit(EXIT_FAILURE)


@cli.command()
@json_option
@secrets_option
@click.pass_context
def config(ctx: click.Context, as_json: bool, show_secrets: bool) -> None:
    """Show the effective settings and where each came from.

    \b
    Example:
      devenv config --json
    """
    from ..report import format_config, format_config_json
    from ..stack import usecases as stack

    rows = stack.config(_context(ctx), show_secrets=show_secrets)
    click.echo(format_config_json(rows) if as_json else format_config(rows))


from .dashboard import dashboard as _dashboard  # noqa: E402  (click only)

cli.add_command(_dashboard)


def main() -> None:  # pragma: no cover - `python -m devenv`
    cli(prog_name="devenv")


from .loop import exec_, run, watch  # noqa: E402 - the commands' module imports cli

cli.add_command(watch)
cli.add_command(exec_)
cli.add_command(run)

from .data import COMMANDS as _DATA_COMMANDS  # noqa: E402  (they import the helpers above)

for _command in _DATA_COMMANDS:
    cli.add_command(_command)

from .tunnel import tunnel  # noqa: E402 - registered after the core commands

cli.add_command(tunnel)
