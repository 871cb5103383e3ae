"""devenv's own watch sync: what a batch of saves means (stack/syncplan.py), the tar it
sends, the container user's uid:gid, and the text of its events. The real engine's side is
tests/e2e/test_sync.py."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from devenv.stack import syncplan
from devenv.stack.syncplan import DockerIgnore, SyncRule, archive, owner_of, plan_batch
from devenv.stack.watch import WatchEvent, format_event


def _rule(folder: Path, target: str = "/app") -> SyncRule:
    return SyncRule(str(folder), target, ("node_modules", ".git", "*.pyc", "Dockerfile"))


def _plan(folder: Path, *paths: Path, rebuilds: tuple[str, ...] = ()) -> syncplan.Batch:
    return plan_batch([str(p) for p in paths], [_rule(folder)], list(rebuilds), str(folder),
                      DockerIgnore.of(str(folder)))


def test_saved_files_land_under_the_target_and_deleted_ones_are_removed(tmp_path: Path):
    (tmp_path / "src").mkdir()
    saved = tmp_path / "src" / "a.ts"
    saved.write_text("x")
    batch = _plan(tmp_path, saved, tmp_path / "src" / "gone.ts")
    assert batch.copy == [(str(saved), "/app/src/a.ts", False)]
    assert batch.delete == ["/app/src/gone.ts"]
    assert batch.saved_at == saved.stat().st_mtime and not batch.skipped


def test_the_watched_root_itself_is_never_deleted(tmp_path: Path):
    gone = tmp_path / "backend"
    batch = plan_batch([str(gone)], [_rule(gone)], [], str(gone), DockerIgnore(()))
    assert batch.delete == [] and batch.empty


def test_a_new_folder_is_walked_so_files_written_before_it_was_watched_count(tmp_path: Path):
    folder = tmp_path / "gen" / "deep"
    folder.mkdir(parents=True)
    for n in range(3):
        (folder / f"f{n}.txt").write_text("x")
    batch = _plan(tmp_path, tmp_path / "gen")
    assert [t for _h, t, _d in batch.copy] == [
        "/app/gen", "/app/gen/deep", "/app/gen/deep/f0.txt", "/app/gen/deep/f1.txt",
        "/app/gen/deep/f2.txt"]


def test_dockerignore_and_the_rules_ignore_are_respected(tmp_path: Path):
    (tmp_path / ".dockerignore").write_text("# comment\n*.log\nbuild/\n!build/keep.txt\n"
                                            "**/secret-*\n")
    for rel in ("a.log", "build/x.js", "build/keep.txt", "src/secret-key.pem",
                "node_modules/m/index.js", "src/cache.pyc", "Dockerfile", "src/ok.ts"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    batch = _plan(tmp_path, *(p for p in tmp_path.rglob("*") if p.is_file()))
    assert sorted(t for _h, t, _d in batch.copy) == [
        "/app/.dockerignore", "/app/build/keep.txt", "/app/src/ok.ts"]


def test_a_rebuild_file_rebuilds_and_is_not_copied(tmp_path: Path):
    manifest = tmp_path / "package.json"
    manifest.write_text("{}")
    batch = _plan(tmp_path, manifest, rebuilds=(str(manifest),))
    assert batch.rebuild == ["package.json"] and batch.copy == []


def test_a_symlink_out_of_the_source_folder_is_never_followed(tmp_path: Path):
    folder, outside = tmp_path / "backend", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "id_rsa").write_text("private")
    (folder / "keys").symlink_to(outside)
    (folder / "key").symlink_to(outside / "id_rsa")
    (folder / "inside").symlink_to("src")
    (folder / "src").mkdir()
    batch = _plan(folder, folder / "keys", folder / "key", folder / "keys" / "id_rsa",
                  folder / "inside")
    assert batch.skipped == [
        f"key -> {outside / 'id_rsa'}: points out of the source folder, not synced "
        "(never followed out)",
        f"keys -> {outside}: points out of the source folder, not synced (never followed out)",
        f"keys/id_rsa -> {outside / 'id_rsa'}: points out of the source folder, not synced "
        "(never followed out)"]
    assert batch.copy == [(str(folder / "inside"), "/app/inside", False)]  # a link inside
    data, _lost = archive(batch, 0, 0)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("app/inside")
    assert member.issym() and member.linkname == "src"


def test_a_file_over_the_limit_is_left_out_with_one_line(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    big = tmp_path / "dump.bin"
    with big.open("wb") as handle:  # sparse: no disk used
        handle.truncate(syncplan.MAX_FILE + 1)
    batch = _plan(tmp_path, big)
    assert batch.copy == [] and batch.skipped == [
        "dump.bin: 105 MB, over the 100 MB a sync copies; not synced (add it to .dockerignore)"]


def test_the_tar_gives_the_files_to_the_containers_user(tmp_path: Path):
    saved = tmp_path / "a.py"
    saved.write_text("print(1)\n")
    os.chmod(saved, 0o640)
    batch = _plan(tmp_path, saved)
    data, lost = archive(batch, 1000, 1001)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("app/a.py")
    assert (member.uid, member.gid, member.mode, member.size, lost) == (1000, 1001, 0o640, 9,
                                                                        [])


def test_a_file_that_vanishes_before_the_copy_is_named(tmp_path: Path):
    saved = tmp_path / "a.py"
    saved.write_text("x")
    batch = _plan(tmp_path, saved)
    saved.unlink()
    _data, lost = archive(batch, 0, 0)
    assert lost == ["/app/a.py: No such file or directory"]


PASSWD = b"root:x:0:0:root:/root:/bin/bash\nnode:x:1000:1000::/home/node:/bin/sh\n" \
         b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = b"root:x:0:\nstaff:x:50:\n"


@pytest.mark.parametrize(("user", "owner"), [
    ("", (0, 0)), ("node", (1000, 1000)), ("65534", (65534, 65534)), ("4242", (4242, 4242)),
    ("1000:50", (1000, 50)), ("node:staff", (1000, 50)), ("ghost", None),
    ("node:nogroup", None)])
def test_the_containers_user_as_uid_and_gid(user: str, owner: tuple[int, int] | None):
    assert owner_of(user, PASSWD, GROUP) == owner


def test_an_event_says_which_part_of_the_time_is_whose():
    event = WatchEvent("synced", "api", "http://127.0.0.1:8000", 0.04, "ready", 0.31, "",
                       "10:00:00", files=1, copied_seconds=0.07)
    assert format_event(event) == (
        "10:00:00 api: synced 1 file in 0.04 s (in the container 0.07 s after the save); "
        "ready after 0.31 s at http://127.0.0.1:8000")
    skipped = WatchEvent("skipped", "api", "u", detail="big.bin: 105 MB, over", at="10:00:01")
    assert format_event(skipped) == "10:00:01 api: not synced\n  big.bin: 105 MB, over"


def test_a_container_replaced_mid_copy_gets_the_batch_once_more(tmp_path: Path):
    """A restart or recreate during the upload: the engine answers 404 for the old id; the
    service's container now is looked up and the same tar sent to it, said in one line."""
    from types import SimpleNamespace

    from devenv.engine import ContainerGoneError
    from devenv.errors import ComposeError
    from devenv.stack import sync

    saved = tmp_path / "a.py"
    saved.write_text("x")
    sent: list[str] = []

    class Engine:
        def exec_pipe(self, cid: str, argv: list[str]) -> None:
            raise ComposeError("cannot run docker exec: no docker CLI")  # uploads, then

        def put_archive(self, cid: str, path: str, data: bytes) -> None:
            sent.append(cid)
            if cid == "old":
                raise ContainerGoneError("Docker engine answered 404: No such container")

        def inspect(self, cid: str) -> dict:
            return {"Config": {"User": "1000:1000"}}

        def read_file(self, cid: str, path: str) -> bytes:
            return PASSWD

    watched = SimpleNamespace(engine=Engine(), service="api",
                              container=SimpleNamespace(id="old"),
                              compose=SimpleNamespace(running_container=lambda s:
                                                      SimpleNamespace(id="new")))
    state = sync._Sync(watched, [_rule(tmp_path)], [], str(tmp_path), "sync")  # type: ignore[arg-type]
    notes = sync._copy(state, _plan(tmp_path, saved))
    assert sent == ["old", "new"] and watched.container.id == "new"
    assert notes == ["api's container was replaced during the copy; copied into the new one"]
    assert state.owner == (1000, 1000)


def test_a_host_file_devenv_may_not_read_is_left_out_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # (the tests may run as root, who reads everything: the permission is what os says)
    secret, fine = tmp_path / "secret.txt", tmp_path / "fine.txt"
    secret.write_text("x")
    fine.write_text("y")
    monkeypatch.setattr(syncplan.os, "access", lambda path, mode: path != str(secret))
    batch = _plan(tmp_path, secret, fine)
    assert batch.skipped == ["secret.txt: cannot read it (permission denied); not synced"]
    assert batch.copy == [(str(fine), "/app/fine.txt", False)]


def test_a_bad_watch_engine_is_a_setting_error(tmp_path: Path):
    from devenv.config.settings import load_settings
    from devenv.errors import SettingError

    with pytest.raises(SettingError, match="is not a watch engine"):
        load_settings(tmp_path, {"DEVENV_API_WATCH_ENGINE": "rsync"}, {})


def test_a_remote_engine_is_watched_by_compose(tmp_path: Path):
    from devenv.config.settings import load_settings
    from devenv.stack.watch import sync_engine

    settings = load_settings(tmp_path, {}, {})
    assert (sync_engine(settings, True), sync_engine(settings, False)) == ("devenv", "compose")


def test_the_sync_action_unpacks_through_one_process_kept_in_the_container(tmp_path: Path):
    """A batch is its size and its tar on the unpacker's stdin (here the same shell loop,
    run locally into a folder instead of /): two batches, one process; once it has ended,
    the batch is uploaded instead and the next batch starts a new unpacker."""
    import subprocess
    from types import SimpleNamespace

    from devenv.stack import sync

    root = tmp_path / "container"
    root.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    started: list[subprocess.Popen[bytes]] = []
    uploaded: list[bytes] = []

    class Engine:
        def exec_pipe(self, cid: str, argv: list[str]) -> subprocess.Popen[bytes]:
            assert argv == ["sh", "-c", sync.RECEIVER]
            proc = subprocess.Popen(["sh", "-c", sync.RECEIVER.replace("-C /", f"-C {root}")],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            started.append(proc)
            return proc

        def put_archive(self, cid: str, path: str, data: bytes) -> None:
            uploaded.append(data)

    watched = SimpleNamespace(engine=Engine(), service="api", container=SimpleNamespace(id="c"))
    state = sync._Sync(watched, [_rule(src)], [], str(src), "sync",  # type: ignore[arg-type]
                       owner=(os.getuid(), os.getgid()))
    try:
        for n in (1, 2):
            (src / "a.py").write_text(f"version {n}")
            assert sync._copy(state, _plan(src, src / "a.py")) == []
            assert (root / "app" / "a.py").read_text() == f"version {n}"
        assert len(started) == 1 and not uploaded
        started[0].kill()
        started[0].wait()
        (src / "a.py").write_text("version 3")
        sync._copy(state, _plan(src, src / "a.py"))
        assert len(uploaded) == 1 and state.receiver is None
        (src / "a.py").write_text("version 4")
        sync._copy(state, _plan(src, src / "a.py"))
        assert len(started) == 2 and (root / "app" / "a.py").read_text() == "version 4"
    finally:
        sync._drop_receiver(state)
    assert all(p.poll() is not None for p in started)


def test_a_container_without_an_unpacker_gets_uploads(tmp_path: Path):
    """No sh, head or tar in the container: the unpacker's first (empty) batch fails, and
    every batch of that container is uploaded, without trying again."""
    import subprocess
    from types import SimpleNamespace

    from devenv.stack import sync

    (tmp_path / "a.py").write_text("x")
    tries: list[str] = []
    uploaded: list[str] = []

    class Engine:
        def exec_pipe(self, cid: str, argv: list[str]) -> subprocess.Popen[bytes]:
            tries.append(cid)
            return subprocess.Popen(["sh", "-c", "exit 126"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE)

        def put_archive(self, cid: str, path: str, data: bytes) -> None:
            uploaded.append(cid)

    watched = SimpleNamespace(engine=Engine(), service="api", container=SimpleNamespace(id="c"))
    state = sync._Sync(watched, [_rule(tmp_path)], [], str(tmp_path), "sync")  # type: ignore[arg-type]
    for _ in range(3):
        sync._copy(state, _plan(tmp_path, tmp_path / "a.py"))
    assert tries == ["c"] and uploaded == ["c", "c", "c"] and state.no_receiver == "c"
