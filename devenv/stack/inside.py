"""Commands inside the stack: `devenv exec` (in a running service's container) and
`devenv run` (a one-off container of a service's image, environment and network).

Both hand the terminal to the command and return its exit code; the plumbing lives in the
engine seam (`Compose.exec`, `Compose.run`) so that other commands (psql, redis-cli) can
use it the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..config.settings import Settings
from ..context import Context
from ..errors import UsageError


def _command(argv: Sequence[str], service: str, verb: str) -> list[str]:
    # `devenv exec api -- ls`: click keeps the `--` once SERVICE ends option parsing
    argv = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not argv:
        raise UsageError(f"name the command to run after --, e.g. devenv {verb} {service} "
                         "-- sh -c 'echo hello'")
    return list(argv)


def _service(ctx: Context, word: str) -> tuple[Settings, str]:
    """The project's settings and the service `word` names: a name or an alias of the
    project's catalog (devenv.toml's services too), as everywhere else."""
    settings = ctx.settings()
    return settings, settings.catalog.resolve(word)


def exec_in(ctx: Context, word: str, argv: Sequence[str], tty: bool | None = None) -> int:
    """Run argv in the service's running container; its exit code."""
    settings, service = _service(ctx, word)
    command = _command(argv, service, "exec")
    compose = ctx.engine().compose(settings.project)
    return compose.exec(service, command, tty=tty).code


def run_in(ctx: Context, word: str, argv: Sequence[str], tty: bool | None = None) -> int:
    """Run argv in a one-off container of the service (removed afterwards); its exit code."""
    settings, service = _service(ctx, word)
    command = _command(argv, service, "run")
    compose_file = settings.compose_file
    try:
        text = compose_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # none, or not one devenv wrote: not rendered
        text = ""
    if not re.search(rf"^  {re.escape(service)}:$", text, re.M):
        raise UsageError(f"{service} is not in the rendered stack of project "
                         f"{settings.project}",
                         hint=f"start it once: devenv up --only {service}")
    compose = ctx.engine().compose(settings.project, compose_file)
    return compose.run(service, command, tty=tty).code
