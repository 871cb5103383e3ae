"""The snapshot use cases: snapshot, restore, reset, and the copy machinery under them
(dumps.py has export, import and the shells; seeding.py the steps `up` takes for data).

A snapshot is a physical copy: PostgreSQL and Redis are stopped (PostgreSQL's fast shutdown
leaves a clean data directory), their volumes are copied with tar by a short-lived container
of the PostgreSQL image into the host's snapshot directory, and they start again. A restore
is the same copy the other way, staged beside the current data inside each volume and
swapped in only once complete; the current data is only renamed aside in its volume during
the stop, and written to an automatic snapshot once the services run again (checked before
the set-aside copy goes). Nothing is ever replayed row by row.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.settings import Settings
from ..config.state import project_lock
from ..context import Context
from ..engine import CommandResult, Compose, Container, Engine, HelperRun, connect
from ..errors import DataError, DevenvError, NotReadyError, UsageError
from ..live.running import check_same_directory, project_containers, url_host
from ..probes import Target, wait_until_ready
from . import credentials, snapshots
from .snapshots import Snapshot
from .volumes import DATA_SERVICES, psql, volume_labels, volume_name

# Runs as root in the PostgreSQL image: $1 uid, $2 gid (owner of the files written), $3 the
# services whose volumes are copied out to /out, $4 those copied in from the snapshot at
# /in, $5 the PostgreSQL major version that snapshot needs, $6 the mode: "copy" (out and/or
# in), "finish" (copy out the data a restore set aside, then check the tars) or "drop"
# (remove what a restore set aside), $7 the name of the automatic snapshot a restore owes.
# Volumes are at /vol/<service>.
#
# A restore sets the current data aside inside its own volume (renames, on the same
# filesystem: instant) as .devenv-old, and writes the name of the automatic snapshot it owes
# into .devenv-old/.devenv-auto once everything old is in there. Only after that snapshot
# is written and checked ("finish", the services already running on the new data) is
# .devenv-old removed ("drop"). Any other run finds such a marker first and exits 67 with
# the name, so that devenv writes the snapshot before it touches anything.
HELPER_SCRIPT = r"""
set -eu
umask 077
uid=$1 gid=$2 out=$3 in=$4 want=$5 mode=${6:-copy} auto=${7:-}
if [ "$mode" != finish ] && [ "$mode" != drop ] && [ -n "$in" ] && [ -n "$want" ] && command -v postgres >/dev/null 2>&1
then
  have=$(postgres -V | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
  if [ "$have" != "$want" ]; then echo "devenv: image runs PostgreSQL $have" >&2; exit 65; fi
fi
x='[0-9A-F]'
segment="$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x"
mine="--exclude=./.devenv-restore --exclude=./.devenv-old --exclude=./.devenv-auto"
copy_postgres() {  # $1 the data directory
  [ -s "$1/PG_VERSION" ] || return 0
  cp "$1/PG_VERSION" /out/PG_VERSION
  info=$(pg_controldata "$1" 2>/dev/null || true)
  state=$(printf '%s\n' "$info" | sed -n 's/^Database cluster state: *//p')
  redo=$(printf '%s\n' "$info" | sed -n "s/^Latest checkpoint's REDO WAL file: *//p")
  if [ "$state" = "shut down" ] && [ -n "$redo" ] && [ -f "$1/pg_wal/$redo" ]; then
    # Cleanly shut down: only the segment holding the last checkpoint is needed; the
    # others are spent or preallocated, and PostgreSQL makes new ones when it needs them.
    tar -b 2048 -cf /out/postgres.tar $mine --exclude=./postmaster.pid \
      --exclude="./pg_wal/$segment" -C "$1" .
    tar -b 2048 -rf /out/postgres.tar -C "$1" "./pg_wal/$redo"
  else
    tar -b 2048 -cf /out/postgres.tar $mine --exclude=./postmaster.pid -C "$1" .
  fi
}
copy_out() {  # $1 the directory under each volume ("" or /.devenv-old)
  for svc in $out; do
    src=/vol/$svc$1
    [ -d "$src" ] || continue
    [ -n "$(ls -A "$src" | grep -vx .devenv-auto || true)" ] || continue
    if [ "$svc" = postgres ]; then copy_postgres "$src"
    else tar -cf "/out/$svc.tar" $mine -C "$src" .; fi
  done
  find /out -type f -exec chmod 600 {} +
  chown -R "$uid:$gid" /out
}
# A restore interrupted in the middle of its swap is undone here (the old data goes back);
# one interrupted after the swap owes its automatic snapshot: exit 67 with its name.
recover() {
  owed=""
  for vol in /vol/*; do
    [ -d "$vol/.devenv-old" ] || { rm -rf "$vol/.devenv-restore"; continue; }
    if [ -f "$vol/.devenv-old/.devenv-auto" ] && [ ! -d "$vol/.devenv-restore" ]; then
      owed="$owed $(basename "$vol")=$(cat "$vol/.devenv-old/.devenv-auto")"; continue
    fi
    if [ -f "$vol/.devenv-old/.devenv-auto" ]; then  # new entries half moved in: remove them
      find "$vol" -mindepth 1 -maxdepth 1 ! -name .devenv-restore ! -name .devenv-old \
        -exec rm -rf {} +
    fi
    rm -f "$vol/.devenv-old/.devenv-auto"
    find "$vol/.devenv-old" -mindepth 1 -maxdepth 1 -exec mv -t "$vol" {} +
    rm -rf "$vol/.devenv-old" "$vol/.devenv-restore"
  done
  if [ -n "$owed" ]; then echo "devenv-owed:$owed" >&2; exit 67; fi
}
stage_in() {
  need=0
  for svc in $in; do need=$((need + $(stat -c %s "/in/$svc.tar"))); done
  for svc in $in; do
    # The old data stays in the volume until its snapshot is written: room for both.
    free=$(($(df -Pk "/vol/$svc" | awk 'NR==2 {print $4}') * 1024))
    if [ "$free" -lt $((need + 67108864)) ]; then
      echo "devenv-space: $svc needs $need bytes, has $free" >&2; exit 68
    fi
  done
  for svc in $in; do
    vol=/vol/$svc
    mkdir "$vol/.devenv-restore" && unpack "/in/$svc.tar" "$vol/.devenv-restore" \
      || { rm -rf "$vol/.devenv-restore"; return 66; }
  done
}
# Two tars at once on two cores: one the biggest file (a table or an index holds most of a
# database), the other the rest (its directories too, whose owner and mode it sets). The big
# file's folder is made first: a tar that finds its folder missing and then made by the other
# tar gives up on the file ("Cannot open: No such file or directory").
unpack() {
  big=$(tar -tvf "$1" | awk '$1 ~ /^-/ && $3 > 67108864 {print $3, $6}' | sort -n \
    | tail -n 1 | cut -d' ' -f2)
  if [ -z "$big" ]; then tar -b 2048 -xf "$1" -C "$2"; return; fi
  mkdir -p "$2/$(dirname "$big")"
  tar -b 2048 -xf "$1" -C "$2" "$big" & one=$!
  rc=0; tar -b 2048 -xf "$1" -C "$2" --exclude="$big" || rc=$?
  wait "$one" || rc=$?
  return "$rc"
}
swap_in() {
  for svc in $in; do
    vol=/vol/$svc
    mkdir "$vol/.devenv-old"
    find "$vol" -mindepth 1 -maxdepth 1 ! -name .devenv-restore ! -name .devenv-old \
      -exec mv -t "$vol/.devenv-old" {} +
    printf '%s\n' "$auto" > "$vol/.devenv-old/.devenv-auto.new"
    mv "$vol/.devenv-old/.devenv-auto.new" "$vol/.devenv-old/.devenv-auto"
    find "$vol/.devenv-restore" -mindepth 1 -maxdepth 1 -exec mv -t "$vol" {} +
    rmdir "$vol/.devenv-restore"
  done
}
case $mode in
  finish)
    copy_out /.devenv-old
    for f in /out/*.tar; do [ -f "$f" ] || continue; tar -b 2048 -tf "$f" >/dev/null || exit 69; done
    ;;
  drop)
    for svc in $out; do rm -rf "/vol/$svc/.devenv-old"; done ;;
  stage)
    # Unpack while the services still run (the current data is not touched), then wait
    # for "go" on stdin (sent once they are stopped) to swap; anything else, or EOF (devenv
    # interrupted), throws the unpacked copy away. Leftovers of an earlier restore: exit
    # 70 before anything, for the `copy` mode to handle them with the services stopped.
    for vol in /vol/*; do
      if [ -e "$vol/.devenv-old" ] || [ -e "$vol/.devenv-restore" ]; then exit 70; fi
    done
    rc=0; stage_in || rc=$?
    if [ "$rc" != 0 ]; then
      for svc in $in; do rm -rf "/vol/$svc/.devenv-restore"; done; exit "$rc"; fi
    echo devenv-staged >&2
    go=""; read -r go || true
    if [ "$go" != go ]; then
      for svc in $in; do rm -rf "/vol/$svc/.devenv-restore"; done; exit 71; fi
    swap_in
    if [ -z "$auto" ]; then for svc in $in; do rm -rf "/vol/$svc/.devenv-old"; done; fi
    echo devenv-swapped >&2 ;;
  *)
    recover
    if [ -n "$out" ]; then copy_out ""; fi
    if [ -n "$in" ]; then
      rc=0; stage_in || rc=$?
      if [ "$rc" != 0 ]; then
        for svc in $in; do rm -rf "/vol/$svc/.devenv-restore"; done; exit "$rc"; fi
      swap_in
      if [ -z "$auto" ]; then for svc in $in; do rm -rf "/vol/$svc/.devenv-old"; done; fi
    fi ;;
esac
"""
EXIT_WRONG_MAJOR = 65
EXIT_RESTORE_FAILED = 66
EXIT_OWED = 67
EXIT_NO_ROOM = 68
EXIT_BAD_TAR = 69
EXIT_UNSETTLED = 70
EXIT_NOT_SWAPPED = 71


@dataclass(frozen=True)
class RestoreResult:
    snapshot: Snapshot
    #: the automatic snapshot of the data that was replaced (None: there was none)
    before: Snapshot | None
    #: client connections the stop closed
    closed: int = 0
    #: the automatic snapshot being written in the background (the replaced data stays
    #: set aside inside the volumes until it is written and checked)
    owed: str | None = None


def local_engine(ctx: Context) -> Engine:
    engine = connect(ctx.environ)
    if engine.remote_host:
        raise UsageError(f"snapshots need a local Docker engine (DOCKER_HOST points at "
                         f"{engine.remote_host})",
                         hint="use `devenv db export FILE`, which works with any engine")
    return engine


# --- the snapshot directory and the copy ---------------------------------------------
def _mounts(settings: Settings, services: Sequence[str],
            extra: Sequence[tuple[str, str, bool]] = ()) -> list[tuple[str, str, bool]]:
    return [(volume_name(settings, s), f"/vol/{s}", False) for s in services] + list(extra)


class _Owed(Exception):
    """A restore set data aside whose automatic snapshot is not written yet."""

    def __init__(self, owed: dict[str, str]) -> None:
        super().__init__(owed)
        self.owed = owed  # service -> automatic snapshot name


def copy_volumes(engine: Engine, settings: Settings, *, out: Path | None = None,
          copy_out: Sequence[str] = (), src: Snapshot | None = None,
          copy_in: Sequence[str] = (), mode: str = "copy", auto: str = "",
          mount: Sequence[str] = ()) -> None:
    """One helper container: copy the volumes of `copy_out` into the directory `out`, then
    the parts `copy_in` of the snapshot `src` into their volumes (setting the current data
    aside for the automatic snapshot `auto`). Raises _Owed when an earlier restore still
    owes its automatic snapshot (nothing was changed then)."""
    services = sorted(set(copy_out) | set(copy_in) | set(mount), key=DATA_SERVICES.index)
    extra = ([(str(out), "/out", False)] if out else []) + \
        ([(str(src.path), "/in", True)] if src else [])
    result = engine.run_helper(
        settings.image("postgres"), HELPER_SCRIPT, _mounts(settings, services, extra),
        [str(os.getuid()), str(os.getgid()), " ".join(copy_out), " ".join(copy_in),
         src.pg_major if src and "postgres" in copy_in else "", mode, auto])
    _check(result, settings, out=out, src=src)


def _check(result: CommandResult, settings: Settings, *, out: Path | None = None,
           src: Snapshot | None = None) -> None:
    """Nothing when the helper succeeded, else _Owed or the DataError for its failure."""
    if result.returncode == 0:
        return
    if result.returncode == EXIT_OWED:
        line = next((x for x in result.stderr.splitlines() if x.startswith("devenv-owed:")), "")
        owed = dict(item.split("=", 1) for item in line.split(":", 1)[-1].split() if "=" in item)
        if owed:
            raise _Owed(owed)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else f"exit {result.returncode}"
    if result.returncode == EXIT_NO_ROOM:
        raise DataError(f"not enough room in the data volume to restore: {last.split(': ', 1)[-1]}"
                        " (the current data stays there until its automatic snapshot is "
                        "written, so both must fit)",
                        hint="free some space on Docker's disk (`docker system df`); the "
                        "current data is unchanged")
    if result.returncode == EXIT_WRONG_MAJOR and src is not None:
        raise DataError(f"snapshot {src.name} holds PostgreSQL {src.pg_major} data; "
                        f"{settings.image('postgres')} runs another major version ({last})",
                        hint=_major_hint(src))
    # GNU tar says "Wrote only N of M bytes" when a write comes up short on a full disk.
    if out is not None and ("Wrote only" in result.stderr or "/out/" in result.stderr
                            and "No space left" in result.stderr):
        raise DataError(f"no space left in {out.parent} while writing the snapshot",
                        hint="free some space, or point DEVENV_SNAPSHOT_DIR at a bigger disk; "
                        "the current data is unchanged")
    if "No space left on device" in result.stderr:
        raise DataError("no space left in the data volume while restoring the snapshot",
                        hint="free some space on Docker's disk (`docker system df`); the "
                        "current data is unchanged")
    action = "restore" if result.returncode == EXIT_RESTORE_FAILED else "copy"
    raise DataError(f"the {action} of the data failed: {last}",
                    detail="\n".join(lines[-8:]) if len(lines) > 1 else None,
                    hint="the current data is unchanged; check the snapshot with "
                    "`devenv db snapshots`")


def _major_hint(src: Snapshot) -> str:
    return (f"start a PostgreSQL {src.pg_major} image (DEVENV_POSTGRES_IMAGE), restore it "
            "there and move the data with `devenv db export FILE` / `devenv db import FILE`")


def check_major(engine: Engine, settings: Settings, src: Snapshot) -> None:
    """Refuse, before anything stops, a snapshot of another PostgreSQL major version (the
    helper checks again with `postgres -V` for images that do not say PG_MAJOR)."""
    have = engine.image_env(settings.image("postgres")).get("PG_MAJOR", "")
    if src.pg_major and have and have.split(".")[0] != src.pg_major:
        raise DataError(f"snapshot {src.name} holds PostgreSQL {src.pg_major} data; "
                        f"{settings.image('postgres')} runs PostgreSQL {have}",
                        hint=_major_hint(src))


def _existing(engine: Engine, settings: Settings) -> list[str]:
    return [s for s in DATA_SERVICES if engine.volume_exists(volume_name(settings, s))]


def create_volumes(engine: Engine, settings: Settings, services: Sequence[str]) -> None:
    for service in services:
        name = volume_name(settings, service)
        if not engine.volume_exists(name):
            # Compose's labels: `up` adopts the volume and `down --volumes` removes it.
            engine.create_volume(name, volume_labels(settings, service))


@contextlib.contextmanager
def stopped(ctx: Context, engine: Engine, settings: Settings, restart: bool = True,
            closed: int | None = None) -> Iterator[int]:
    """Stop the running data services for a copy; start them again after it (also after a
    failure, with the data they had) and wait until they answer; with restart=False only
    after a failure. Yields the number of PostgreSQL client connections the stop closes
    (`closed`, when the caller counted them beforehand)."""
    from concurrent.futures import ThreadPoolExecutor

    containers = project_containers(engine, settings.project)
    check_same_directory(settings, containers.values())
    running = [containers[s] for s in DATA_SERVICES if s in containers
               and containers[s].running]
    if closed is None:
        closed = _client_connections(engine, settings, containers.get("postgres"))
    failed = True
    stopping = False
    try:
        if running:
            ctx.notify(f"stopping {', '.join(c.service for c in running)} for the copy"
                       + (f" (closing {closed} client connection{'s' * (closed != 1)})"
                          if closed else ""))
            stopping = True  # inside the try: a Ctrl-C during the stop starts them again
            with ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(engine.stop, [c.id for c in running]))
            stopping = False
        yield closed
        failed = False
    finally:
        if running and (restart or failed):
            if stopping:  # a stop still on its way (its thread outlives a Ctrl-C) lands first
                for container in running:
                    engine.stop(container.id)
            with ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(engine.start, [c.id for c in running]))
            _wait_ready(ctx, engine, settings, [c.service for c in running])


def client_connections(engine: Engine, settings: Settings) -> int:
    """PostgreSQL's client connections now (0 when it does not run)."""
    return _client_connections(engine, settings,
                               project_containers(engine, settings.project).get("postgres"))


def _client_connections(engine: Engine, settings: Settings, pg: Container | None) -> int:
    if pg is None or not pg.running:
        return 0
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
           "AND pid <> pg_backend_pid()")
    result = compose_of(engine, settings).exec("postgres", [*psql(settings, "postgres"), "-Atc",
                                                          sql],
                                             interactive=False, tty=False, capture=True)
    count = result.stdout.strip()
    return int(count) if count.isascii() and count.isdigit() else 0


def compose_of(engine: Engine, settings: Settings) -> Compose:
    return engine.compose(settings.project, settings.compose_file)


def _wait_ready(ctx: Context, engine: Engine, settings: Settings,
                services: Sequence[str]) -> None:
    containers = project_containers(engine, settings.project)
    host = url_host(settings, engine.remote_host)
    targets = []
    for name in services:
        published = containers[name].host_port(settings.catalog[name].container_port) \
            if name in containers else None
        if published is not None:
            targets.append(Target(name, settings.catalog[name].probe, host, published.host_port))
    wait = wait_until_ready(targets, settings.values, settings.wait_timeout)
    if not wait.ok:
        failed = ", ".join({**wait.exited, **wait.timed_out})
        raise NotReadyError(f"{failed} did not answer again after the copy",
                            hint=f"read `devenv logs {failed.split(',')[0]}`; the data is in "
                            "place, `devenv up` starts it again")


def take(ctx: Context, engine: Engine, settings: Settings, name: str, *, auto: bool,
          force: bool = False, login_ok: bool = False) -> Snapshot | None:
    """Copy the current volumes into snapshot `name` (None when there is no data); an
    automatic snapshot an earlier restore still owes is written first. `login_ok`: the
    project's PostgreSQL login worked on this data (credentials.login_works, asked before
    the stop), so the snapshot records it."""
    root = settings.snapshot_dir
    services = _existing(engine, settings)
    if not services:
        return None
    for attempt in (1, 2):
        work = snapshots.new_workdir(root, name)
        try:
            try:
                copy_volumes(engine, settings, out=work, copy_out=services)
            except _Owed as owed:
                if attempt == 2:
                    raise
                _pay(ctx, engine, settings, owed.owed)
                continue
            if not any(work.glob("*.tar")):
                return None
            return _commit(work, settings, name, auto=auto, force=force, login_ok=login_ok)
        finally:
            if work.exists():
                snapshots.discard(work)
    return None  # pragma: no cover


def _commit(work: Path, settings: Settings, name: str, *, auto: bool,
            force: bool = False, login_ok: bool = False) -> Snapshot:
    pg_major = (work / "PG_VERSION").read_text().strip() \
        if (work / "PG_VERSION").is_file() else ""
    # Only a login seen to work is recorded: restores check against it before the swap.
    login = credentials.recorded(settings) if login_ok and \
        (work / snapshots.PARTS["postgres"]).is_file() else None
    return snapshots.commit(work, settings.snapshot_dir, name, pg_major=pg_major,
                            database=settings["DEVENV_POSTGRES_DB"],
                            project=settings.project, auto=auto, replace=force, login=login)


def _pay(ctx: Context, engine: Engine, settings: Settings, owed: dict[str, str],
         login_ok: bool = False) -> Snapshot | None:
    """Write the automatic snapshot a restore owes from the data it set aside inside the
    volumes, check it, and only then remove the set-aside data. On any failure the
    set-aside data stays where it is (and the next data command tries again)."""
    services = sorted(owed, key=DATA_SERVICES.index)
    name = owed[services[0]]
    root = settings.snapshot_dir
    ctx.notify(f"writing the automatic snapshot {name} of the data a restore replaced")
    taken: Snapshot | None = None
    if not (root / name).is_dir():
        work = snapshots.new_workdir(root, name)
        try:
            try:
                copy_volumes(engine, settings, out=work, copy_out=services, mode="finish")
            except DataError as exc:
                raise DataError(
                    f"the automatic snapshot {name} of the replaced data was not written: "
                    f"{exc.message}",
                    hint="the replaced data is kept inside the volumes; free some space, "
                    "then `devenv db snapshot` (or any restore, import or reset) writes "
                    f"{name} first") from exc
            if any(work.glob("*.tar")):
                taken = _commit(work, settings, name, auto=True, login_ok=login_ok)
        finally:
            if work.exists():
                snapshots.discard(work)
    else:
        taken = snapshots.load(root, name)  # verified: manifest and every part complete
    copy_volumes(engine, settings, copy_out=services, mode="drop")
    return taken


# --- the use cases ---------------------------------------------------------------------
def snapshot(ctx: Context, name: str | None = None, force: bool = False) -> Snapshot:
    """Copy PostgreSQL's and Redis' volumes into a named snapshot."""
    settings = ctx.settings()
    name = snapshots.check_name(name) if name else snapshots.auto_name().replace(
        snapshots.AUTO_PREFIX, "snap-")
    if (settings.snapshot_dir / name).exists():
        if not force:
            raise snapshots.SnapshotNameError(f"snapshot {name} already exists",
                                              hint="choose another name, or add --force to "
                                              "replace it")
        # before anything stops: --force replaces a snapshot, never someone's folder
        snapshots.check_owned(settings.snapshot_dir, name)
    engine = local_engine(ctx)
    with project_lock(settings.state_dir, settings.project, "db snapshot",
                      settings.wait_timeout, on_wait=ctx.notify):
        if not _existing(engine, settings):
            raise UsageError(f"project {settings.project} has no data volumes yet",
                             hint="start the database first: devenv up --only db,cache")
        login_ok = credentials.login_works(engine, settings)
        with stopped(ctx, engine, settings):
            taken = take(ctx, engine, settings, name, auto=False, force=force,
                         login_ok=login_ok)
    if taken is None:
        raise UsageError(f"project {settings.project} has no data to snapshot",
                         hint="start the database first: devenv up --only db,cache")
    return taken


def restore(ctx: Context, name: str, background: bool = True,
            adopt: bool = False) -> RestoreResult:
    """Replace the data with a snapshot. The current data is set aside inside its volume
    (an instant rename) and the snapshot unpacked; the services start on the new data, and
    then the set-aside data is written to an automatic snapshot (in a background process
    when `background`), which is checked before the set-aside data is removed.

    A snapshot taken with another PostgreSQL login than the project's is refused before
    anything stops, unless `adopt`: then the project's login is put on the restored data.
    Once PostgreSQL runs on it, the project's login is tried (CredentialsError when it is
    refused: the restore is done, the message says what to do)."""
    settings = ctx.settings()
    snapshots.check_name(name)
    engine = local_engine(ctx)
    with project_lock(settings.state_dir, settings.project, "db restore",
                      settings.wait_timeout, on_wait=ctx.notify):
        target = _load_target(ctx, engine, settings, name)
        check_major(engine, settings, target)
        login = "postgres" in target.holds
        found = credentials.differences(target, settings)
        if found and not adopt:
            raise credentials.refusal(target, found)
        if adopt and login:
            pg = project_containers(engine, settings.project).get("postgres")
            if pg is None or not pg.running:
                raise UsageError("--adopt-credentials sets the login on the running "
                                 "PostgreSQL, which is not running",
                                 hint="start it first: devenv up --only db")
        existed = [s for s in _existing(engine, settings) if s in target.holds]
        auto = auto_name(settings) if existed else ""
        login_ok = bool(auto) and credentials.login_works(engine, settings)
        ctx.notify(f"restoring {target.name} ({snapshots.human_size(target.size)}); the "
                   "current data is kept aside for an automatic snapshot")
        create_volumes(engine, settings, target.holds)
        # The snapshot is unpacked beside the current data while the services stop.
        helper = engine.start_helper(
            settings.image("postgres"), HELPER_SCRIPT,
            _mounts(settings, target.holds, [(str(target.path), "/in", True)]),
            [str(os.getuid()), str(os.getgid()), "", " ".join(target.holds),
             target.pg_major if "postgres" in target.holds else "", "stage", auto])
        try:
            with stopped(ctx, engine, settings) as closed:
                if not _swap(engine, settings, helper, target):
                    auto = _restore_stopped(ctx, engine, settings, target, auto)
        finally:
            helper.close()
            helper.wait()  # the container exits by itself once it has swapped
        # The data is in place; whatever happens now, the replaced data's snapshot is owed.
        problem: DevenvError | None = None
        if login:
            try:
                if adopt:
                    ctx.notify("putting this project's PostgreSQL login on the restored data")
                    credentials.adopt(engine, settings, target)
                refused = credentials.check_login(engine, settings)
                if refused:
                    problem = credentials.login_refused(target, refused, auto or None)
            except DevenvError as exc:
                problem = exc
        if not auto:
            result = RestoreResult(target, None, closed)
        elif not background:
            before = _pay(ctx, engine, settings, {s: auto for s in existed}, login_ok)
            snapshots.prune_auto(settings.snapshot_dir, settings.project,
                                 protect=[auto])
            result = RestoreResult(target, before, closed)
        else:
            _owed_file(settings).write_text(auto + "\n" + (LOGIN_OK + "\n") * login_ok,
                                            encoding="utf-8")
            _pay_later(ctx)
            result = RestoreResult(target, None, closed, owed=auto)
    if problem is not None:
        raise problem
    return result


def _swap(engine: Engine, settings: Settings, helper: HelperRun, target: Snapshot) -> bool:
    """Once the services are stopped: let the staging helper swap the unpacked snapshot
    in. False when it found what an earlier restore left (nothing changed: the caller
    restores the sequential way, which handles it); DataError when it failed."""
    try:
        if not helper.wait_for("devenv-staged"):
            result = helper.wait()
            if result.returncode == EXIT_UNSETTLED:
                return False
            _check(result, settings, src=target)
            raise DataError(f"the restore of the data failed (exit {result.returncode})",
                            hint="the current data is unchanged")
        if not helper.send("go") or not helper.wait_for("devenv-swapped"):
            result = helper.wait()
            # stopped in the middle of the swap: put the data right before any start
            try:
                copy_volumes(engine, settings, mount=target.holds)
            except _Owed:
                return True  # the swap was complete: only its automatic snapshot is owed
            _check(result, settings, src=target)
            raise DataError(f"the restore of the data stopped half way (exit "
                            f"{result.returncode}); the current data is back in place",
                            hint="try again; `devenv db snapshots` lists the snapshots")
        return True
    except BaseException:
        helper.close()  # the helper throws its unpacked copy away, or finishes its swap
        helper.wait()
        raise


def _restore_stopped(ctx: Context, engine: Engine, settings: Settings, target: Snapshot,
                     auto: str) -> str:
    """The restore in one helper with the services stopped; an automatic snapshot an
    earlier restore still owes is written first. Returns the automatic snapshot owed."""
    try:
        copy_volumes(engine, settings, src=target, copy_in=target.holds, auto=auto)
    except _Owed as owed:
        _pay(ctx, engine, settings, owed.owed)
        # the name may have been the one just written (same second): pick again
        auto = auto_name(settings) if auto else ""
        copy_volumes(engine, settings, src=target, copy_in=target.holds, auto=auto)
    return auto


def _load_target(ctx: Context, engine: Engine, settings: Settings, name: str) -> Snapshot:
    """The snapshot to restore; an automatic snapshot that a restore still owes (e.g. just
    named by the previous restore) is written first."""
    try:
        return snapshots.load(settings.snapshot_dir, name)
    except snapshots.SnapshotNameError:
        if not name.startswith(snapshots.AUTO_PREFIX) or not settle(ctx, engine, settings):
            raise
    return snapshots.load(settings.snapshot_dir, name)


def settle(ctx: Context, engine: Engine, settings: Settings) -> bool:
    """Write any automatic snapshot a restore still owes (finishing or undoing an
    interrupted restore first). True when one was written. Call it under the lock."""
    services = _existing(engine, settings)
    if not services:
        return False
    try:
        copy_volumes(engine, settings, mount=services)
    except _Owed as owed:
        _pay(ctx, engine, settings, owed.owed, _owed_login_ok(settings, owed.owed))
        snapshots.prune_auto(settings.snapshot_dir, settings.project,
                             protect=owed.owed.values())
        _owed_file(settings).unlink(missing_ok=True)
        return True
    _owed_file(settings).unlink(missing_ok=True)
    return False


def _owed_file(settings: Settings) -> Path:
    """The automatic snapshot a restore left to a background process (its name; then
    LOGIN_OK when the project's login worked on the data it replaced)."""
    return settings.state_dir / f"{settings.project}.owed"


LOGIN_OK = "login-ok"


def _owed_login_ok(settings: Settings, owed: dict[str, str]) -> bool:
    try:
        lines = _owed_file(settings).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return False
    return len(lines) == 2 and lines[1] == LOGIN_OK and lines[0] in owed.values()


def _pay_later(ctx: Context) -> None:
    """Start a detached process that writes the owed automatic snapshot under the project
    lock (it waits for this command to release it); its output goes to a log file."""
    import json
    import subprocess
    import sys

    settings = ctx.settings()
    spec = json.dumps({"project_dir": str(ctx.project_dir), "flags": dict(ctx.flags),
                       "env_file": str(ctx.env_file) if ctx.env_file else None})
    log = settings.state_dir / f"{settings.project}.restore.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as handle:
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", "import sys; from devenv.data.ops import settle_main; "
             "sys.exit(settle_main(sys.argv[1]))", spec],
            env=dict(ctx.environ), cwd=str(ctx.project_dir), stdin=subprocess.DEVNULL,
            stdout=handle, stderr=handle, start_new_session=True)


def settle_main(spec_json: str) -> int:
    """The detached process of _pay_later."""
    import json
    import sys
    import time

    spec = json.loads(spec_json)
    ctx = Context(project_dir=Path(spec["project_dir"]), environ=dict(os.environ),
                  flags=spec["flags"],
                  env_file=Path(spec["env_file"]) if spec["env_file"] else None,
                  notify=lambda line: print(line, file=sys.stderr, flush=True))
    try:
        settings = ctx.settings()
        with project_lock(settings.state_dir, settings.project,
                          "db restore (writing its automatic snapshot)", 3600):
            settle(ctx, connect(ctx.environ), settings)
    except DevenvError as exc:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} devenv: error: "
              f"{exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""),
              file=sys.stderr)
        return 1
    return 0


def wait_owed(ctx: Context) -> None:
    """Wait while an automatic snapshot is being written in the background."""
    settings = ctx.settings()
    if _owed_file(settings).exists():
        with project_lock(settings.state_dir, settings.project, "db snapshots",
                          settings.wait_timeout, on_wait=ctx.notify):
            pass


def auto_name(settings: Settings) -> str:
    name = snapshots.auto_name()
    n = 1
    while (settings.snapshot_dir / name).exists():
        n += 1
        name = f"{snapshots.auto_name()}-{n}"
    return name


def list_snapshots(ctx: Context) -> list[Snapshot]:
    return snapshots.list_snapshots(ctx.settings().snapshot_dir)


def check_removable(ctx: Context, name: str) -> None:
    """Refuse, before anyone is asked to confirm, a name that is no snapshot devenv wrote."""
    snapshots.check_name(name)
    snapshots.check_owned(ctx.settings().snapshot_dir, name)


def remove(ctx: Context, name: str) -> Snapshot:
    snapshots.check_name(name)
    return snapshots.remove(ctx.settings().snapshot_dir, name)


def reset(ctx: Context) -> tuple[RestoreResult | None, Snapshot | None, list[str]]:
    """Back to the seed: the `seed` snapshot if there is one (a restore), else fresh
    volumes that `up` initialises with the seed files and the migration. Returns
    (restore result, automatic snapshot, services that ran and that the caller starts
    again with `up`, which lives above data/)."""
    settings = ctx.settings()
    if (settings.snapshot_dir / snapshots.SEED).is_dir():
        result = restore(ctx, snapshots.SEED)
        return result, result.before, []
    engine = local_engine(ctx)
    with project_lock(settings.state_dir, settings.project, "db reset",
                      settings.wait_timeout, on_wait=ctx.notify):
        containers = project_containers(engine, settings.project)
        check_same_directory(settings, containers.values())
        running = [s for s in ("api", *DATA_SERVICES) if s in containers
                   and containers[s].running]
        login_ok = credentials.login_works(engine, settings)
        with stopped(ctx, engine, settings, restart=False):
            before = take(ctx, engine, settings, auto_name(settings), auto=True,
                          login_ok=login_ok)
        engine.remove_containers([containers[s] for s in DATA_SERVICES if s in containers])
        for service in DATA_SERVICES:
            engine.remove_volume(volume_name(settings, service))
    snapshots.prune_auto(settings.snapshot_dir, settings.project,
                         protect=[before.name] if before else [])
    return None, before, running


