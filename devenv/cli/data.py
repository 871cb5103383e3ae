"""The click layer of the data commands: `devenv db ...`, `devenv psql`, `devenv redis-cli`.

Registered in cli/main.py; like every command module it parses, calls one use case in data/
and prints. The use cases are imported inside each command (`devenv --help` loads click).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .common import err, json_option, make_context, yes_option


def _complete_snapshots(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[str]:
    try:
        import os

        from ..context import Context
        from ..data.ops import list_snapshots

        # While completing, the group's callback has not run: no ctx.obj to read.
        params = ctx.find_root().params
        where = Context(project_dir=Path(params.get("project_dir") or Path.cwd()).resolve(),
                        environ=dict(os.environ), env_file=params.get("env_file"))
        names = [s.name for s in list_snapshots(where)]
    except Exception:  # completion never fails loudly
        return []
    return [name for name in names if name.startswith(incomplete)]


def _confirm(question: str, yes: bool, what: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError(f"{what}: add --yes to confirm in a script")
    click.confirm(question, abort=True)


def _progress(total: int | None = None) -> tuple[Callable[[int], None] | None,
                                                  Callable[[], None]]:
    """A byte counter on stderr for runs over two seconds, on a terminal only."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from ..data.snapshots import human_size

    began, shown = time.monotonic(), [False]

    def show(done: int) -> None:
        if time.monotonic() - began < 2:
            return
        text = human_size(done) + (f" of {human_size(total)} ({done * 100 // total}%)"
                                   if total else "")
        sys.stderr.write(f"\r{text}    ")
        sys.stderr.flush()
        shown[0] = True

    def end() -> None:
        if shown[0]:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    return show, end


def _back(before: Any, owed: str | None = None) -> str:
    if owed:
        return (f"the previous data is being written to snapshot {owed} (kept inside the "
                f"volumes until then); to go back: devenv db restore {owed}")
    return (f"the previous data is in snapshot {before.name}; to go back: "
            f"devenv db restore {before.name}") if before is not None else \
        "there was no data before"


@click.group()
def db() -> None:
    """Snapshots, restore, reset, export and import of PostgreSQL and Redis data.

    \b
    Example:
      devenv db snapshot before-migration
      devenv db restore before-migration
      devenv db export team.dump && devenv db import team.dump
    """


@db.command("snapshot")
@click.argument("name", required=False, shell_complete=_complete_snapshots)
@click.option("--force", is_flag=True, help="Replace a snapshot of that name.")
@click.pass_context
def snapshot_command(ctx: click.Context, name: str | None, force: bool) -> None:
    """Copy the database and Redis' data into a snapshot (default name: snap-<time>).

    PostgreSQL and Redis stop for the copy and start again. A snapshot named `seed` is
    what a fresh volume starts from.

    \b
    Example:
      devenv db snapshot seed
    """
    from ..data import ops as data
    from ..data.snapshots import human_size

    taken = data.snapshot(make_context(ctx.find_root()), name, force=force)
    err(f"snapshot {taken.name}: {', '.join(taken.holds)}, {human_size(taken.size)}")
    click.echo(taken.name)


@db.command("restore")
@click.argument("name", shell_complete=_complete_snapshots)
@click.option("--adopt-credentials", "adopt", is_flag=True,
              help="Put this project's PostgreSQL user, password and database name on the "
              "restored data (a snapshot taken with other credentials is refused without).")
@click.pass_context
def restore_command(ctx: click.Context, name: str, adopt: bool) -> None:
    """Replace the data with a snapshot; the current data is snapshotted first.

    A snapshot keeps the PostgreSQL login it was taken with: one taken with other
    credentials is refused before anything stops, unless --adopt-credentials.

    \b
    Example:
      devenv db restore seed
      devenv db restore teammate-seed --adopt-credentials
    """
    from ..data import ops as data

    result = data.restore(make_context(ctx.find_root()), name, adopt=adopt)
    err(f"restored snapshot {result.snapshot.name} ({', '.join(result.snapshot.holds)})"
        + (" with this project's PostgreSQL login" if adopt else ""))
    err(_back(result.before, result.owed))


@db.command("snapshots")
@json_option
@click.pass_context
def snapshots_command(ctx: click.Context, as_json: bool) -> None:
    """List the snapshots: name, size, date, what each holds.

    \b
    Example:
      devenv db snapshots --json
    """
    from ..data import ops as data
    from ..data.snapshots import human_size

    context = make_context(ctx.find_root())
    data.wait_owed(context)  # an automatic snapshot being written in the background
    found = data.list_snapshots(context)
    if as_json:
        click.echo(json.dumps([s.as_json() for s in found], indent=2))
        return
    if not found:
        err(f"no snapshots in {context.settings().snapshot_dir} "
             "(take one: devenv db snapshot NAME)")
        return
    rows = [("NAME", "SIZE", "CREATED", "HOLDS")] + [
        (s.name, human_size(s.size), s.created.replace("T", " ").replace("Z", " UTC"),
         ", ".join(s.holds) + (f" (PostgreSQL {s.pg_major})" if s.pg_major else ""))
        for s in found]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
                   + "  " + row[3])


@db.command("rm")
@click.argument("name", shell_complete=_complete_snapshots)
@yes_option
@click.pass_context
def rm_command(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete a snapshot (asks first; --yes for scripts).

    \b
    Example:
      devenv db rm before-migration --yes
    """
    from ..data import ops as data

    context = make_context(ctx.find_root())
    data.check_removable(context, name)
    _confirm(f"Delete snapshot {name}?", yes, "db rm deletes a snapshot")
    gone = data.remove(context, name)
    err(f"removed snapshot {gone.name}")


@db.command("reset")
@yes_option
@click.pass_context
def reset_command(ctx: click.Context, yes: bool) -> None:
    """Back to the seed: the `seed` snapshot, else a fresh database with the seed files
    and the migration. Asks first; the current data is snapshotted first.

    \b
    Example:
      devenv db reset --yes
    """
    from ..data import ops as data

    context = make_context(ctx.find_root())
    _confirm(f"Replace the data of project {context.settings().project} with the seed?",
             yes, "db reset replaces the data")
    restored, before, started = data.reset(context)
    if started:
        from ..stack import usecases as stack

        stack.up(context, started)
    if restored is not None:
        err("reset to snapshot seed")
    else:
        err("reset to a fresh database" + (f"; started {', '.join(started)} again"
                                            if started else "; `devenv up` initialises it"))
    err(_back(before, restored.owed if restored is not None else None))


@db.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def export_command(ctx: click.Context, file: Path) -> None:
    """Write the database to FILE with pg_dump's custom format (pg_restore reads it).

    \b
    Example:
      devenv db export team.dump
      pg_restore -l team.dump
    """
    from ..data import dumps
    from ..data.snapshots import human_size

    show, end = _progress()
    try:
        result = dumps.export(make_context(ctx.find_root()), file, progress=show)
    finally:
        end()
    err(f"exported to {result.path} ({human_size(result.bytes)}, pg_dump custom format)")


@db.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, file: Path) -> None:
    """Replace the database with a dump: pg_dump custom or tar format, .sql or .sql.gz.

    The current data is snapshotted first; a dump that fails to load changes nothing.
    What belongs to the server the dump came from (owners, grants, tablespaces) is left
    out and named; a dump made with --create loads into this database, and one that
    would change another database is refused.

    \b
    Example:
      devenv db import team.dump
      devenv db import schema-and-data.sql.gz
    """
    from ..data import dumps

    size = file.stat().st_size if file.is_file() else None
    show, end = _progress(size)
    try:
        result = dumps.import_dump(make_context(ctx.find_root()), file, progress=show)
    finally:
        end()
    err(f"imported {result.path.name} ({result.kind})")
    if result.left_out:
        err("left out, as it belongs to the server the dump came from: "
            + "; ".join(result.left_out))
    err(_back(result.before))


def _ago(stamp: float) -> str:
    if not stamp:
        return "-"
    seconds = max(0, int(time.time() - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


@db.command("branches")
@json_option
@click.option("--prune", is_flag=True,
              help="Remove the data of branches git no longer has (asks first).")
@yes_option
@click.pass_context
def branches_command(ctx: click.Context, as_json: bool, prune: bool, yes: bool) -> None:
    """List the git branches that have data ([data] branches): name, size, parent, last
    used, whether git still has the branch; * marks the data in use.

    \b
    Example:
      devenv db branches --json
      devenv db branches --prune --yes
    """
    from ..data import branches
    from ..data.snapshots import human_size

    context = make_context(ctx.find_root())
    if prune:
        gone = branches.prunable(context)
        if not gone:
            err("no data of branches git no longer has")
            return
        _confirm(f"Remove the data of {', '.join(gone)} (git no longer has them)?", yes,
                 "db branches --prune removes data")
        branches.remove(context, gone)
        err(f"removed the data of {', '.join(gone)}")
        return
    rows = branches.list_branches(context)
    if as_json:
        click.echo(json.dumps([{"schema": "devenv.branch/1", "name": r.name,
                                "in_use": r.in_use, "size": r.size, "parent": r.parent,
                                "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                           time.gmtime(r.last_used))
                                if r.last_used else None,
                                "in_git": r.in_git, "origin": r.origin} for r in rows],
                              indent=2))
        return
    if not rows:
        err("no branch has data yet (`devenv up` makes the checked-out branch's)")
        return
    table = [("BRANCH", "SIZE", "PARENT", "LAST USED", "GIT")] + [
        (("* " if r.in_use else "  ") + r.name,
         human_size(r.size) if r.size is not None else "-", r.parent or "-",
         _ago(r.last_used), "yes" if r.in_git else "gone") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4]))
                   + "  " + row[4])


@db.group("branch")
def branch_group() -> None:
    """One git branch's data ([data] branches).

    \b
    Example:
      devenv db branch rm feature/old --yes
    """


@branch_group.command("rm")
@click.argument("name")
@yes_option
@click.pass_context
def branch_rm_command(ctx: click.Context, name: str, yes: bool) -> None:
    """Remove a branch's data (asks first; --yes for scripts); never the data in use.

    \b
    Example:
      devenv db branch rm feature/old --yes
    """
    from ..data import branches

    context = make_context(ctx.find_root())
    branches.removable(context, name)
    _confirm(f"Remove the data of branch {name}?", yes, "db branch rm removes data")
    removed = branches.remove(context, [name])
    err(f"removed the data of branch {name} ({len(removed)} volume"
        f"{'s' * (len(removed) != 1)})")


@db.command("switch")
@click.pass_context
def switch_command(ctx: click.Context) -> None:
    """Switch the running stack to the data of the git branch checked out (what `up` does
    after a checkout); nothing when the stack is not running.

    \b
    Example:
      git checkout main && devenv db switch
    """
    from ..stack import usecases as stack

    result = stack.switch_data(make_context(ctx.find_root()))
    if result is None:
        err("nothing runs; the next `devenv up` uses the checked-out branch's data")


@click.group("hooks")
def hooks() -> None:
    """git hooks for [data] branches.

    \b
    Example:
      devenv hooks install
    """


@hooks.command("install")
@click.pass_context
def hooks_install_command(ctx: click.Context) -> None:
    """Write a git post-checkout hook that runs `devenv db switch` after a branch checkout
    (it switches a running stack, never more); an existing hook of your own is kept.

    \b
    Example:
      devenv hooks install
    """
    from ..data import branches

    path = branches.install_hook(make_context(ctx.find_root()))
    err(f"wrote {path}")


_passthrough = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@click.command("psql", context_settings=_passthrough)
@click.option("--tunnel", "tunnel_name", default=None, metavar="NAME",
              help="Through the open SSH tunnel NAME instead (this machine's psql); "
              "read-only when the tunnel is production.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def psql(ctx: click.Context, tunnel_name: str | None, args: tuple[str, ...]) -> None:
    """psql inside the PostgreSQL container, logged in to the stack's database; extra
    arguments go to psql, and its exit code is devenv's.

    \b
    Example:
      devenv psql
      devenv psql -c 'select count(*) from agents'
      devenv psql --tunnel prod-db     # read-only on a production tunnel
    """
    if tunnel_name is not None:
        from ..tunnels import usecases as tunnel_stack

        ctx.exit(tunnel_stack.psql(make_context(ctx.find_root()), tunnel_name, args))
    from ..data import dumps

    tty = sys.stdin.isatty() and sys.stdout.isatty()
    ctx.exit(dumps.shell(make_context(ctx.find_root()), "postgres", args, tty))


@click.command("redis-cli", context_settings=_passthrough)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def redis_cli(ctx: click.Context, args: tuple[str, ...]) -> None:
    """redis-cli inside the Redis container; extra arguments go to redis-cli, and its exit
    code is devenv's.

    \b
    Example:
      devenv redis-cli
      devenv redis-cli dbsize
    """
    from ..data import dumps

    tty = sys.stdin.isatty() and sys.stdout.isatty()
    ctx.exit(dumps.shell(make_context(ctx.find_root()), "redis", args, tty))


#: what cli/main.py registers
COMMANDS = (db, psql, redis_cli, hooks)
