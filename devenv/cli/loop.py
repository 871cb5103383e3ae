"""The inner loop's commands: watch, exec, run; and the helpers behind `up --watch`,
`up --lan` and `ports --device`. Parse, call one use case, print."""

from __future__ import annotations

import sys
from typing import Any

import click

from .common import complete_services, err, json_option, make_context, wait_display

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_interspersed_args": False,
                 "help_option_names": ["-h", "--help"]}


def loop_options(ctx: click.Context, only: list[str] | None, watch: bool,
                 lan: list[str] | None, yes: bool) -> dict[str, Any]:
    """--watch and --lan are checked before anything starts."""
    if not (watch or lan):
        return {}
    from ..errors import UsageError
    from ..render.watch_rules import watched_service

    loop: dict[str, Any] = {}
    if watch:
        settings = make_context(ctx).settings()
        name = watched_service(settings)
        if name not in settings.catalog.select(only).services:
            raise UsageError(f"--watch watches {name}, which this up does not start",
                             hint=f"add {name} to --only")
        loop["watch"] = prepare_watch(ctx)
    if lan:
        loop["lan"] = lan_publish(ctx, only, lan, yes)
    return loop


def prepare_watch(ctx: click.Context) -> Any:
    """Check the watch paths and Compose before `up` starts anything."""
    from ..stack import watch

    return watch.prepare(make_context(ctx))


def follow_watch(ctx: click.Context, plan: Any, as_json: bool, logs: bool = False) -> None:
    """Print each watch event until Ctrl-C, which ends watching and nothing else."""
    import signal

    from ..stack import watch

    follow = watch.follow
    if plan.engine == "devenv":
        from ..stack import sync

        follow = sync.follow

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    # A closed terminal ends watching as Ctrl-C (and SIGTERM, see cli) does: compose watch
    # is stopped, never left behind, and the containers keep running.
    signal.signal(signal.SIGHUP, interrupt)
    try:
        for event in follow(make_context(ctx), plan, logs=logs):
            click.echo(watch.format_event_json(event) if as_json
                       else watch.format_event(event))
    except KeyboardInterrupt:
        err("watch stopped; the stack keeps running (devenv down stops it)")
        ctx.exit(0)


def lan_publish(ctx: click.Context, only: list[str] | None, lan: list[str], yes: bool) -> Any:
    """`up --lan NAMES`: the address and services, confirmed a second time for the data."""
    from ..errors import UsageError
    from ..live import devices
    from ..render.stackfiles import LanPublish

    settings = make_context(ctx).settings()
    chosen = settings.catalog.select(only)
    request = devices.plan_lan(settings, lan, (*chosen.services, *chosen.apps))
    if request.private and not yes:
        if not sys.stdin.isatty():
            names = ",".join(request.private)
            raise UsageError(f"--lan {names} puts the team's data on the network",
                             hint="name it and add --yes to confirm in a script")
        click.confirm(devices.private_warning(request, settings), abort=True)
    return LanPublish(request.address, request.services)


def print_devices(ctx: click.Context, as_json: bool) -> None:
    from ..live import devices, status

    report = status.devices(make_context(ctx))
    click.echo(devices.format_devices_json(report) if as_json
               else devices.format_devices(report))


@click.command()
@json_option
@click.option("--logs", is_flag=True,
              help="Also print the API's own output as it comes (a dev server's compile "
              "errors among it), secrets masked.")
@click.pass_context
def watch(ctx: click.Context, as_json: bool, logs: bool) -> None:
    """Sync the API's source into its running container as you save.

    Starts the API if it is not running (as `devenv up --only api`), then watches its
    source (devenv's own sync; DEVENV_API_WATCH_ENGINE=compose uses Compose's watch):
    source changes are synced and the API restarted; a change to the Dockerfile or the
    dependency manifest rebuilds the image. Each sync, restart and rebuild is printed with
    its duration, when the file was in the container after the save, and whether the API
    answers again. Ctrl-C stops watching; the stack keeps running. Settings:
    DEVENV_API_WATCH_SYNC, _TARGET, _REBUILD, _ACTION, _ENGINE, _DEBOUNCE_MS; for an API
    that reloads itself, DEVENV_API_COMMAND runs its dev server and _ACTION=sync only
    copies.

    \b
    Example:
      devenv watch
      devenv watch --logs           # with the API's own output, e.g. tsc's errors
      DEVENV_API_WATCH_SYNC=src devenv watch --json
      DEVENV_API_WATCH_ACTION=sync DEVENV_API_COMMAND='tsc -w & node --watch dist/server.js' \\
        devenv watch
    """
    from ..render.watch_rules import watched_service
    from ..report import format_rows
    from ..stack import usecases as stack

    plan = prepare_watch(ctx)
    if not plan.running:
        with wait_display(ctx) as display:
            context = make_context(ctx, on_wait=display)
            result = stack.up(context, [watched_service(context.settings())])
        err(format_rows(result.rows))
    follow_watch(ctx, plan, as_json, logs)


@click.command("exec", context_settings=_PASS_THROUGH)
@click.argument("service", shell_complete=complete_services)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-T", "--no-tty", is_flag=True, help="No TTY even on a terminal.")
@click.pass_context
def exec_(ctx: click.Context, service: str, command: tuple[str, ...], no_tty: bool) -> None:
    """Run a command in a service's running container; its exit code is devenv's.

    A TTY when devenv runs in a terminal; stdin is passed on (pipes work).

    \b
    Example:
      devenv exec api -- sh
      devenv exec db -- psql -U postgres -c 'select 1'
    """
    from ..stack import inside

    ctx.exit(inside.exec_in(make_context(ctx), service, command, tty=False if no_tty else None))


@click.command("run", context_settings=_PASS_THROUGH)
@click.argument("service", shell_complete=complete_services)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-T", "--no-tty", is_flag=True, help="No TTY even on a terminal.")
@click.pass_context
def run(ctx: click.Context, service: str, command: tuple[str, ...], no_tty: bool) -> None:
    """Run a command in a one-off container of a service (the API's image, environment
    and network), removed afterwards; its exit code is devenv's.

    \b
    Example:
      devenv run api -- npm test
      devenv run api -- python3 -c 'import os; print(os.environ["DATABASE_URL"])'
    """
    from ..stack import inside

    ctx.exit(inside.run_in(make_context(ctx), service, command, tty=False if no_tty else None))
