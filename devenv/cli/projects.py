"""`devenv ls`: every devenv project on this engine, from any directory. Parse, call the use
case, print."""

from __future__ import annotations

import click

from .common import err, json_option, make_context


@click.command("ls")
@json_option
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List every devenv project on this engine: directory, services, ports, tunnels.

    Works from any directory, as `docker compose ls` does: for each Compose project that
    devenv started (its directory holds devenv's compose/ or .devenv/ state), the project
    directory, its services with the host ports they publish (or their state when they do
    not run), when it started, and its SSH tunnels (PROD tagged). Compose projects of other
    tools are left out. Reads only; changes nothing.

    \b
    Example:
      devenv ls
      devenv ls --json | jq -r '.[].directory'
    """
    from ..live import projects

    found = projects.list_projects(make_context(ctx))
    if as_json:
        click.echo(projects.format_projects_json(found))
    elif found:
        click.echo(projects.format_projects(found))
    else:
        err("no devenv project has containers on this engine (start one: devenv up)")
