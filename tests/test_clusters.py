"""Prepared clusters: the key, the cache directory, and the three steps `up` takes (plan,
unpack, start preparing) over a recording engine. The real engine's side (a real cluster
made, unpacked and logged into) is tests/e2e/test_prepared_clusters.py."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devenv.config.settings import load_settings
from devenv.data import clusters
from devenv.data.clusters import ClusterPlan
from devenv.engine import CommandResult
from devenv.errors import ComposeError

IMAGE_ID = "sha256:" + "ab" * 32
ENV = {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "password",
       "POSTGRES_DB": "cirkelline_agents"}
SEEDS = [("01-schema.sql", 0, "00" * 32)]
KEY = "c1" * 16  #: shaped like a cluster_key


# --- the key -----------------------------------------------------------------------------
def test_the_key_is_stable_and_hex():
    key = clusters.cluster_key(IMAGE_ID, ENV, SEEDS)
    assert key == clusters.cluster_key(IMAGE_ID, dict(reversed(ENV.items())), SEEDS)
    assert len(key) == 32 and int(key, 16) >= 0


@pytest.mark.parametrize("change", [
    {"image": "sha256:" + "cd" * 32},
    {"env": {**ENV, "POSTGRES_PASSWORD": "other"}},
    {"env": {**ENV, "POSTGRES_USER": "app"}},
    {"env": {**ENV, "POSTGRES_DB": "other_db"}},
    {"seeds": []},
    {"seeds": [("02-schema.sql", 0, "00" * 32)]},
    {"seeds": [("01-schema.sql", 0o111, "00" * 32)]},
    {"seeds": [("01-schema.sql", 0, "11" * 32)]},
])
def test_anything_that_changes_the_cluster_changes_the_key(change):
    inputs: dict[str, Any] = {"image": IMAGE_ID, "env": ENV, "seeds": SEEDS, **change}
    assert clusters.cluster_key(inputs["image"], inputs["env"], inputs["seeds"]) != \
        clusters.cluster_key(IMAGE_ID, ENV, SEEDS)


def test_a_new_format_changes_the_key(monkeypatch):
    before = clusters.cluster_key(IMAGE_ID, ENV, SEEDS)
    monkeypatch.setattr(clusters, "FORMAT", "2")
    assert clusters.cluster_key(IMAGE_ID, ENV, SEEDS) != before


def test_the_password_is_not_in_the_key():
    env = {**ENV, "POSTGRES_PASSWORD": "s3cret-passw0rd"}
    assert "s3cret" not in clusters.cluster_key(IMAGE_ID, env, SEEDS)


def test_seed_files_list_names_exec_bits_and_contents(tmp_path):
    seed = tmp_path / "seed"
    (seed / "sub").mkdir(parents=True)
    (seed / "02-data.sql").write_text("insert into t values (1);")
    (seed / "01-run.sh").write_text("#!/bin/sh\n")
    (seed / "01-run.sh").chmod(0o755)
    (seed / "sub" / "x.csv").write_text("1\n")
    files = clusters.seed_files(seed)
    assert [(name, bits) for name, bits, _digest in files] == \
        [("01-run.sh", 0o111), ("02-data.sql", 0), ("sub/x.csv", 0)]
    (seed / "02-data.sql").write_text("insert into t values (2);")
    assert clusters.seed_files(seed) != files
    assert clusters.seed_files(tmp_path / "missing") == []


# --- the cache directory -------------------------------------------------------------------
def _settings(tmp_path: Path, **environ: str):
    return load_settings(tmp_path, {"DEVENV_PROJECT": "unit", **environ}, {})


def test_the_cache_is_per_user_by_default(tmp_path):
    settings = _settings(tmp_path)
    assert clusters.cache_root(settings, {"HOME": "/home/u"}) == \
        Path("/home/u/.cache/devenv/clusters")
    assert clusters.cache_root(settings, {"HOME": "/home/u", "XDG_CACHE_HOME": "/c"}) == \
        Path("/c/devenv/clusters")
    assert clusters.cache_root(settings, {}) is None  # no home: nowhere to keep one


def test_the_cache_setting_moves_it_or_turns_it_off(tmp_path):
    assert clusters.cache_root(_settings(tmp_path, DEVENV_CLUSTER_CACHE="/x/y"), {}) == \
        Path("/x/y")
    assert clusters.cache_root(_settings(tmp_path, DEVENV_CLUSTER_CACHE="rel"), {}) == \
        tmp_path / "rel"
    for off in ("off", "OFF"):
        assert clusters.cache_root(_settings(tmp_path, DEVENV_CLUSTER_CACHE=off),
                                   {"HOME": "/home/u"}) is None


def test_ensure_root_creates_a_private_directory(tmp_path):
    root = tmp_path / "a" / "clusters"
    assert clusters.ensure_root(root)
    assert root.stat().st_mode & 0o777 == 0o700


def test_ensure_root_says_no_for_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("")
    assert not clusters.ensure_root(tmp_path / "file" / "clusters")


def test_find_wants_a_non_empty_file(tmp_path):
    assert clusters.find(tmp_path, KEY) is None
    (tmp_path / f"{KEY}.tar").write_bytes(b"")
    assert clusters.find(tmp_path, KEY) is None
    (tmp_path / f"{KEY}.tar").write_bytes(b"x")
    assert clusters.find(tmp_path, KEY) == tmp_path / f"{KEY}.tar"


def test_set_aside_renames_the_file_out_of_the_way(tmp_path):
    path = tmp_path / f"{KEY}.tar"
    path.write_bytes(b"x")
    aside = clusters.set_aside(path, now=0)
    assert aside == tmp_path / f".damaged-19700101-000000-{KEY}.tar"
    assert clusters.OWN_NAMES.fullmatch(aside.name)
    assert aside.read_bytes() == b"x" and not path.exists()
    assert clusters.find(tmp_path, KEY) is None


def _key(i: int) -> str:
    return f"{i:032x}"


def test_prune_keeps_the_most_recently_used(tmp_path):
    now = time.time()
    store = clusters.ensure_store(tmp_path / "c")
    assert store == tmp_path / "c"
    for i in range(5):
        path = store / f"{_key(i)}.tar"
        path.write_bytes(b"x")
        os.utime(path, (now - 100 + i, now - 100 + i))
    clusters.touch(store / f"{_key(0)}.tar")  # used just now
    old_aside = store / f".damaged-20260101-000000-{_key(9)}.tar"
    old_aside.write_bytes(b"x")
    os.utime(old_aside, (now - 90000, now - 90000))
    new_aside = store / f".damaged-20260102-000000-{_key(8)}.tar"  # today: kept a while
    new_aside.write_bytes(b"x")
    old_tmp, new_tmp = store / f".tmp-{_key(7)}-abc", store / f".tmp-{_key(6)}-abc"
    old_tmp.write_bytes(b"x")
    new_tmp.write_bytes(b"x")
    os.utime(old_tmp, (now - 7200, now - 7200))
    (store / "notes.txt").write_text("not ours")
    removed = clusters.prune(store, keep=3, now=now)
    assert sorted(removed) == sorted([old_aside.name, old_tmp.name, f"{_key(1)}.tar",
                                      f"{_key(2)}.tar"])
    assert sorted(p.name for p in store.iterdir()) == sorted([
        clusters.MARKER, new_aside.name, new_tmp.name, f"{_key(0)}.tar", f"{_key(3)}.tar",
        f"{_key(4)}.tar", "notes.txt"])


def test_a_cache_folder_that_holds_other_things_keeps_them(tmp_path):
    """DEVENV_CLUSTER_CACHE pointed at a folder with the user's own files (tars too, old
    ones, temporary-looking ones): devenv works in a subfolder it marks as its own, and no
    preparation or pruning ever removes anything of the user's."""
    folder = tmp_path / "backups"
    folder.mkdir()
    now = time.time()
    theirs = ["2019.tar", "2020.tar", "2021.tar", "2022.tar", "2023.tar", f"{_key(5)}.tar",
              ".tmp-scratch", f"{_key(5)}.sha256"]
    for name in theirs:
        (folder / name).write_bytes(b"theirs")
        os.utime(folder / name, (now - 200000, now - 200000))
    assert clusters.owned_store(folder) is None
    assert clusters.prune(folder, keep=0, now=now) == []  # not marked: never devenv's
    store = clusters.ensure_store(folder)
    assert store == folder / clusters.SUBFOLDER and clusters.owned_store(folder) == store
    assert store.stat().st_mode & 0o777 == 0o700
    for i in range(clusters.KEEP + 2):
        (store / f"{_key(i)}.tar").write_bytes(b"x")
    assert len(clusters.prune(store, now=now)) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted([*theirs, clusters.SUBFOLDER])
    # a `devenv-clusters` subfolder devenv did not make is not used either
    other = tmp_path / "other"
    (other / clusters.SUBFOLDER).mkdir(parents=True)
    (other / "mine.txt").write_text("x")
    (other / clusters.SUBFOLDER / "mine.tar").write_text("x")
    assert clusters.ensure_store(other) is None


def test_up_with_the_cache_in_a_users_folder_prunes_nothing_of_theirs(project):
    settings, root = project
    root.mkdir()
    for i in range(clusters.KEEP + 3):
        (root / f"{_key(i)}.tar").write_bytes(b"theirs")  # even named like clusters
        os.utime(root / f"{_key(i)}.tar", (1000 + i, 1000 + i))
    engine = Recorder()
    assert clusters.start_preparing(engine, settings, _plan(root))
    assert len([p for p in root.iterdir() if p.name.endswith(".tar")]) == clusters.KEEP + 3
    [(_what, (_image, mounts, _args, _options))] = engine.calls
    assert mounts[0] == (str(root / clusters.SUBFOLDER), "/cache", False)


def test_devenvs_own_default_folder_stays_where_it_was(tmp_path):
    root = tmp_path / "devenv" / "clusters"
    root.mkdir(parents=True)
    (root / f"{_key(1)}.tar").write_bytes(b"x")  # from a devenv before the marker
    assert clusters.ensure_store(root, own_root=True) == root
    settings = load_settings(tmp_path / "p", {"DEVENV_PROJECT": "unit",
                                              "DEVENV_POSTGRES_IMAGE": "devenv-test/pg"}, {})
    assert clusters.plan(Recorder(), settings, {"HOME": str(tmp_path)}, ["postgres"]).own_root


# --- the steps `up` takes, over a recording engine -----------------------------------------
@dataclass
class Recorder:
    images: dict[str, str] = field(default_factory=lambda: {"devenv-test/pg": IMAGE_ID})
    volumes: set[str] = field(default_factory=set)
    remote_host: str | None = None
    helper_code: int = 0
    detached_code: int = 0
    api_fill: bool = True
    fill_error: str = ""
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def volume_exists(self, name: str) -> bool:
        return name in self.volumes

    def image_id(self, reference: str) -> str | None:
        return self.images.get(reference)

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self.volumes.add(name)
        self.calls.append(("create_volume", (name, labels)))

    def fill_new_volume(self, name: str, labels: dict[str, str], image: str, target: str,
                        archive: Any, size: int) -> bool:
        self.calls.append(("fill_new_volume", (name, labels, image, target, archive.read())))
        if self.fill_error:
            raise ComposeError(self.fill_error)
        return self.api_fill

    def remove_volume(self, name: str) -> None:
        self.volumes.discard(name)
        self.calls.append(("remove_volume", name))

    def run_helper(self, image: str, script: str, mounts: Any, args: Any = ()) -> CommandResult:
        self.calls.append(("run_helper", (image, list(mounts))))
        return CommandResult(self.helper_code, "", "tar: Unexpected EOF in archive\n"
                             if self.helper_code else "")

    def run_detached(self, image: str, script: str, mounts: Any, args: Any = (),
                     **options: Any) -> CommandResult:
        self.calls.append(("run_detached", (image, list(mounts), list(args), options)))
        return CommandResult(self.detached_code, "", "")


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "cache"
    settings = load_settings(tmp_path / "p", {
        "DEVENV_PROJECT": "unit", "DEVENV_POSTGRES_IMAGE": "devenv-test/pg",
        "DEVENV_POSTGRES_PASSWORD": "s3cret", "DEVENV_CLUSTER_CACHE": str(root)}, {})
    (tmp_path / "p" / "db" / "seed").mkdir(parents=True)
    (tmp_path / "p" / "db" / "seed" / "01.sql").write_text("create table t (x int);")
    return settings, root


def test_plan_keys_a_fresh_volume(project):
    settings, root = project
    plan = clusters.plan(Recorder(), settings, {}, ["postgres", "redis"])
    assert plan.root == root and plan.prepare and not plan.used
    assert plan.key == clusters.cluster_key(IMAGE_ID, {
        "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_DB": "cirkelline_agents"}, clusters.seed_files(settings.seed_dir))


@pytest.mark.parametrize("why", ["no postgres", "volume", "remote", "no image", "template",
                                 "off"])
def test_plan_does_nothing_when_it_does_not_apply(project, why, tmp_path):
    settings, _root = project
    engine = Recorder()
    services = ["redis"] if why == "no postgres" else ["postgres"]
    if why == "volume":
        engine.volumes.add("unit_postgres-data")
    if why == "remote":
        engine.remote_host = "devbox"
    if why == "no image":
        engine.images = {}
    if why == "template":
        path = settings.project_dir / clusters.TEMPLATE
        path.parent.mkdir(parents=True)
        path.write_text("")
    if why == "off":
        settings = load_settings(settings.project_dir, {
            "DEVENV_PROJECT": "unit", "DEVENV_CLUSTER_CACHE": "off"}, {})
    assert clusters.plan(engine, settings, {"HOME": str(tmp_path)}, services) == ClusterPlan()


def _plan(root: Path) -> ClusterPlan:
    return ClusterPlan(root=root, key=KEY, image="devenv-test/pg", prepare=True)


def test_unpack_without_a_cluster_leaves_the_volume_to_initdb(project):
    settings, root = project
    engine, notes = Recorder(), []
    assert clusters.unpack(engine, settings, _plan(root), notes.append) == _plan(root)
    assert engine.calls == [] and notes == []


def _store(root: Path, data: bytes = b"a tar", digest: str | None = None) -> Path:
    root.mkdir(exist_ok=True)
    if not (root / clusters.MARKER).exists():
        assert clusters.ensure_store(root) == root
    path = root / f"{KEY}.tar"
    path.write_bytes(data)
    (root / f"{KEY}.sha256").write_text(
        (digest or hashlib.sha256(data).hexdigest()) + "\n")
    return path


def test_verify_wants_the_digest_written_beside_it(tmp_path):
    path = _store(tmp_path)
    assert clusters.verify(path)
    path.write_bytes(b"a ta")  # truncated
    assert not clusters.verify(path)
    path.write_bytes(b"a tar")
    (tmp_path / f"{KEY}.sha256").unlink()
    assert not clusters.verify(path)


def test_unpack_creates_the_volume_with_composes_labels_and_fills_it(project):
    settings, root = project
    _store(root)
    engine, notes = Recorder(), []
    result = clusters.unpack(engine, settings, _plan(root), notes.append)
    assert result.used and not result.prepare
    assert engine.calls == [("fill_new_volume", ("unit_postgres-data", {
        "com.docker.compose.project": "unit", "com.docker.compose.volume": "postgres-data"},
        "devenv-test/pg", "/var/lib/postgresql/data", b"a tar"))]
    assert notes == ["postgres: fresh volume, starting from a prepared cluster (no initdb)"]


def test_without_the_local_socket_a_helper_container_fills_it(project):
    settings, root = project
    path = _store(root)
    engine, notes = Recorder(api_fill=False), []
    assert clusters.unpack(engine, settings, _plan(root), notes.append).used
    assert [name for name, _args in engine.calls] == \
        ["fill_new_volume", "create_volume", "run_helper"]
    assert engine.calls[2][1] == ("devenv-test/pg", [
        ("unit_postgres-data", "/vol", False), (str(path), "/in/cluster.tar", True)])


@pytest.mark.parametrize("damage", ["truncated", "no digest"])
def test_a_damaged_cluster_is_set_aside_and_initdb_runs(project, damage):
    settings, root = project
    path = _store(root)
    if damage == "truncated":
        path.write_bytes(b"a t")
    else:
        path.with_suffix(".sha256").unlink()
    engine, notes = Recorder(), []
    result = clusters.unpack(engine, settings, _plan(root), notes.append)
    assert not result.used and result.prepare  # initdb, and a new cluster afterwards
    assert engine.calls == []  # no volume: compose creates it and initdb runs
    assert clusters.find(root, KEY) is None
    assert [p.name.startswith(".damaged-") for p in root.iterdir()
            if p.name != clusters.MARKER] == [True]
    assert "damaged (its checksum does not match); set aside, running initdb" in notes[0]


def test_a_failed_fill_removes_the_volume_it_made_and_keeps_the_cluster(project):
    settings, root = project
    _store(root)
    engine, notes = Recorder(fill_error="Docker engine answered 500"), []
    assert not clusters.unpack(engine, settings, _plan(root), notes.append).used
    assert engine.calls[-1] == ("remove_volume", "unit_postgres-data")
    assert clusters.find(root, KEY) is not None
    assert notes == ["postgres: could not use the prepared cluster (Docker engine answered "
                     "500); running initdb instead"]


def test_preparing_runs_detached_low_priority_with_the_password_only_in_env(project):
    settings, root = project
    engine = Recorder()
    assert clusters.start_preparing(engine, settings, _plan(root))
    [(what, (image, mounts, args, options))] = engine.calls
    assert what == "run_detached" and image == "devenv-test/pg"
    assert mounts == [(str(root), "/cache", False),
                      (str(settings.seed_dir), "/docker-entrypoint-initdb.d", True)]
    assert args == [KEY, str(os.getuid()), str(os.getgid())]
    assert options["name"] == f"devenv-cluster-{KEY[:16]}"
    assert options["env"]["POSTGRES_PASSWORD"] == "s3cret"
    assert "s3cret" not in " ".join(args) + options["name"]
    assert options["labels"] == {"devenv.cluster": KEY}
    assert options["cpu_shares"] == clusters.CPU_SHARES
    assert root.stat().st_mode & 0o777 == 0o700


def test_nothing_is_prepared_when_a_cluster_exists_was_used_or_is_off(project):
    settings, root = project
    engine = Recorder()
    assert not clusters.start_preparing(engine, settings, ClusterPlan())
    used = ClusterPlan(root=root, key=KEY, image="devenv-test/pg", used=True)
    assert not clusters.start_preparing(engine, settings, used)
    _store(root)
    assert not clusters.start_preparing(engine, settings, _plan(root))
    assert engine.calls == []


def test_a_second_preparation_of_the_same_key_is_refused_quietly(project):
    settings, root = project
    engine = Recorder(detached_code=125)  # the name is taken: one is running
    assert not clusters.start_preparing(engine, settings, _plan(root))


def test_prune_removes_a_digest_with_its_cluster_and_orphans_later(tmp_path):
    now = time.time()
    c = tmp_path / "c"
    for i in range(2):
        _store(c)
        os.rename(c / f"{KEY}.tar", c / f"{_key(i)}.tar")
        os.rename(c / f"{KEY}.sha256", c / f"{_key(i)}.sha256")
        os.utime(c / f"{_key(i)}.tar", (now - 10 + i, now - 10 + i))
    (c / f"{_key(7)}.sha256").write_text("x")  # its tar is being renamed in
    orphan = c / f"{_key(8)}.sha256"
    orphan.write_text("x")
    os.utime(orphan, (now - 7200, now - 7200))
    assert sorted(clusters.prune(c, keep=1, now=now)) == \
        sorted([f"{_key(0)}.sha256", f"{_key(0)}.tar", f"{_key(8)}.sha256"])
    assert sorted(p.name for p in c.iterdir()) == \
        sorted([clusters.MARKER, f"{_key(7)}.sha256", f"{_key(1)}.sha256", f"{_key(1)}.tar"])


def test_a_failed_fill_empties_a_volume_compose_already_uses(project):
    settings, root = project
    _store(root)
    engine, notes = Recorder(fill_error="Docker engine answered 500"), []
    engine.remove_volume = lambda name: (_ for _ in ()).throw(  # type: ignore[method-assign]
        ComposeError("volume is in use"))
    engine.volumes.add("unit_postgres-data")
    assert not clusters.unpack(engine, settings, _plan(root), notes.append).used
    assert engine.calls[-1] == ("run_helper", ("devenv-test/pg",
                                               [("unit_postgres-data", "/vol", False)]))
