"""Export and import in pg_dump's own formats (custom, tar, plain SQL, gzipped SQL), and
the psql and redis-cli shells. An import replaces the database after an automatic snapshot
(ops.take), so the snapshot is the way back.

An import loads the dump into a new database and swaps it in only when it loaded whole. A
dump made on another server names roles, tablespaces and databases that are not here: what
only makes sense there is left out (pg_restore's --no-owner --no-privileges
--no-tablespaces --no-security-labels; plainsql.SqlFilter does the same for plain SQL and
keeps the script on the database being imported) and the result says what was left out.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..config.settings import Settings
from ..config.state import known_secrets, project_lock
from ..context import Context
from ..engine import Container, Engine, connect
from ..errors import DataError, UsageError
from ..live.running import project_containers
from ..report import mask
from . import credentials, plainsql, snapshots
from .ops import auto_name, compose_of, local_engine, stopped, take
from .snapshots import Snapshot
from .volumes import pg_env, psql

IMPORT_SUFFIX = "__devenv_import"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class TransferResult:
    path: Path
    bytes: int
    kind: str  # custom | tar | sql | sql.gz
    before: Snapshot | None = None
    #: what the import left out (owners, grants ... of the server the dump came from)
    left_out: tuple[str, ...] = ()


# --- export and import (pg_dump's own formats) ------------------------------------------
def running_service(engine: Engine, settings: Settings, service: str) -> Container:
    containers = project_containers(engine, settings.project)
    container = containers.get(service)
    if container is None or not container.running:
        alias = settings.catalog[service].aliases[0]
        raise UsageError(f"{service} of project {settings.project} is not running",
                         hint=f"start it: devenv up --only {alias}")
    return container


def _fail(what: str, stderr: str, settings: Settings, hint: str) -> DataError:
    import re

    lines = [line for line in mask(stderr, known_secrets(settings)).splitlines()
             if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "error" in line] or lines
    first = errors[0].strip() if errors else "no output"
    role = re.search(r'role "((?:[^"]|"")+)" does not exist', first)
    if role:  # e.g. a policy for a role of the server the dump came from
        name = role[1].replace('"', '""')
        hint = (f"the dump needs role {role[1]}, which this server does not have: create it "
                f"(devenv psql -c 'CREATE ROLE \"{name}\"') and import again; " + hint)
    return DataError(f"{what}: {first}",
                     detail="\n".join(lines[-10:]) if len(lines) > 1 else None, hint=hint)


def export(ctx: Context, path: Path, progress: Progress | None = None) -> TransferResult:
    """pg_dump -Fc of the database into `path` (written whole or not at all, mode 0600)."""
    settings = ctx.settings()
    engine = connect(ctx.environ)
    pg = running_service(engine, settings, "postgres")
    path = path.expanduser().resolve()
    tmp = path.with_name(f".{path.name}.devenv-tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror}",
                        hint="choose a writable directory") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            result = engine.exec_stream(pg.id, ["pg_dump", "-Fc", "-U",
                                         settings["DEVENV_POSTGRES_USER"], "-d",
                                         settings["DEVENV_POSTGRES_DB"]],
                                 env=pg_env(settings), stdout=out, progress=progress)
        if result.returncode:
            raise _fail("pg_dump failed", result.stderr, settings,
                        "nothing was written; check `devenv logs db`")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return TransferResult(path, path.stat().st_size, "custom")


def dump_kind(path: Path) -> str:
    """custom | tar | sql | sql.gz, from the file's first bytes; DataError otherwise."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}",
                        hint="check the path") from exc
    if head.startswith(b"PGDMP"):
        return "custom"
    if head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        return "sql.gz"
    try:
        text = head.decode("utf-8") if b"\0" not in head else None
    except UnicodeDecodeError as exc:  # a character cut at 4096 bytes is still text
        text = head[: exc.start].decode() if exc.start > len(head) - 4 else None
    if text and text.strip():
        return "sql"
    what = "empty" if not head else "unknown format"
    raise DataError(f"{path} is not a PostgreSQL dump ({what})",
                    hint="import a pg_dump file (-Fc or -Ft), a .sql or a .sql.gz")


def import_dump(ctx: Context, path: Path, progress: Progress | None = None) -> TransferResult:
    """Load a dump into a new database and swap it in for the current one, after an
    automatic snapshot. A dump that fails, or that would act on another database, leaves
    the current database as it was."""
    settings = ctx.settings()
    path = path.expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"{path} is not a file", hint="give the path of a dump")
    kind = dump_kind(path)
    engine = local_engine(ctx)
    pg = running_service(engine, settings, "postgres")
    # Before anything changes: a refusal (another database), and what will be left out.
    left_out = _inspect(engine, pg, settings, path, kind)
    db = settings["DEVENV_POSTGRES_DB"]
    scratch = db[: 63 - len(IMPORT_SUFFIX)] + IMPORT_SUFFIX
    with project_lock(settings.state_dir, settings.project, "db import",
                      settings.wait_timeout, on_wait=ctx.notify):
        login_ok = credentials.login_works(engine, settings)
        with stopped(ctx, engine, settings):
            before = take(ctx, engine, settings, auto_name(settings), auto=True,
                          login_ok=login_ok)
        pg = running_service(engine, settings, "postgres")
        _sql(engine, pg, settings, 'DROP DATABASE IF EXISTS :"scratch";\n'
             'CREATE DATABASE :"scratch";\n', scratch=scratch)
        try:
            result = _load(engine, pg, settings, path, kind, scratch, progress)
        except BaseException:
            _sql(engine, pg, settings, 'DROP DATABASE IF EXISTS :"scratch";\n', scratch=scratch)
            raise
        if result.returncode:
            _sql(engine, pg, settings, 'DROP DATABASE IF EXISTS :"scratch";\n', scratch=scratch)
            if before is not None:
                snapshots.remove(settings.snapshot_dir, before.name)  # nothing changed
            raise _fail(f"{path.name} did not load", result.stderr, settings,
                        "the current data is unchanged; fix the dump and import it again")
        # FORCE closes the clients of the old database; the rename is instant.
        _sql(engine, pg, settings, 'DROP DATABASE :"db" WITH (FORCE);\n'
             'ALTER DATABASE :"scratch" RENAME TO :"db";\n', scratch=scratch, db=db)
    snapshots.prune_auto(settings.snapshot_dir, settings.project,
                         protect=[before.name] if before else [])
    return TransferResult(path, path.stat().st_size, kind, before, tuple(left_out))


def _inspect(engine: Engine, pg: Container, settings: Settings, path: Path,
             kind: str) -> list[str]:
    """Read the dump once before anything changes: DataError when it would act on another
    database than the one imported; else what the import will leave out, in words."""
    user = settings["DEVENV_POSTGRES_USER"]
    if kind in ("sql", "sql.gz"):
        with open(path, "rb") as raw, _read_to_the_end(path):
            text = gzip.GzipFile(fileobj=raw) if kind == "sql.gz" else raw
            return plainsql.scan(text).left_out(user)  # type: ignore[arg-type]
    with open(path, "rb") as raw:
        listing = engine.exec_stream(pg.id, ["pg_restore", "--create", "--list"], stdin=raw)
    if listing.returncode:
        raise _fail(f"{path.name} cannot be read", listing.stderr, settings,
                    "the file is truncated or damaged; the current data is unchanged")
    return restore_left_out(listing.stdout, user)


def restore_left_out(listing: str, user: str) -> list[str]:
    """What pg_restore's --no-owner --no-privileges --no-security-labels and a restore into
    an existing database leave out of an archive, from its `pg_restore --create --list`."""
    import re

    owners, grants, labels, database = set(), 0, 0, []
    for line in listing.splitlines():
        entry = re.match(r"\d+; \d+ \d+ (?P<rest>.*)$", line.strip())
        if entry is None:
            continue
        rest = entry["rest"]
        words = rest.split()
        if rest.startswith(("ACL ", "DEFAULT ACL ")):
            grants += 1
        elif rest.startswith("SECURITY LABEL "):
            labels += 1
        elif rest.startswith("DATABASE PROPERTIES "):
            database.append("settings")
        elif rest.startswith("COMMENT - DATABASE "):
            database.append("comment")
        elif len(words) > 1 and not rest.startswith("DATABASE "):
            owners.add(words[-1])
    out = []
    others = sorted(owners - {user, "-"})
    if others:
        out.append(f"the owner{'s' * (len(others) > 1)} {', '.join(others)} (everything "
                   f"belongs to {user} here)")
    if grants:
        out.append(f"{grants} privilege entr{'ies' if grants > 1 else 'y'} (GRANT/REVOKE of "
                   "the dump's roles)")
    if labels:
        out.append(f"{labels} security label{'s' * (labels > 1)}")
    if database:
        out.append(f"the database's own {' and '.join(sorted(set(database)))}")
    return out


@contextlib.contextmanager
def _read_to_the_end(path: Path) -> Iterator[None]:
    """A dump that cannot be read to its end (truncated, a broken gzip) is a DataError."""
    try:
        yield
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path.name} cannot be read to the end: {exc}",
                        hint="the file is truncated or damaged; the current data is "
                        "unchanged") from exc


def _sql_source(raw: BinaryIO, kind: str) -> BinaryIO:
    """The script psql runs: decompressed, and through the SqlFilter."""
    text: BinaryIO = gzip.GzipFile(fileobj=raw) if kind == "sql.gz" else raw  # type: ignore[assignment]
    return plainsql.FilteredReader(text, plainsql.SqlFilter())  # type: ignore[return-value]


def _load(engine: Engine, pg: Container, settings: Settings, path: Path, kind: str,
          database: str, progress: Progress | None):
    user = settings["DEVENV_POSTGRES_USER"]
    if kind in ("custom", "tar"):
        argv = ["pg_restore", "--no-owner", "--no-privileges", "--no-tablespaces",
                "--no-security-labels", "--exit-on-error", "-U", user, "-d", database]
    else:
        argv = [*psql(settings, database), "-v", f"{plainsql.TARGET_VAR}={database}", "-q",
                "-f", "-"]
    with open(path, "rb") as raw, _read_to_the_end(path):
        source = raw if kind in ("custom", "tar") else _sql_source(raw, kind)
        return engine.exec_stream(pg.id, argv, env=pg_env(settings), stdin=source,
                                  progress=_on_file(raw, progress))


def _on_file(raw: BinaryIO, progress: Progress | None) -> Progress | None:
    """Progress in bytes of the file read (not of what it decompresses to)."""
    if progress is None:
        return None
    return lambda _done: progress(raw.tell())


def _sql(engine: Engine, pg: Container, settings: Settings, sql: str,
         **names: str) -> None:
    """SQL on the maintenance database with identifiers as psql variables (:"name")."""
    argv = psql(settings, "postgres")
    for key, value in names.items():
        argv += ["--set", f"{key}={value}"]
    result = compose_of(engine, settings).exec("postgres", [*argv, "-q", "-f", "-"],
                                             interactive=False, tty=False, capture=True,
                                             stdin=sql.encode())
    if result.code:
        raise _fail("PostgreSQL refused the import step", result.stderr, settings,
                    "the current data is unchanged")


# --- shells ----------------------------------------------------------------------------
def shell(ctx: Context, service: str, args: Sequence[str], tty: bool) -> int:
    """psql or redis-cli inside the running container, with the stack's credentials;
    returns the client's exit code."""
    settings = ctx.settings()
    engine = connect(ctx.environ)
    running_service(engine, settings, service)
    # psql logs in over the container's local socket, which the postgres images trust:
    # no password on any command line.
    argv = (["psql", "-U", settings["DEVENV_POSTGRES_USER"], "-d",
             settings["DEVENV_POSTGRES_DB"], *args] if service == "postgres"
            else ["redis-cli", *args])
    return compose_of(engine, settings).exec(service, argv, tty=tty).code


