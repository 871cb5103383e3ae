"""The snapshot store without Docker: names, manifests, damage, listing, pruning."""

from __future__ import annotations

import json
import stat

import pytest

from devenv.data import snapshots
from devenv.errors import DataError, SnapshotNameError


def make(root, name, parts=("postgres", "redis"), auto=False, replace=False):
    work = snapshots.new_workdir(root, name)
    for part in parts:
        (work / snapshots.PARTS[part]).write_bytes(b"x" * 1000)
    (work / "PG_VERSION").write_text("15\n")
    return snapshots.commit(work, root, name, pg_major="15", database="db", project="p",
                            auto=auto, replace=replace)


@pytest.mark.parametrize("name", ["a/b", "../base", "..", ".hidden", "", "x" * 65, "a b",
                                  "a..b"])
def test_names_with_a_slash_or_dots_are_refused(name):
    with pytest.raises(SnapshotNameError) as error:
        snapshots.check_name(name)
    assert error.value.exit_code == 2 and "no '/'" in (error.value.hint or "")


def test_commit_writes_a_private_complete_snapshot(tmp_path):
    root = tmp_path / "snaps"
    taken = make(root, "base")
    assert taken.holds == ("postgres", "redis") and taken.size == 2000
    assert taken.pg_major == "15" and not (taken.path / "PG_VERSION").exists()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(taken.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((taken.path / "manifest.json").stat().st_mode) == 0o600
    assert [s.name for s in snapshots.list_snapshots(root)] == ["base"]
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


def test_an_existing_name_needs_replace(tmp_path):
    make(tmp_path, "base")
    with pytest.raises(SnapshotNameError, match="already exists"):
        make(tmp_path, "base")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert make(tmp_path, "base", parts=("postgres",), replace=True).holds == ("postgres",)


def test_foreign_and_damaged_snapshots_are_refused(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.bin").write_bytes(b"\0")
    with pytest.raises(DataError, match="is not a devenv snapshot"):
        snapshots.load(tmp_path, "foreign")
    make(tmp_path, "cut")
    with open(tmp_path / "cut" / "postgres.tar", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(DataError, match="damaged: postgres.tar has 10 bytes") as error:
        snapshots.load(tmp_path, "cut")
    assert "devenv db rm cut" in (error.value.hint or "")
    make(tmp_path, "odd")
    manifest = json.loads((tmp_path / "odd" / "manifest.json").read_text())
    (tmp_path / "odd" / "manifest.json").write_text(json.dumps({**manifest, "schema": "x/9"}))
    with pytest.raises(DataError, match="not a devenv snapshot"):
        snapshots.load(tmp_path, "odd")
    assert snapshots.list_snapshots(tmp_path) == []  # unreadable ones are left out
    assert snapshots.remove(tmp_path, "cut").name == "cut"  # but can be removed
    with pytest.raises(SnapshotNameError, match="no snapshot named nope"):
        snapshots.load(tmp_path, "nope")


def test_only_the_newest_automatic_snapshots_are_kept(tmp_path):
    make(tmp_path, "mine")
    for i in range(snapshots.KEEP_AUTO + 2):
        make(tmp_path, f"auto-{i}", auto=True)
    gone = snapshots.prune_auto(tmp_path)
    assert len(gone) == 2
    left = [s.name for s in snapshots.list_snapshots(tmp_path)]
    assert "mine" in left and len(left) == snapshots.KEEP_AUTO + 1


def test_sizes_read_like_people_write_them():
    assert snapshots.human_size(512) == "512 B"
    assert snapshots.human_size(48_404_480) == "48.4 MB"
    assert snapshots.human_size(635_000_000_000) == "635.0 GB"
