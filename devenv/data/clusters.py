"""Prepared clusters: a fresh PostgreSQL volume starts from a copy of a freshly initialised
data directory instead of running initdb and the seed folder again.

A prepared cluster is a tar of a cleanly shut-down data directory that the image's own
entrypoint initialised (initdb, POSTGRES_DB, the seed folder) with the same image, the same
credentials and the same seed files. Its name is a key over exactly those (the password only
inside the hash) and a format version, so anything that would make it differ from a fresh
initdb is a different key, and a stale cluster is never served.

They live in a per-user cache shared by projects (DEVENV_CLUSTER_CACHE; default
$XDG_CACHE_HOME/devenv/clusters, directory 0700, files 0600). The setting may name a folder
that holds other things: devenv keeps its files in a directory it marks as its own (the
folder itself when devenv created it or found it empty, else a `devenv-clusters` subfolder),
and removes only files of its own names there. After an `up` that ran initdb
on a fresh volume and found no cluster for its key, a detached, low-priority container of
the PostgreSQL image prepares one in its own scratch directory and writes it into the cache
(temporary name, then rename); `up` does not wait for it. It never mounts a project's
volumes. A damaged file is set aside and the volume initialised as before: a prepared
cluster can make `up` faster, never make it fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .volumes import volume_labels, volume_name

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ..config.settings import Settings
    from ..engine import Engine

#: devenv's own format: bump it when what goes into a cluster (or the key) changes
FORMAT = "1"
SETTING = "DEVENV_CLUSTER_CACHE"
OFF = "off"
SUFFIX = ".tar"
DIGEST = ".sha256"  # beside each cluster: the sha256 of its tar, written before it
TMP_PREFIX = ".tmp-"
ASIDE_PREFIX = ".damaged-"
#: the file that marks a directory as devenv's store of prepared clusters
MARKER = ".devenv-clusters"
MARKER_TEXT = "devenv.clusters/1\n"
#: the store inside a cache folder that already held other things
SUBFOLDER = "devenv-clusters"
_KEY = r"[0-9a-f]{32}"
#: the only names devenv writes in its store (clusters, digests, temporary files of a
#: preparation, clusters set aside): nothing else there is ever removed
OWN_NAMES = re.compile(rf"(?:{_KEY}(?:\.tar|\.sha256)"
                       rf"|\.tmp-{_KEY}-[A-Za-z0-9._-]+"
                       rf"|\.damaged-\d{{8}}-\d{{6}}-{_KEY}\.tar)")
#: prepared clusters kept (the most recently used); older ones are removed
KEEP = 3
#: a temporary file older than this belongs to a preparation that died
STALE_TMP_SECONDS = 3600.0
#: a damaged cluster set aside is kept this long (to be looked at), then removed
ASIDE_SECONDS = 86400.0
LABEL = "devenv.cluster"
CPU_SHARES = 2  # Docker's default is 1024: the preparation yields to everything else
EXIT_DAMAGED = 67
#: the settings a cluster is made with (the environment the rendered service passes)
ENV_SETTINGS = {"POSTGRES_USER": "DEVENV_POSTGRES_USER",
                "POSTGRES_PASSWORD": "DEVENV_POSTGRES_PASSWORD",
                "POSTGRES_DB": "DEVENV_POSTGRES_DB"}
SERVICE = "postgres"
#: where the project's own template for the service would be (it could pass more)
TEMPLATE = Path("templates") / "services" / "postgres.yml.j2"

# Unpacks /in/cluster.tar into the fresh volume at /vol (as root, in the PostgreSQL image):
# staged in a directory of the volume and moved into place only once complete; on any
# failure the volume is left empty, so the entrypoint runs initdb as if nothing happened.
UNPACK_SCRIPT = r"""
set -eu
vol=/vol stage=/vol/.devenv-cluster
rm -rf "$stage"
mkdir "$stage"
if ! tar -xf /in/cluster.tar -C "$stage" || [ ! -s "$stage/PG_VERSION" ] \
    || [ ! -s "$stage/global/pg_control" ]; then
  rm -rf "$stage"
  echo "devenv: the prepared cluster is damaged" >&2
  exit 67
fi
chown --reference="$stage" "$vol"
chmod --reference="$stage" "$vol"
find "$stage" -mindepth 1 -maxdepth 1 -exec mv -t "$vol" {} +
rmdir "$stage"
"""

# Prepares a cluster (as root, in the PostgreSQL image, detached): the image's own
# entrypoint initialises a scratch data directory inside this container with the
# environment and seed folder the service gets; once the real server listens on TCP (the
# entrypoint's temporary server does not), a fast shutdown, then a tar into the cache
# under a temporary name, renamed when complete. $1 key, $2 uid, $3 gid of the cache.
PREPARE_SCRIPT = r"""
set -eu
key=$1 uid=$2 gid=$3
tmp="/cache/.tmp-$key-$(hostname)"
trap 'rm -f "$tmp" "$tmp.sha256"' EXIT
mkdir -m 755 /tmp/devenv-cluster
export PGDATA=/tmp/devenv-cluster/data
docker-entrypoint.sh postgres -c listen_addresses=127.0.0.1 -p 5432 \
  >/tmp/devenv-cluster/log 2>&1 &
pid=$!
until pg_isready -q -h 127.0.0.1 -p 5432; do
  kill -0 "$pid" 2>/dev/null || { tail -n 20 /tmp/devenv-cluster/log >&2; exit 1; }
  sleep 0.2
done
kill -INT "$pid"
wait "$pid" || true
pg_controldata "$PGDATA" | grep -q '^Database cluster state: *shut down$'
umask 077
tar -cf "$tmp" --exclude=./postmaster.pid --exclude=./postmaster.opts -C "$PGDATA" .
sha256sum "$tmp" | cut -c1-64 >"$tmp.sha256"
chown "$uid:$gid" "$tmp" "$tmp.sha256"
chmod 600 "$tmp" "$tmp.sha256"
mv "$tmp.sha256" "/cache/$key.sha256"
mv "$tmp" "/cache/$key.tar"
"""


@dataclass(frozen=True)
class ClusterPlan:
    """What `up` does about a fresh PostgreSQL volume."""

    #: the cache directory (None: the feature is off or does not apply)
    root: Path | None = None
    key: str = ""
    image: str = ""
    #: the volume was created and filled from the prepared cluster
    used: bool = False
    #: the volume is fresh and will run initdb: prepare a cluster after `up`
    prepare: bool = False
    #: the root is devenv's own default folder (not one the user named): devenv's to mark
    #: even when it already holds files (those of an earlier devenv)
    own_root: bool = False


# --- the key ---------------------------------------------------------------------------
def seed_files(seed_dir: Path) -> list[tuple[str, int, str]]:
    """(relative path, executable bits, sha256) of every file in the seed folder, by name."""
    found = []
    if seed_dir.is_dir():
        for path in sorted(p for p in seed_dir.rglob("*") if p.is_file()):
            found.append((path.relative_to(seed_dir).as_posix(),
                          path.stat().st_mode & 0o111,
                          hashlib.sha256(path.read_bytes()).hexdigest()))
    return found


def cluster_key(image_id: str, env: Mapping[str, str],
                seeds: Sequence[tuple[str, int, str]]) -> str:
    """A name for the cluster these inputs make; any change in them is another name. The
    password is only an input of the hash."""
    text = json.dumps({"format": FORMAT, "image": image_id, "env": dict(sorted(env.items())),
                       "seeds": [list(s) for s in seeds]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cluster_env(settings: Settings) -> dict[str, str]:
    return {name: settings[key] for name, key in ENV_SETTINGS.items()}


# --- the cache directory -----------------------------------------------------------------
def cache_root(settings: Settings, environ: Mapping[str, str]) -> Path | None:
    """The cache directory, None when turned off (or no home to put it in)."""
    value = settings.values.get(SETTING, "").strip()
    if value.lower() == OFF:
        return None
    if value:
        path = Path(value).expanduser()
        return path if path.is_absolute() else settings.project_dir / path
    base = environ.get("XDG_CACHE_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "devenv" / "clusters"
    home = environ.get("HOME", "")
    return Path(home) / ".cache" / "devenv" / "clusters" if home else None


def ensure_root(root: Path) -> bool:
    """Create the cache directory 0700; False when it cannot be used."""
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.access(root, os.W_OK | os.X_OK)
    except OSError:
        return False


def _marked(path: Path) -> bool:
    marker = path / MARKER
    try:
        return not path.is_symlink() and marker.is_file() and not marker.is_symlink() \
            and marker.read_text(encoding="ascii") == MARKER_TEXT
    except (OSError, UnicodeDecodeError):
        return False


def owned_store(root: Path) -> Path | None:
    """Where devenv keeps its clusters under the cache folder `root` (None: nowhere yet):
    the folder itself when marked as devenv's, else its marked `devenv-clusters`."""
    for path in (root, root / SUBFOLDER):
        if _marked(path):
            return path
    return None


def ensure_store(root: Path, own_root: bool = False) -> Path | None:
    """owned_store, creating it when needed: `root` becomes devenv's when devenv creates it,
    finds it empty or `own_root` (its default folder); a folder holding anything else gets
    a `devenv-clusters` subfolder. None when there is nowhere devenv may write (a subfolder
    of that name that is not devenv's, no permission)."""
    found = owned_store(root)
    if found is not None:
        return found
    if not ensure_root(root):
        return None
    for path in (root, root / SUBFOLDER):
        try:
            if path != root:
                path.mkdir(mode=0o700, exist_ok=True)
            if path.is_symlink() or (any(path.iterdir()) and not (own_root and path == root)):
                continue  # someone else's files: never devenv's to prune
            fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(MARKER_TEXT)
        except FileExistsError:
            pass  # another devenv marked it just now
        except OSError:
            return None
        if _marked(path):
            return path
    return None


def find(root: Path, key: str) -> Path | None:
    path = root / f"{key}{SUFFIX}"
    try:
        return path if path.is_file() and path.stat().st_size > 0 else None
    except OSError:
        return None


def verify(path: Path) -> bool:
    """The tar is whole: its sha256 is the one written beside it when it was made."""
    try:
        want = path.with_suffix(DIGEST).read_text(encoding="ascii").strip()
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except (OSError, UnicodeDecodeError):
        return False
    return len(want) == 64 and digest.hexdigest() == want


def set_aside(path: Path, now: float | None = None) -> Path | None:
    """Rename a damaged cluster out of the way (pruned later); None when that failed."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    target = path.with_name(f"{ASIDE_PREFIX}{stamp}-{path.name}")
    with contextlib.suppress(OSError):
        path.with_suffix(DIGEST).unlink()
    try:
        os.replace(path, target)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return target


def touch(path: Path) -> None:
    """Mark a cluster as used (pruning keeps the most recently used)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune(root: Path, keep: int = KEEP, now: float | None = None) -> list[str]:
    """In devenv's own store (marked; anything else: nothing happens) remove all but the
    `keep` most recently used clusters, damaged ones set aside a day ago, and temporary
    files of preparations that died; names removed. Only names devenv writes are touched."""
    now = time.time() if now is None else now
    if not _marked(root):
        return []
    clusters, gone = [], []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not OWN_NAMES.fullmatch(name):
            continue
        try:
            if entry.is_symlink() or not entry.is_file():
                continue
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        if (name.startswith(ASIDE_PREFIX) and age > ASIDE_SECONDS) \
                or (name.startswith(TMP_PREFIX) and age > STALE_TMP_SECONDS):
            gone.append(entry)
        elif name.endswith(SUFFIX) and not name.startswith("."):
            clusters.append((entry.stat().st_mtime, name, entry))
        elif name.endswith(DIGEST) and not name.startswith(".") \
                and not entry.with_suffix(SUFFIX).exists() and age > STALE_TMP_SECONDS:
            gone.append(entry)  # its tar was removed (or never came)
    clusters.sort(reverse=True)
    for _mtime, _name, entry in clusters[keep:]:
        gone += [entry, entry.with_suffix(DIGEST)]
    removed = []
    for entry in gone:
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append(entry.name)
    return removed


# --- the steps `up` takes ------------------------------------------------------------------
def plan(engine: Engine, settings: Settings, environ: Mapping[str, str],
         services: Sequence[str]) -> ClusterPlan:
    """Whether a fresh PostgreSQL volume can start from (or should leave) a cluster."""
    if SERVICE not in services or engine.remote_host:
        return ClusterPlan()

    if engine.volume_exists(volume_name(settings, SERVICE)):
        return ClusterPlan()
    root = cache_root(settings, environ)
    if root is None or (settings.project_dir / TEMPLATE).exists():
        return ClusterPlan()  # off, or the project's own template may pass more
    image = settings.image(SERVICE)
    image_id = engine.image_id(image)
    if not image_id:
        return ClusterPlan()  # compose pulls it; the next fresh volume can use a cluster
    try:
        seeds = seed_files(settings.seed_dir)
    except OSError:
        return ClusterPlan()
    key = cluster_key(image_id, cluster_env(settings), seeds)
    return ClusterPlan(root=root, key=key, image=image, prepare=True,
                       own_root=not settings.values.get(SETTING, "").strip())


def unpack(engine: Engine, settings: Settings, cluster: ClusterPlan,
           notify: Callable[[str], None]) -> ClusterPlan:
    """Create the fresh volume (with Compose's labels) and fill it from the prepared
    cluster, when there is one; a damaged one is set aside and initdb runs instead."""
    store = owned_store(cluster.root) if cluster.root is not None else None
    path = find(store, cluster.key) if store is not None else None
    if path is None:
        return cluster
    if not verify(path):
        set_aside(path)
        notify(f"postgres: the prepared cluster {path.name} is damaged (its checksum does not "
               "match); set aside, running initdb instead")
        return cluster
    from ..errors import DevenvError

    name = volume_name(settings, SERVICE)
    labels = volume_labels(settings, SERVICE)
    try:
        with open(path, "rb") as archive:
            filled = engine.fill_new_volume(name, labels, cluster.image, settings.catalog[
                SERVICE].data_dirs[0], archive, path.stat().st_size)
    except (OSError, DevenvError) as exc:
        # This call created the volume: remove it (compose then creates it empty), or, if
        # compose has created PostgreSQL's container on it meanwhile, empty it.
        with contextlib.suppress(DevenvError):
            engine.remove_volume(name)
        if engine.volume_exists(name):
            engine.run_helper(cluster.image, "find /vol -mindepth 1 -delete",
                              [(name, "/vol", False)])
        notify(f"postgres: could not use the prepared cluster ({exc}); running initdb "
               "instead")
        return cluster
    if not filled:  # an engine not reached over the local socket: a helper container
        engine.create_volume(name, labels)
        result = engine.run_helper(cluster.image, UNPACK_SCRIPT,
                                   [(name, "/vol", False), (str(path), "/in/cluster.tar", True)])
        if result.returncode:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            why = lines[-1].strip() if lines else f"exit {result.returncode}"
            notify(f"postgres: could not use the prepared cluster ({why}); running initdb "
                   "instead")
            return cluster
    touch(path)
    notify("postgres: fresh volume, starting from a prepared cluster (no initdb)")
    return ClusterPlan(cluster.root, cluster.key, cluster.image, used=True,
                       own_root=cluster.own_root)


def unpack_in_background(engine: Engine, settings: Settings, cluster: ClusterPlan,
                         notify: Callable[[str], None]) -> Future[ClusterPlan] | None:
    """unpack() in a thread when there is a cluster to unpack (None otherwise); the caller
    starts PostgreSQL after its result."""
    store = owned_store(cluster.root) if cluster.root is not None else None
    if store is None or find(store, cluster.key) is None:
        return None
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="devenv-cluster")
    try:
        return pool.submit(unpack, engine, settings, cluster, notify)
    finally:
        pool.shutdown(wait=False)


def start_preparing(engine: Engine, settings: Settings, cluster: ClusterPlan) -> bool:
    """After an `up` that ran initdb on a fresh volume: prepare a cluster for its key in
    the background, unless there is one or one is being prepared. True when started."""
    if cluster.root is None or cluster.used or not cluster.prepare:
        return False
    store = ensure_store(cluster.root, cluster.own_root)
    if store is None or find(store, cluster.key) is not None:
        return False
    prune(store)
    mounts: list[tuple[str, str, bool]] = [(str(store), "/cache", False)]
    if settings.seed_dir.is_dir():
        mounts.append((str(settings.seed_dir), "/docker-entrypoint-initdb.d", True))
    # The name is the lock: a second `up` with the same key finds it taken (and its
    # output would be the same cluster).
    result = engine.run_detached(
        cluster.image, PREPARE_SCRIPT, mounts,
        [cluster.key, str(os.getuid()), str(os.getgid())],
        name=f"devenv-cluster-{cluster.key[:16]}", env=cluster_env(settings),
        labels={LABEL: cluster.key}, cpu_shares=CPU_SHARES)
    return result.returncode == 0
