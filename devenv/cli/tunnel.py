"""`devenv tunnel up|down|ls`: named SSH tunnels declared in devenv.toml. Parsing and
printing only; the use cases are tunnels/usecases.py."""

from __future__ import annotations

import click

from .common import err, json_option, make_context, secrets_option


def _complete_tunnels(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[str]:
    from pathlib import Path

    from ..tunnels.tables import read_tunnel_tables

    try:
        root = ctx.find_root().params.get("project_dir") or Path.cwd()
        _, tables = read_tunnel_tables(Path(root))
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    return [name for name in tables if name.startswith(incomplete)]


names_argument = click.argument("names", nargs=-1, metavar="[NAME]...",
                                shell_complete=_complete_tunnels)


@click.group()
def tunnel() -> None:
    """Named SSH tunnels to remote databases and services ([tunnels.NAME] in devenv.toml).

    Each tunnel gets a local port from the same planner as the services, bound to
    127.0.0.1, and keeps running in the background (reconnecting when it drops) until
    `devenv tunnel down`.

    \b
    Example:
      devenv tunnel up prod-db     # then: devenv ports --env | grep PROD_DB_URL
      devenv tunnel ls
      devenv tunnel down prod-db
    """


@tunnel.command("up")
@names_argument
@secrets_option
@click.pass_context
def tunnel_up(ctx: click.Context, names: tuple[str, ...], show_secrets: bool) -> None:
    """Open tunnels (default: all declared) and wait until the far end answers.

    \b
    Example:
      devenv tunnel up prod-db
    """
    from ..report import format_tunnels
    from ..tunnels import usecases as tunnel_stack

    rows = tunnel_stack.up(make_context(ctx.find_root()), names, show_secrets=show_secrets)
    for row in rows:
        if row.production:
            err(f"tunnel {row.name} reaches PRODUCTION ({row.target}); "
                 "its URL asks for read-only sessions" if row.kind == "postgres" else
                 f"tunnel {row.name} reaches PRODUCTION ({row.target})")
    click.echo(format_tunnels(rows))


@tunnel.command("down")
@names_argument
@click.pass_context
def tunnel_down(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Close tunnels (default: all of this project); ends exactly the processes devenv
    started for them.

    \b
    Example:
      devenv tunnel down prod-db
    """
    from ..tunnels import usecases as tunnel_stack

    closed = tunnel_stack.down(make_context(ctx.find_root()), names)
    err("closed: " + (", ".join(closed) if closed else "no tunnel was open"))


@tunnel.command("ls")
@json_option
@secrets_option
@click.pass_context
def tunnel_ls(ctx: click.Context, as_json: bool, show_secrets: bool) -> None:
    """List declared and running tunnels: local URL, state, reconnects, PROD tag.

    \b
    Example:
      devenv tunnel ls --json
    """
    from ..report import format_tunnels, format_tunnels_json
    from ..tunnels import usecases as tunnel_stack

    context = make_context(ctx.find_root())
    rows = tunnel_stack.rows(context, context.settings(), show_secrets=show_secrets)
    if as_json:
        click.echo(format_tunnels_json(rows))
    elif rows:
        click.echo(format_tunnels(rows))
    else:
        err("no tunnels are declared (add [tunnels.NAME] to devenv.toml; docs/tunnels.md)")
