"""Data bound to git branches (`[data] branches = true`): each branch's PostgreSQL and Redis
data lives in its own volumes (`<project>_postgres-data--<slug>`). `up` enters the branch
checked out: a branch with data is switched to by rendering its volumes (Compose recreates
the two services on them: nothing is copied); a branch without data starts from a physical
copy of the data in use (a first pass while the services run, the rest while they are
stopped, as for a snapshot), else from the `seed` snapshot or a fresh database. Also
`db branches`, `db branch rm` and `--prune`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..config import gitinfo
from ..config.branchstate import (
    BranchBook,
    BranchData,
    load_book,
    save_book,
    volume_suffix,
)
from ..config.settings import Settings
from ..config.state import project_lock
from ..context import Context
from ..engine import CommandResult, Engine
from ..errors import DataError, UsageError
from ..live.running import check_same_directory, project_containers
from . import snapshots
from .ops import client_connections, stopped
from .volumes import DATA_SERVICES, volume_labels, volume_name

# Runs as root in the PostgreSQL image: $1 the services to copy, /src/<svc> the data in use
# (read-only), /dst/<svc> the new branch's volumes. Two passes, as a live migration copies:
# - the room is checked, then the first pass copies everything while the services still
#   run, with cp (the kernel copies the bytes); files that change meanwhile may come torn
#   and files that vanish are missed (cp's only error allowed): the second pass sees to
#   both. It prints "devenv-checked" and waits for "go" on stdin (else or EOF: exit 71);
# - "go" comes once the services are stopped (their data is then still): the second pass
#   copies what changed after the mark made before the first pass began (find -newer, in
#   nanoseconds; the 50 ms pause outlasts the coarse clock's tick, so a write that shares
#   the mark's time was made before the first pass read the file) and what the first pass
#   lacks, removes what the data no longer has, and prints "devenv-copied".
# PostgreSQL's WAL segments wait for the second pass: a cleanly shut-down cluster needs
# only the one holding its last checkpoint (as a snapshot keeps: the others are spent or
# preallocated), read from pg_controldata; any other state copies them all. Names travel
# NUL-separated; the services are copied side by side. A restore's leftovers and
# postmaster.pid are not data.
COPY_SCRIPT = r"""
set -eu
export LC_ALL=C
services=$1
x='[0-9A-F]'
segment="$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x"
need=0
for s in $services; do need=$((need + $(du -sk "/src/$s" | cut -f1))); done
for s in $services; do
  free=$(df -Pk "/dst/$s" | awk 'NR==2 {print $4}')
  if [ "$free" -lt $((need + 65536)) ]; then
    echo "devenv-space: the copy needs $((need / 1024)) MB, Docker's disk has $((free / 1024)) MB free" >&2
    exit 68
  fi
done
pids=""
trap 'kill $pids 2>/dev/null; exit 130' INT TERM
names() {  # the data's names under the current directory, NUL-separated; "$@": a find test
  find . -mindepth 1 \( -path ./.devenv-old -o -path ./.devenv-restore \
    -o -path ./postmaster.pid -o -path "./pg_wal/$segment" \) -prune -o "$@" -print0
}
made_like() {  # $1 a folder here, $2 the same folder in the copy: made with its owner and mode
  mkdir "$2" && chown --reference="$1" "$2" && chmod --reference="$1" "$2"
}
first_pass() {  # $1 the service; cd'd into its data. The biggest file over 64 MB (a table's
  # segment) is copied by a cp of its own beside the rest, so both cores copy; the folders
  # on its way are made first, and each level copies all but the way on. (Data folders:
  # no spaces in the names on that way.)
  dst="/dst/$1"
  chown --reference=. "$dst" && chmod --reference=. "$dst"  # PostgreSQL checks its folder's
  big=$(find . \( -path ./.devenv-old -o -path ./.devenv-restore -o -path ./pg_wal \) -prune \
    -o -type f -size +64M -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
  way="" one=""
  if [ -n "$big" ]; then
    d=$(dirname "$big")
    while [ "$d" != . ]; do way="$d $way"; d=$(dirname "$d"); done
    for d in $way; do made_like "$d" "$dst/$d"; done
    cp -a "$big" "$dst/$big" & one=$!
  fi
  level=.
  for d in $way ""; do
    find "$level" -mindepth 1 -maxdepth 1 \( -path ./.devenv-old -o -path ./.devenv-restore \
      -o -path ./postmaster.pid -o -path ./pg_wal -o -path "$d" -o -path "$big" \) -prune \
      -o -exec cp -a -t "$dst/$level" {} +
    [ -n "$d" ] || break
    level=$d
  done
  if [ -L pg_wal ]; then cp -a pg_wal "$dst/"
  elif [ -d pg_wal ]; then
    made_like pg_wal "$dst/pg_wal"
    find pg_wal -mindepth 1 -maxdepth 1 ! -name "$segment" -exec cp -a -t "$dst/pg_wal" {} +
  fi
  [ -z "$one" ] || wait "$one"
}
wal() {  # the WAL segments the stopped cluster here needs, NUL-separated
  [ -d pg_wal ] && [ ! -L pg_wal ] || return 0
  info=$(pg_controldata . 2>/dev/null || true)
  state=$(printf '%s\n' "$info" | sed -n 's/^Database cluster state: *//p')
  redo=$(printf '%s\n' "$info" | sed -n "s/^Latest checkpoint's REDO WAL file: *//p")
  if [ "$state" = "shut down" ] && [ -n "$redo" ] && [ -f "pg_wal/$redo" ]; then
    printf './pg_wal/%s\0' "$redo"
  else
    find ./pg_wal -mindepth 1 -maxdepth 1 -name "$segment" -print0
  fi
}
touch /tmp/devenv-mark
sleep 0.05
for s in $services; do
  find "/dst/$s" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  ( cd "/src/$s"; first_pass "$s" 2>"/tmp/err-$s" || true
    ! grep -v "No such file or directory" "/tmp/err-$s" >&2 ) & pids="$pids $!"
done
rc=0
for p in $pids; do wait "$p" || rc=$?; done
[ "$rc" = 0 ] || exit 66
echo devenv-checked >&2
go=""; read -r go || true
[ "$go" = go ] || exit 71
pids=""
for s in $services; do
  (
    cd "/src/$s"
    names -true | sort -z >"/tmp/src-$s"
    (cd "/dst/$s" && find . -mindepth 1 -print0) | sort -z >"/tmp/dst-$s"
    comm -z -13 "/tmp/src-$s" "/tmp/dst-$s" | (cd "/dst/$s" && xargs -0 -r rm -rf --)
    { comm -z -23 "/tmp/src-$s" "/tmp/dst-$s"; names -newer /tmp/devenv-mark; wal; } \
      | sort -zu | tar -b 2048 -cf - --null --no-recursion -T - | tar -C "/dst/$s" -b 2048 -xpf -
  ) & pids="$pids $!"
done
rc=0
for p in $pids; do wait "$p" || rc=$?; done
[ "$rc" = 0 ] || exit 66
echo devenv-copied >&2
"""
EXIT_NO_ROOM = 68


@dataclass(frozen=True)
class BranchRow:
    name: str
    in_use: bool
    size: int | None  # bytes of its volumes; None when the engine does not say
    parent: str | None
    last_used: float
    in_git: bool
    origin: str


def branches_on(settings: Settings) -> None:
    if not settings.db_branches:
        raise UsageError("data is not bound to git branches in this project",
                         hint="turn it on with `[data] branches = true` in devenv.toml or "
                         "DEVENV_DB_BRANCHES=true")


def _has_data(engine: Engine, settings: Settings, suffix: str) -> bool:
    return any(engine.volume_exists(volume_name(settings, s, suffix)) for s in DATA_SERVICES)


# --- `up`: enter the branch checked out ---------------------------------------------------
def enter(ctx: Context, engine: Engine, settings: Settings) -> str | None:
    """Make the branch checked out the one whose data is in use (copying its parent's
    data when it has none yet); the line `up` says, or None with branches off. Call it
    under the project lock, before anything is rendered."""
    if not settings.db_branches:
        return None
    head = gitinfo.head(settings.project_dir)
    name = head.name
    label = f"{name} (detached HEAD)" if head.detached else name
    book = load_book(settings)
    now = time.time()
    known = book.branches.get(name)
    if known is not None and known.origin != "copying" and _has_data(engine, settings,
                                                                      known.suffix):
        save_book(settings, book.used(name))
        if book.in_use != name:
            _stop_early(ctx, engine, settings)
        return f"data: branch {label}"
    parent = known.parent if known is not None and known.origin == "copying" else book.in_use
    if parent is not None and (parent == name or parent not in book.branches or not _has_data(
            engine, settings, book.branches[parent].suffix)):
        parent = None
    if parent is None and not book.branches and _has_data(engine, settings, ""):
        # branches were just turned on: the data the project had is this branch's
        save_book(settings, book.with_branch(name, BranchData("", None, now, now, "existing")))
        return f"data: branch {label} (the project's existing data)"
    suffix = known.suffix if known is not None else volume_suffix(name)
    if parent is None:
        if known is None and _has_data(engine, settings, suffix):
            # volumes of this branch's name that the book lost (a moved-aside file): adopt
            save_book(settings, book.with_branch(name, BranchData(suffix, None, now, now,
                                                                  "existing")))
            return f"data: branch {label} (its existing volumes)"
        seed = (settings.snapshot_dir / snapshots.SEED).is_dir()
        save_book(settings, book.with_branch(
            name, BranchData(suffix, None, now, now, "seed" if seed else "fresh")))
        return f"data: branch {label} (new, " + \
            ("from snapshot seed)" if seed else "fresh database)")
    began = time.monotonic()
    # in the book before the copy: an interrupted copy is redone by the next `up`
    save_book(settings, book.with_branch(name, BranchData(suffix, parent, now, now, "copying"),
                                         use=False))
    ctx.notify(f"data: copying branch {parent}'s data for {name}")
    copy_branch(ctx, engine, settings, book.branches[parent].suffix, suffix)
    save_book(settings, load_book(settings).with_branch(
        name, BranchData(suffix, parent, now, now, "copy")))
    return f"data: branch {label} (new, from {parent}, {time.monotonic() - began:.1f} s)"


def _stop_early(ctx: Context, engine: Engine, settings: Settings) -> None:
    """A switch: stop PostgreSQL and Redis on the data they run on now (as a restore
    does: PostgreSQL's fast shutdown closes its clients' connections) while `up` plans
    and renders; Compose then recreates them on the branch's volumes. The stops run in
    the background: Compose's own stop of a container already stopping waits for it."""
    containers = project_containers(engine, settings.project)
    check_same_directory(settings, containers.values())
    running = [containers[s] for s in DATA_SERVICES if s in containers
               and containers[s].running]
    if not running:
        return
    ctx.notify(f"stopping {', '.join(c.service for c in running)} on the data in use")
    pool = ThreadPoolExecutor(len(running), thread_name_prefix="devenv-switch")
    for container in running:
        pool.submit(_quiet_stop, engine, container.id)
    pool.shutdown(wait=False)


def _quiet_stop(engine: Engine, container_id: str) -> None:
    import contextlib

    from ..errors import DevenvError

    with contextlib.suppress(DevenvError, OSError):  # Compose stops (or removed) it too
        engine.stop(container_id)


def copy_branch(ctx: Context, engine: Engine, settings: Settings, src: str, dst: str) -> None:
    """Copy the data with volume suffix `src` into new volumes with suffix `dst`: the room
    is checked while everything still runs; then PostgreSQL and Redis stop (their
    clients' connections close) and the volumes are copied. On a failure or Ctrl-C the new
    volumes go and the services start again on the data they had."""
    services = [s for s in DATA_SERVICES if engine.volume_exists(volume_name(settings, s, src))]
    created = []
    for service in services:
        name = volume_name(settings, service, dst)
        if not engine.volume_exists(name):
            engine.create_volume(name, volume_labels(settings, service, dst))
            created.append(name)
    mounts: list[tuple[str, str, bool]] = []
    for service in services:
        mounts += [(volume_name(settings, service, src), f"/src/{service}", True),
                   (volume_name(settings, service, dst), f"/dst/{service}", False)]
    helper = engine.start_helper(settings.image("postgres"), COPY_SCRIPT, mounts,
                                 [" ".join(services)])
    done = False
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="devenv-count") as pool:
            counting = pool.submit(client_connections, engine, settings)  # beside the copy
            if not helper.wait_for("devenv-checked"):
                raise _copy_error(helper.wait())
            closed = counting.result()
        with stopped(ctx, engine, settings, restart=False, closed=closed):
            if not helper.send("go") or not helper.wait_for("devenv-copied"):
                raise _copy_error(helper.wait())
        done = True
        # the data is whole: the container's exit and removal (the engine removes it) need
        # not hold up the start on the new volumes
        threading.Thread(target=helper.wait, daemon=True, name="copy-helper").start()
    finally:
        if not done:
            helper.close()
            helper.wait()
            for name in created:
                engine.remove_volume(name)


def _copy_error(result: CommandResult) -> DataError:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else f"exit {result.returncode}"
    if result.returncode == EXIT_NO_ROOM or "No space left" in result.stderr:
        return DataError(f"not enough room for the new branch's data: "
                         f"{last.split(': ', 1)[-1]}",
                         hint="free some space on Docker's disk (`docker system df`, "
                         "`devenv db branches --prune`); nothing was stopped or changed")
    return DataError(f"the copy of the data for the new branch failed: {last}",
                     hint="the data in use is unchanged and runs again; try `devenv up` again")


# --- `db branches`, `db branch rm`, `--prune` ---------------------------------------------
def list_branches(ctx: Context) -> list[BranchRow]:
    settings = ctx.settings()
    branches_on(settings)
    book = load_book(settings)
    in_git = gitinfo.branches(settings.project_dir)
    engine = ctx.engine()
    sizes = engine.volume_sizes(settings.project)
    rows = []
    for name, data in sorted(book.branches.items(), key=lambda kv: -kv[1].last_used):
        names = [volume_name(settings, s, data.suffix) for s in DATA_SERVICES]
        known = [sizes[n] for n in names if n in sizes]
        rows.append(BranchRow(name, name == book.in_use, sum(known) if known else None,
                              data.parent, data.last_used,
                              name in in_git, data.origin))
    return rows


def removable(ctx: Context, name: str) -> BranchData:
    """The branch's data that `db branch rm NAME` would remove (checked: not in use)."""
    settings = ctx.settings()
    branches_on(settings)
    book = load_book(settings)
    if name not in book.branches:
        raise UsageError(f"no data of branch {name!r}",
                         hint="`devenv db branches` lists the branches that have data")
    if name == book.in_use:
        raise UsageError(f"branch {name}'s data is in use",
                         hint="check out and `devenv up` another branch first")
    return book.branches[name]


def remove(ctx: Context, names: Sequence[str]) -> list[str]:
    """Remove the volumes of the branches `names` (never the one in use) and their entries
    in the book. Returns the volumes removed."""
    settings = ctx.settings()
    engine = ctx.engine()
    removed: list[str] = []
    with project_lock(settings.state_dir, settings.project, "db branch rm",
                      settings.wait_timeout, on_wait=ctx.notify):
        check_same_directory(settings, project_containers(engine, settings.project).values())
        for name in names:
            data = removable(ctx, name)
            for service in DATA_SERVICES:
                volume = volume_name(settings, service, data.suffix)
                if engine.volume_exists(volume):
                    engine.remove_volume(volume)
                    removed.append(volume)
            save_book(settings, load_book(settings).without(name))
    return removed


def prunable(ctx: Context) -> list[str]:
    """The branches with data that git no longer has (never the one in use)."""
    rows = list_branches(ctx)
    return [r.name for r in rows if not r.in_git and not r.in_use]


def book_of(ctx: Context) -> BranchBook:
    return load_book(ctx.settings())


# --- `devenv hooks install` ---------------------------------------------------------------
HOOK_MARK = "# devenv: post-checkout hook ([data] branches)"


def install_hook(ctx: Context) -> str:
    """Write the repository's post-checkout hook: after a branch checkout it runs `devenv
    db switch` (which only switches a running stack). A hook devenv did not write is
    never replaced. Returns the hook's path."""
    import os
    import shlex
    import shutil
    import sys

    from ..files import write_atomic

    settings = ctx.settings()
    branches_on(settings)
    where = gitinfo.place(settings.project_dir)
    hook = gitinfo.hooks_dir(settings.project_dir) / "post-checkout"
    if hook.exists():
        try:
            mine = HOOK_MARK in hook.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"{hook} cannot be read: {exc.strerror}") from None
        if not mine:
            raise UsageError(f"{hook} exists and devenv did not write it",
                             hint="add the line `devenv db switch || true` to it yourself")
    program = shutil.which("devenv") or str(Path(sys.argv[0]).resolve())
    rel = os.path.relpath(settings.project_dir.resolve(), where.toplevel.resolve())
    text = (f"#!/bin/sh\n{HOOK_MARK}\n"
            "# $3 = 1: a branch checkout (not a file's); it switches a running stack only\n"
            '[ "$3" = 1 ] || exit 0\n'
            + (f"cd {shlex.quote(rel)} || exit 0\n" if rel != "." else "")
            + f"{shlex.quote(program)} db switch || true\n")
    write_atomic(hook, text, 0o755)
    return str(hook)
