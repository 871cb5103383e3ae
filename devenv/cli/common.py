"""What every command module shares: the Context a command builds, messages to stderr, the
progress display, service-name completion and the options that recur (--only, --json,
--show-secrets, --yes). It imports nothing of cli/, so no command module imports main.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click


def err(message: str) -> None:
    click.echo(message, err=True)


def complete_services(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
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


def make_context(ctx: click.Context, extra_flags: dict[str, str] | None = None,
             on_wait: Any = None) -> Any:
    from ..context import Context

    obj = ctx.obj
    return Context(project_dir=obj["project_dir"], environ=dict(os.environ),
                   flags={**obj["flags"], **(extra_flags or {})}, env_file=obj["env_file"],
                   notify=err, on_wait=on_wait)


def wait_display(ctx: click.Context) -> Any:
    from .console import WaitDisplay, use_color

    stream = sys.stderr
    live = bool(getattr(stream, "isatty", lambda: False)())
    return WaitDisplay(stream, live=live,
                       color=use_color(stream, os.environ, ctx.obj["no_color"]))


def words(values: tuple[str, ...]) -> list[str] | None:
    from ..config.catalog import split_words

    return split_words(values) if values else None


only_option = click.option(
    "--only", "only", multiple=True, metavar="NAMES", shell_complete=complete_services,
    help="Comma-separated services or aliases (e.g. db,cache; a devenv.toml adds its own); "
    "repeatable. Dependencies follow.")
services_argument = click.argument("services", nargs=-1, metavar="[SERVICE]...",
                                   shell_complete=complete_services)
secrets_option = click.option("--show-secrets", is_flag=True,
                              help="Show passwords in URLs (masked by default).")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="JSON output (versioned: see the `schema` field).")
yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask first (for scripts).")
