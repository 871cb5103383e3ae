"""The snapshot store: physical copies of the data volumes, kept on the host.

One directory per snapshot under DEVENV_SNAPSHOT_DIR (default .devenv/snapshots, mode 0700):
`manifest.json`, `postgres.tar` (the stopped server's data directory, as tar) and
`redis.tar` (Redis' /data), files mode 0600. A snapshot is written into a `.tmp-` directory
and renamed into place only when complete, so a full disk or Ctrl-C never leaves half of one.
Nothing here talks to Docker: data/ops.py fills and reads the directories through the engine.

The directory may be one the user chose and shares with other things (and other projects):
devenv deletes only what it wrote there. A snapshot is removed (by `db rm`, `--force` or the
pruning of automatic snapshots) only when it carries devenv's manifest and holds nothing but
the files devenv writes, and automatic snapshots are pruned per project.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, SnapshotNameError, StateError

SCHEMA = "devenv.snapshot/1"
LIST_SCHEMA = "devenv.snapshots/1"
SEED = "seed"
AUTO_PREFIX = "auto-"
#: automatic snapshots (taken before a restore, import or reset) kept; older ones go
KEEP_AUTO = 5
MANIFEST = "manifest.json"
PARTS = {"postgres": "postgres.tar", "redis": "redis.tar"}
#: every file devenv writes into a snapshot (PG_VERSION only while it is being written)
OWN_FILES = frozenset({MANIFEST, "PG_VERSION", *PARTS.values()})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Snapshot:
    name: str
    path: Path
    created: str  # ISO 8601, UTC
    #: service -> bytes of its tar
    sizes: dict[str, int]
    #: PostgreSQL major version of the data directory ("15"), "" without postgres
    pg_major: str
    database: str
    project: str
    auto: bool
    #: the PostgreSQL login the data was taken with: "user", and "password" as a salted
    #: fingerprint (data/credentials.py); empty for snapshots that did not record it
    login: dict[str, str] = field(default_factory=dict)

    @property
    def holds(self) -> tuple[str, ...]:
        return tuple(name for name in PARTS if name in self.sizes)

    @property
    def size(self) -> int:
        return sum(self.sizes.values())

    def part(self, service: str) -> Path:
        return self.path / PARTS[service]

    def as_json(self) -> dict[str, Any]:
        return {"schema": LIST_SCHEMA, "name": self.name, "created": self.created,
                "bytes": self.size, "holds": list(self.holds), "postgres_major": self.pg_major,
                "database": self.database, "project": self.project, "auto": self.auto,
                "path": str(self.path)}


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise SnapshotNameError(
            f"{name!r} is not a snapshot name",
            hint="use letters, digits, '.', '-' and '_' (up to 64, no '/'), e.g. before-upgrade")
    return name


def auto_name(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{AUTO_PREFIX}{stamp}"


def ensure_dir(root: Path) -> Path:
    """The snapshot directory, created 0700. An existing one keeps its mode (it may be a
    directory the user chose): every snapshot in it is 0700 on its own."""
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(f"cannot use the snapshot directory {root}: {exc.strerror}",
                         hint="set DEVENV_SNAPSHOT_DIR to a writable directory") from exc
    return root


def new_workdir(root: Path, name: str) -> Path:
    ensure_dir(root)
    try:
        return Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    except OSError as exc:
        raise StateError(f"cannot write to {root}: {exc.strerror}",
                         hint="free some space or set DEVENV_SNAPSHOT_DIR elsewhere") from exc


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def commit(work: Path, root: Path, name: str, *, pg_major: str, database: str, project: str,
           auto: bool, replace: bool = False, login: dict[str, str] | None = None) -> Snapshot:
    """Write the manifest into a filled work directory and rename it to `name`."""
    sizes = {service: (work / file).stat().st_size
             for service, file in PARTS.items() if (work / file).is_file()}
    manifest = {"schema": SCHEMA, "name": name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "sizes": sizes, "postgres_major": pg_major, "database": database,
                "project": project, "auto": auto, **({"login": login} if login else {})}
    target = root / name
    try:
        fd = os.open(work / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
        (work / "PG_VERSION").unlink(missing_ok=True)
        os.chmod(work, 0o700)
        old = None
        if target.exists() or target.is_symlink():
            if not replace:
                raise SnapshotNameError(f"snapshot {name} already exists",
                                        hint="choose another name, or add --force to replace it")
            check_owned(root, name)  # --force replaces a snapshot, never someone's folder
            old = root / f".tmp-old-{name}-{os.getpid()}"
            os.rename(target, old)
        os.rename(work, target)
        if old is not None:
            _delete_owned(old)
    except OSError as exc:
        discard(work)
        raise DataError(f"cannot store snapshot {name}: {exc.strerror}",
                        hint="free some space or set DEVENV_SNAPSHOT_DIR elsewhere") from exc
    except (SnapshotNameError, DataError):
        discard(work)
        raise
    return load(root, name)


def load(root: Path, name: str) -> Snapshot:
    """A snapshot by name, checked: a manifest devenv wrote, and every part complete."""
    check_name(name)
    path = root / name
    if not path.is_dir():
        known = ", ".join(s.name for s in list_snapshots(root)) or "none yet"
        raise SnapshotNameError(f"no snapshot named {name} in {root}",
                                hint=f"snapshots: {known} (`devenv db snapshots`)")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
            raise ValueError(manifest.get("schema") if isinstance(manifest, dict) else None)
        sizes = {str(k): int(v) for k, v in dict(manifest["sizes"]).items() if k in PARTS}
        snapshot = Snapshot(name=name, path=path, created=str(manifest["created"]),
                            sizes=sizes, pg_major=str(manifest.get("postgres_major") or ""),
                            database=str(manifest.get("database") or ""),
                            project=str(manifest.get("project") or ""),
                            auto=bool(manifest.get("auto")), login=_login(manifest))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a devenv snapshot (no readable {MANIFEST} of "
                        f"{SCHEMA})",
                        hint="take snapshots with `devenv db snapshot`; a dump file goes "
                        "through `devenv db import FILE`") from exc
    for service in snapshot.holds:
        try:
            actual = snapshot.part(service).stat().st_size
        except OSError:
            actual = -1
        if actual != snapshot.sizes[service]:
            raise DataError(f"snapshot {name} is damaged: {PARTS[service]} has "
                            f"{max(actual, 0)} bytes, its manifest says "
                            f"{snapshot.sizes[service]}",
                            hint=f"it was truncated or changed; remove it with "
                            f"`devenv db rm {name}` and use another snapshot")
    if not snapshot.holds:
        raise DataError(f"snapshot {name} holds no data", hint=f"remove it: devenv db rm {name}")
    return snapshot


def _login(manifest: dict[str, Any]) -> dict[str, str]:
    """The manifest's login record, validated (anything else: none recorded)."""
    login = manifest.get("login")
    if not isinstance(login, dict):
        return {}
    return {key: value for key, value in login.items()
            if key in ("user", "password") and isinstance(value, str)}


def list_snapshots(root: Path) -> list[Snapshot]:
    """Every readable snapshot, oldest first (unreadable directories are left out)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                with contextlib.suppress(DataError, SnapshotNameError):
                    found.append(load(root, entry.name))
    return sorted(found, key=lambda s: (s.created, s.name))


def remove(root: Path, name: str) -> Snapshot:
    """Delete snapshot `name`: only a snapshot devenv wrote (a damaged one too), never
    another directory of that name (DataError, nothing deleted)."""
    snapshot = load_any(root, name)
    try:
        _delete_owned(snapshot.path)
    except OSError as exc:
        raise StateError(f"cannot remove {snapshot.path}: {exc.strerror}") from exc
    return snapshot


def load_any(root: Path, name: str) -> Snapshot:
    """Like load, but a damaged snapshot is still returned (so that `rm` can remove it);
    anything devenv did not write is still refused (check_owned)."""
    try:
        return load(root, name)
    except DataError:
        check_owned(root, name)
        return Snapshot(name, root / name, "", {}, "", "", "", False)


def check_owned(root: Path, name: str) -> None:
    """DataError unless root/name is a snapshot devenv wrote: a directory (not a link) with
    devenv's manifest, holding nothing but the files devenv writes. What devenv deletes it
    checks with this first: the snapshot directory may be a folder the user shares."""
    path = root / name
    if not path.is_dir():
        known = ", ".join(s.name for s in list_snapshots(root)) or "none yet"
        raise SnapshotNameError(f"no snapshot named {name} in {root}",
                                hint=f"snapshots: {known} (`devenv db snapshots`)")
    keep = ("it is not devenv's to delete; remove it yourself if it is no longer needed, "
            "or choose another name")
    if path.is_symlink():
        raise DataError(f"{path} is a link, not a snapshot devenv wrote", hint=keep)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        entries = sorted(entry.name for entry in path.iterdir())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a devenv snapshot (no readable {MANIFEST} of "
                        f"{SCHEMA})", hint=keep) from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise DataError(f"{path} is not a devenv snapshot (its {MANIFEST} is not devenv's)",
                        hint=keep)
    foreign = [entry for entry in entries if entry not in OWN_FILES
               or not (path / entry).is_file() or (path / entry).is_symlink()]
    if foreign:
        raise DataError(f"{path} holds files devenv did not write: {', '.join(foreign[:5])}"
                        + (" ..." if len(foreign) > 5 else ""),
                        hint="move them out first; devenv deletes only what it wrote")


def _delete_owned(path: Path) -> None:
    """Delete a snapshot directory that check_owned accepted (the files devenv writes, then
    the directory); anything else found there stops it."""
    check_owned(path.parent, path.name)
    for entry in OWN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (path / entry).unlink()
    path.rmdir()


def prune_auto(root: Path, project: str, keep: int = KEEP_AUTO,
               protect: Iterable[str] = ()) -> list[str]:
    """Remove project `project`'s automatic snapshots beyond its newest `keep`, except those
    in `protect` (the way back the command just named); names removed. Other projects'
    snapshots in a shared directory are theirs: never counted, never removed."""
    kept = set(protect)
    autos = [s for s in list_snapshots(root) if s.auto and s.project == project]
    gone = []
    for snapshot in autos[: max(0, len(autos) - keep)]:
        if snapshot.name in kept:
            continue
        with contextlib.suppress(OSError, DataError):
            _delete_owned(snapshot.path)
            gone.append(snapshot.name)
    return gone


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover
