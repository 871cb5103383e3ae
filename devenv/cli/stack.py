"""The stack's commands: up, ports, status, logs, restart, render, down, doctor, config.
Parse, call one use case, print its report; the use cases are imported inside each
command, so `devenv --help` loads click only."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from .common import (
    complete_services,
    err,
    json_option,
    make_context,
    only_option,
    secrets_option,
    services_argument,
    wait_display,
    words,
)


@dataclass(frozen=True)
class UpOptions:
    """`devenv up`'s flags as one value (click hands them over as keywords)."""

    only: tuple[str, ...]
    timeout: str | None
    reset_ports: bool
    strict_ports: bool
    watch: bool
    watch_logs: bool
    lan: tuple[str, ...]
    yes: bool
    show_secrets: bool
    with_dashboard: bool


@click.command()
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
@click.option("--lan", multiple=True, metavar="NAMES", shell_complete=complete_services,
              help="Also publish these services on the LAN address, for phones; db and "
              "cache ask a second time (--yes).")
@click.option("-y", "--yes", is_flag=True, help="Confirm --lan db/cache without asking.")
@secrets_option
@click.option("--dashboard", "with_dashboard", is_flag=True,
              help="Then serve the live page (`devenv dashboard`) until Ctrl-C.")
@click.pass_context
def up(ctx: click.Context, **flags: Any) -> None:
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

    options = UpOptions(**flags)
    if options.watch and options.with_dashboard:
        raise click.UsageError("--watch and --dashboard both run until Ctrl-C: run "
                               "`devenv dashboard` in a second terminal")
    if options.watch_logs and not options.watch:
        raise click.UsageError("--logs prints the API's output while watching: add --watch "
                               "(or follow every service with `devenv logs -f`)")
    timeout = {"DEVENV_WAIT_TIMEOUT": options.timeout} if options.timeout is not None else {}
    only = words(options.only)
    loop = loop_options(ctx, only, options.watch, words(options.lan), options.yes)
    with wait_display(ctx) as display:
        result = stack.up(make_context(ctx, timeout, on_wait=display), only,
                          reset_ports=options.reset_ports, strict_ports=options.strict_ports,
                          show_secrets=options.show_secrets, lan=loop.get("lan"))
    if not result.started:
        err("already up to date: nothing started or recreated")
    click.echo(format_rows(result.rows))
    if options.watch:
        from .loop import follow_watch

        follow_watch(ctx, loop["watch"], as_json=False, logs=options.watch_logs)
    elif options.with_dashboard:
        from .dashboard import run_dashboard

        run_dashboard(ctx, None, False, False)


@click.command()
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
    if as_device:
        from .loop import print_devices

        print_devices(ctx, as_json)
    elif as_plan:
        _print_plan(ctx, as_json)
    else:
        _print_ports(ctx, as_json, as_env, show_secrets)


def _print_plan(ctx: click.Context, as_json: bool) -> None:
    from ..report import format_plan
    from ..stack import usecases as stack

    table = stack.port_table(make_context(ctx))
    click.echo(json.dumps(table, indent=2) if as_json else format_plan(table))


def _print_ports(ctx: click.Context, as_json: bool, as_env: bool, show_secrets: bool) -> None:
    """The live URLs: as dotenv lines, JSON, or tables with what to do about each problem."""
    from ..live import status as live
    from ..report import format_env, format_rows, format_rows_json
    from ..tunnels import usecases as tunnel_stack

    context = make_context(ctx)
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
        return
    if not rows and not tunnels:
        err(f"nothing of project {settings.project} is running (start it: devenv up)")
        return
    if rows:
        click.echo(format_rows(rows))
        _say_not_running([r.service for r in rows if not r.running])
        service, code = live.login_refused(rows)
        if service:
            err(f"hint: {live.login_hint(settings, service, code)}")
    if tunnels:
        from ..report import format_tunnels

        click.echo(("\n" if rows else "") + format_tunnels(tunnels))
    if show_secrets and rows:
        from ..stack.usecases import secrets_report

        click.echo(secrets_report(settings, err))


def _say_not_running(names: list[str]) -> None:
    if names:
        err(f"not running: {', '.join(names)} (start again: devenv up --only "
             f"{','.join(names)})")


def _forward_note(settings: Any) -> None:
    """Say it when the remote engine's forward dropped, reconnects, or came back."""
    from ..tunnels.forward import note

    text = note(settings)
    if text:
        err(text)


@click.command()
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

    context = make_context(ctx)
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
        err(f"nothing of project {settings.project} exists (start it: devenv up)")


@click.command()
@services_argument
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N",
              help="Only the last N lines of each service.")
@click.pass_context
def logs(ctx: click.Context, services: tuple[str, ...], follow: bool, tail: int | None) -> None:
    """Print the services' logs (names or aliases; default all), secrets masked.

    A host app devenv runs is named the same way; its log is kept under .devenv/.

    \b
    Example:
      devenv logs db --tail 20
    """
    from ..stack import usecases as stack

    try:
        for line in stack.logs(make_context(ctx), words(services), follow=follow, tail=tail):
            click.echo(line)
    except KeyboardInterrupt as exc:  # the way out of `logs -f`: nothing is left to finish
        ctx.exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED)


@click.command()
@services_argument
@secrets_option
@click.pass_context
def restart(ctx: click.Context, services: tuple[str, ...], show_secrets: bool) -> None:
    """Restart services and host apps (names or aliases; default all that run) and wait
    until they answer.

    \b
    Example:
      devenv restart api
    """
    from ..report import format_rows
    from ..stack import usecases as stack

    with wait_display(ctx) as display:
        rows = stack.restart(make_context(ctx, on_wait=display), words(services),
                             show_secrets=show_secrets)
    click.echo(format_rows(rows))


@click.command()
@only_option
@click.pass_context
def render(ctx: click.Context, only: tuple[str, ...]) -> None:
    """Write compose/ from the templates without starting anything.

    \b
    Example:
      devenv render && docker compose -f compose/docker-compose.yml config
    """
    from ..stack import usecases as stack

    for result in stack.render(make_context(ctx), words(only)):
        click.echo(f"{result.status:<10} compose/{result.path}")


@click.command()
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

    context = make_context(ctx)
    if volumes and not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("--volumes deletes data: add --yes to confirm in a script")
        project = context.settings().project
        click.confirm(f"Delete the data volumes of project {project}?", abort=True)
    result = stack.down(context, volumes=volumes)
    what = ", ".join(result.services) if result.services else "nothing was running"
    err(f"removed: {what}" + ("; volumes deleted" if volumes else "; data kept"))
    for network, users in result.kept_networks.items():
        err(f"kept network {network}: still used by {', '.join(users) or 'other containers'}"
             f" (remove it once they are gone: docker network rm {network})")
    if tunnels:
        closed = tunnel_stack.down(context)
        err("tunnels closed: " + (", ".join(closed) if closed else "none was open"))
    else:
        still = tunnel_stack.open_tunnels(context.settings())
        if still:
            err(f"tunnels left open: {', '.join(still)} (close them: devenv tunnel down, "
                 "or down --tunnels)")


@click.command()
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

    checks = run_checks(make_context(ctx))
    click.echo(format_checks_json(checks) if as_json else format_checks(checks))
    if blocking(checks):
        ctx.exit(EXIT_FAILURE)


@click.command()
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

    rows = stack.config(make_context(ctx), show_secrets=show_secrets)
    click.echo(format_config_json(rows) if as_json else format_config(rows))
