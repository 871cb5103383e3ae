"""The snapshot store without Docker: names, manifests, damage, listing, pruning."""

from __future__ import annotations

import json
import stat

import pytest

from devenv.data import snapshots
from devenv.errors import DataError, SnapshotNameError


def make(root, name, parts=("postgres", "redis"), auto=False, replace=False, project="p"):
    work = snapshots.new_workdir(root, name)
    for part in parts:
        (work / snapshots.PARTS[part]).write_bytes(b"x" * 1000)
    (work / "PG_VERSION").write_text("15\n")
    return snapshots.commit(work, root, name, pg_major="15", database="db", project=project,
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
    gone = snapshots.prune_auto(tmp_path, "p")
    assert len(gone) == 2
    left = [s.name for s in snapshots.list_snapshots(tmp_path)]
    assert "mine" in left and len(left) == snapshots.KEEP_AUTO + 1


def test_pruning_counts_and_removes_only_the_projects_own_automatic_snapshots(tmp_path):
    """Projects sharing one DEVENV_SNAPSHOT_DIR: one project's pruning never takes another
    project's only way back, and never the one the command just named."""
    make(tmp_path, "auto-other", auto=True, project="other")  # the oldest of all
    for i in range(snapshots.KEEP_AUTO + 2):
        make(tmp_path, f"auto-p-{i}", auto=True)
    gone = snapshots.prune_auto(tmp_path, "p", protect=["auto-p-0"])
    assert gone == ["auto-p-1"]
    left = {s.name for s in snapshots.list_snapshots(tmp_path)}
    assert "auto-other" in left and "auto-p-0" in left
    assert len([name for name in left if name.startswith("auto-p-")]) == \
        snapshots.KEEP_AUTO + 1
    assert snapshots.prune_auto(tmp_path, "other") == []


def test_only_snapshots_devenv_wrote_are_ever_deleted(tmp_path):
    """The snapshot directory may be a folder the user shares: `db rm`, `--force` and the
    pruning delete a directory only when devenv wrote it and everything in it."""
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(DataError, match="is not a devenv snapshot") as error:
        snapshots.remove(tmp_path, "photos")
    assert "not devenv's to delete" in (error.value.hint or "")
    assert (foreign / "holiday.jpg").read_bytes() == b"\xff\xd8"

    work = snapshots.new_workdir(tmp_path, "photos")  # --force onto that name
    (work / "postgres.tar").write_bytes(b"x")
    with pytest.raises(DataError, match="is not a devenv snapshot"):
        snapshots.commit(work, tmp_path, "photos", pg_major="15", database="d", project="p",
                         auto=False, replace=True)
    assert (foreign / "holiday.jpg").exists() and not work.exists()

    mine = make(tmp_path, "base")
    (mine.path / "notes.txt").write_text("mine")  # the user's file inside a snapshot
    with pytest.raises(DataError, match="files devenv did not write: notes.txt"):
        snapshots.remove(tmp_path, "base")
    assert (mine.path / "notes.txt").exists() and (mine.path / "postgres.tar").exists()

    elsewhere = make(tmp_path / "elsewhere", "real")
    (tmp_path / "link").symlink_to(elsewhere.path)
    with pytest.raises(DataError, match="is a link"):
        snapshots.remove(tmp_path, "link")
    assert (elsewhere.path / "manifest.json").exists()

    (mine.path / "notes.txt").unlink()
    assert snapshots.remove(tmp_path, "base").name == "base"
    assert not mine.path.exists()


def test_sizes_read_like_people_write_them():
    assert snapshots.human_size(512) == "512 B"
    assert snapshots.human_size(48_404_480) == "48.4 MB"
    assert snapshots.human_size(635_000_000_000) == "635.0 GB"
