"""The data use cases' pure parts and their seams, with a fake engine."""

from __future__ import annotations

import gzip
import io

import pytest

from devenv import engine as engine_module
from devenv.config.settings import load_settings
from devenv.context import Context
from devenv.data import dumps, seeding, snapshots
from devenv.data import ops as data
from devenv.engine import api as engine_api
from devenv.errors import DataError


def settings(tmp_path, **values):
    return load_settings(tmp_path, {"DEVENV_PROJECT": "p", **values})


@pytest.mark.parametrize("head, kind", [
    (b"PGDMP\x01\x0e\x00", "custom"),
    (b"a" * 257 + b"ustar\x0000" + b"\0" * 100, "tar"),
    (gzip.compress(b"select 1;"), "sql.gz"),
    ("-- dump\nCREATE TABLE é (n int);\n".encode(), "sql"),
])
def test_dump_kinds_are_told_from_the_first_bytes(tmp_path, head, kind):
    path = tmp_path / "dump"
    path.write_bytes(head)
    assert dumps.dump_kind(path) == kind


@pytest.mark.parametrize("head", [b"", b"\x89PNG\r\n\x1a\n\0\0", b"\xff\xfe\0\0garbage"])
def test_files_that_are_no_dump_are_refused(tmp_path, head):
    path = tmp_path / "photo.png"
    path.write_bytes(head)
    with pytest.raises(DataError, match="is not a PostgreSQL dump") as error:
        dumps.dump_kind(path)
    assert "sql.gz" in (error.value.hint or "")


#: `pg_restore --create --list` of a custom dump from another server (PostgreSQL 15)
LISTING = """;
; Archive created at 2026-12-04 09:06:05 UTC
;     dbname: teamdb
;
3353; 1262 16384 DATABASE - teamdb postgres
3354; 0 0 COMMENT - DATABASE teamdb postgres
3355; 0 0 ACL - DATABASE teamdb postgres
3356; 0 0 DATABASE PROPERTIES - teamdb postgres
214; 1259 16387 TABLE public items app_owner
3357; 0 0 ACL public TABLE items app_owner
215; 1259 16392 SEQUENCE public s postgres
3346; 0 16387 TABLE DATA public items app_owner
3202; 2606 16391 CONSTRAINT public items items_pkey app_owner
"""


def test_an_archive_from_another_server_says_what_its_import_leaves_out():
    assert dumps.restore_left_out(LISTING, "postgres") == [
        "the owner app_owner (everything belongs to postgres here)",
        "2 privilege entries (GRANT/REVOKE of the dump's roles)",
        "the database's own comment and settings"]
    own = "\n".join(line for line in LISTING.splitlines()
                    if "ACL" not in line and "DATABASE" not in line)
    own = own.replace("app_owner", "me").replace("postgres", "me")
    assert dumps.restore_left_out(own, "me") == []


def test_a_dump_that_would_act_on_another_database_is_refused_before_anything_stops(
        tmp_path, monkeypatch):
    """A pg_dumpall file connects to every database: refused while nothing has stopped,
    no automatic snapshot taken (any other engine call fails this test)."""
    dump = tmp_path / "all.sql.gz"
    dump.write_bytes(gzip.compress(b"\\connect template1\nCREATE ROLE app;\n"
                                   b"\\connect postgres\nDROP TABLE important;\n"))
    monkeypatch.setattr(dumps, "local_engine", lambda ctx: FakeEngine())
    monkeypatch.setattr(dumps, "running_service", lambda engine, settings, service: object())
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p"})
    with pytest.raises(DataError, match="connects to a second database, postgres") as error:
        dumps.import_dump(ctx, dump)
    assert "unchanged" in (error.value.hint or "")
    assert not (tmp_path / ".devenv" / "snapshots").exists()


def test_seed_failure_is_read_from_the_log(tmp_path):
    log = ("2026-11-26 17:00:00 UTC [entrypoint] running /docker-entrypoint-initdb.d/02-bad.sql\n"
           "INSERT 0 1\n"
           'psql:/docker-entrypoint-initdb.d/02-bad.sql:2: ERROR:  relation "b" does not exist\n'
           "LINE 1: INSERT INTO b VALUES (2);\n")
    message, hint = seeding.seed_failure(log, settings(tmp_path))
    assert message == ('seed file db/seed/02-bad.sql failed at line 2: ERROR: relation "b" '
                       "does not exist")
    assert "devenv db reset --yes" in hint
    assert seeding.seed_failure("FATAL: the database system is starting up", settings(tmp_path)) \
        is None
    piped = ("[entrypoint] running /docker-entrypoint-initdb.d/01-a.sql\n"
             "[entrypoint] running /docker-entrypoint-initdb.d/03-big.sql.gz\n"
             "psql:<stdin>:7: ERROR:  syntax error at or near \"x\"\n")
    assert seeding.seed_failure(piped, settings(tmp_path))[0] == \
        'seed file db/seed/03-big.sql.gz failed at line 7: ERROR: syntax error at or near "x"'


class FakeEngine:
    remote_host = None

    def __init__(self, pg_major="15"):
        self.pg_major = pg_major

    def image_env(self, reference):
        return {"PG_MAJOR": self.pg_major}

    def __getattr__(self, name):  # anything else (stop, run_helper, ...) must not happen
        raise AssertionError(f"engine.{name} called")


def test_other_major_version_is_refused_before_anything_stops(tmp_path, monkeypatch):
    root = tmp_path / ".devenv" / "snapshots"
    work = snapshots.new_workdir(root, "old")
    (work / "postgres.tar").write_bytes(b"x")
    snapshots.commit(work, root, "old", pg_major="14", database="d", project="p", auto=False)
    monkeypatch.setattr(data, "connect", lambda environ: FakeEngine("15"))
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p"})
    with pytest.raises(DataError, match="holds PostgreSQL 14 data; .* runs PostgreSQL 15") \
            as error:
        data.restore(ctx, "old")
    assert "DEVENV_POSTGRES_IMAGE" in (error.value.hint or "")


def test_remote_engines_are_told_to_use_export(tmp_path, monkeypatch):
    fake = FakeEngine()
    fake.remote_host = "build-box"
    monkeypatch.setattr(data, "connect", lambda environ: fake)
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p"})
    with pytest.raises(Exception, match="local Docker engine") as error:
        data.snapshot(ctx, "x")
    assert "db export" in (error.value.hint or "")


def test_password_goes_through_the_environment(monkeypatch):
    calls = []

    def fake_stream(command, env, stdin, stdout, progress):
        calls.append((command, env))
        return engine_module.CommandResult(0, "", "")

    monkeypatch.setattr(engine_api, "_docker_cli", lambda: "docker")
    monkeypatch.setattr(engine_api, "_stream", fake_stream)
    eng = engine_module.connect({"DOCKER_HOST": "unix:///nonexistent.sock", "PATH": "/bin"})
    eng.exec_stream("c1", ["pg_dump", "-U", "u"], env={"PGPASSWORD": "s3cret"},
                    stdout=io.BytesIO())
    command, env = calls[0]
    assert command == ["docker", "exec", "-e", "PGPASSWORD", "c1", "pg_dump", "-U", "u"]
    assert "s3cret" not in " ".join(command) and env["PGPASSWORD"] == "s3cret"


def test_volume_names_follow_compose(tmp_path):
    s = settings(tmp_path)
    assert data.volume_name(s, "postgres") == "p_postgres-data"
    assert data.volume_name(s, "redis") == "p_redis-data"


# --- the restore's set-aside data and the automatic snapshot it owes --------------------
class ScriptEngine:
    """Runs the helper script on this machine, with /vol/<service>, /in and /out mapped to
    directories under tmp_path (what `docker run` mounts). `fail` makes one mode fail the
    way a full disk does."""

    remote_host = None

    def __init__(self, tmp_path):
        self.vol = tmp_path / "vol"
        self.vol.mkdir()
        self.fail: str | None = None

    def volume_exists(self, name):
        return (self.vol / name.split("_", 1)[1].removesuffix("-data")).is_dir()

    def containers(self, project=None, all=True):
        return []  # nothing runs: no login to check

    def run_helper(self, image, script, mounts, args):
        import subprocess

        mode = args[5]
        if mode == self.fail:
            return engine_module.CommandResult(
                2, "", "tar: /out/redis.tar: Wrote only 4096 of 10240 bytes\n"
                "tar: No space left on device\n")
        for source, target, _ in mounts:
            if target == "/out":
                script = script.replace("/out", source)
            elif target == "/in":
                script = script.replace("/in/", source + "/")
        script = script.replace("/vol/", f"{self.vol}/")
        done = subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True,
                              text=True)
        return engine_module.CommandResult(done.returncode, done.stdout, done.stderr)


    def start_helper(self, image, script, mounts, args):
        import subprocess

        for source, target, _ in mounts:
            if target == "/in":
                script = script.replace("/in/", source + "/")
        script = script.replace("/vol/", f"{self.vol}/")
        proc = subprocess.Popen(["sh", "-c", script, "sh", *args], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return engine_module.HelperRun(proc)


def _tar_of(path, files):
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo("./" + name)
            raw = text.encode()
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def _restore_setup(tmp_path):
    eng = ScriptEngine(tmp_path)
    (eng.vol / "redis").mkdir()
    (eng.vol / "redis" / "appendonly.aof").write_text("old")
    s = settings(tmp_path)
    root = s.snapshot_dir
    work = snapshots.new_workdir(root, "base")
    _tar_of(work / "redis.tar", {"appendonly.aof": "new"})
    base = snapshots.commit(work, root, "base", pg_major="", database="d", project="p",
                            auto=False)
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p"})
    return eng, s, ctx, base


def _read_part(snapshot, name):
    import tarfile

    with tarfile.open(snapshot.part("redis")) as tar:
        return tar.extractfile("./" + name).read().decode()


def test_a_restore_interrupted_after_the_swap_still_gives_the_old_data_back(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    data.copy_volumes(eng, s, src=base, copy_in=["redis"], auto="auto-1")
    # the new data is in place; the old one is set aside in the volume, the snapshot owed
    assert (eng.vol / "redis" / "appendonly.aof").read_text() == "new"
    assert (eng.vol / "redis" / ".devenv-old" / "appendonly.aof").read_text() == "old"
    # ... and here the process died (Ctrl-C, kill, crash): the next data command pays first
    with pytest.raises(data._Owed) as owed:
        data.copy_volumes(eng, s, src=base, copy_in=["redis"], auto="auto-2")
    assert owed.value.owed == {"redis": "auto-1"}
    assert (eng.vol / "redis" / ".devenv-old" / "appendonly.aof").read_text() == "old"
    assert data.settle(ctx, eng, s) is True
    auto = snapshots.load(s.snapshot_dir, "auto-1")
    assert auto.auto and _read_part(auto, "appendonly.aof") == "old"
    assert not (eng.vol / "redis" / ".devenv-old").exists()
    assert (eng.vol / "redis" / "appendonly.aof").read_text() == "new"
    assert data.settle(ctx, eng, s) is False  # nothing owed any more


def test_set_aside_data_stays_until_its_snapshot_is_written(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    data.copy_volumes(eng, s, src=base, copy_in=["redis"], auto="auto-1")
    eng.fail = "finish"  # the disk fills up while the automatic snapshot is written
    with pytest.raises(DataError, match="automatic snapshot auto-1 .* was not written") as err:
        data.settle(ctx, eng, s)
    assert "kept inside the volumes" in (err.value.hint or "")
    assert (eng.vol / "redis" / ".devenv-old" / "appendonly.aof").read_text() == "old"
    assert not (s.snapshot_dir / "auto-1").exists()
    assert not [p for p in s.snapshot_dir.iterdir() if p.name.startswith(".tmp-")]
    eng.fail = None  # space freed: the next data command writes it, then drops the copy
    assert data.settle(ctx, eng, s) is True
    assert _read_part(snapshots.load(s.snapshot_dir, "auto-1"), "appendonly.aof") == "old"
    assert not (eng.vol / "redis" / ".devenv-old").exists()


def test_a_restore_interrupted_mid_swap_is_undone(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    vol = eng.vol / "redis"
    (vol / "dump.rdb").write_text("old-rdb")
    # moved half of the old entries aside, no marker yet, the new data staged beside
    (vol / ".devenv-old").mkdir()
    (vol / "appendonly.aof").rename(vol / ".devenv-old" / "appendonly.aof")
    (vol / ".devenv-restore").mkdir()
    (vol / ".devenv-restore" / "appendonly.aof").write_text("new")
    assert data.settle(ctx, eng, s) is False
    assert sorted(p.name for p in vol.iterdir()) == ["appendonly.aof", "dump.rdb"]
    assert (vol / "appendonly.aof").read_text() == "old"
    # marker written (all old aside), new entries half moved in: the new ones go
    (vol / ".devenv-old").mkdir()
    for name in ("appendonly.aof", "dump.rdb"):
        (vol / name).rename(vol / ".devenv-old" / name)
    (vol / ".devenv-old" / ".devenv-auto").write_text("auto-9\n")
    (vol / ".devenv-restore").mkdir()
    (vol / "appendonly.aof").write_text("new")
    assert data.settle(ctx, eng, s) is False
    assert sorted(p.name for p in vol.iterdir()) == ["appendonly.aof", "dump.rdb"]
    assert (vol / "appendonly.aof").read_text() == "old"


def test_a_volume_without_room_for_both_copies_is_refused(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    with open(base.part("redis"), "r+b") as handle:  # sparse: looks bigger than the disk
        import shutil

        handle.truncate(shutil.disk_usage(tmp_path).free + (1 << 30))
    with pytest.raises(DataError, match="not enough room in the data volume") as err:
        data.copy_volumes(eng, s, src=base, copy_in=["redis"], auto="auto-1")
    assert "unchanged" in (err.value.hint or "")
    assert sorted(p.name for p in (eng.vol / "redis").iterdir()) == ["appendonly.aof"]
    assert (eng.vol / "redis" / "appendonly.aof").read_text() == "old"


def test_a_new_restore_pays_the_old_debt_under_another_name(tmp_path, monkeypatch):
    eng, s, ctx, base = _restore_setup(tmp_path)
    data.copy_volumes(eng, s, src=base, copy_in=["redis"], auto="auto-1")
    (eng.vol / "redis" / "appendonly.aof").write_text("between")
    monkeypatch.setattr(snapshots, "auto_name", lambda now=None: "auto-1")  # same second
    monkeypatch.setattr(data, "project_containers", lambda engine, project: {})
    monkeypatch.setattr(data, "connect", lambda environ: eng)
    eng.image_env = lambda reference: {}
    result = data.restore(ctx, "base", background=False)
    assert result.before is not None and result.before.name == "auto-1-2"
    assert _read_part(snapshots.load(s.snapshot_dir, "auto-1"), "appendonly.aof") == "old"
    assert _read_part(result.before, "appendonly.aof") == "between"
    assert (eng.vol / "redis" / "appendonly.aof").read_text() == "new"
    assert not (eng.vol / "redis" / ".devenv-old").exists()


def _stage(eng, base, auto="auto-1"):
    return eng.start_helper("img", data.HELPER_SCRIPT, [(str(base.path), "/in", True)],
                            ["0", "0", "", "redis", "", "stage", auto])


def test_a_staged_restore_unpacks_beside_the_data_and_swaps_only_on_go(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    vol = eng.vol / "redis"
    helper = _stage(eng, base)
    assert helper.wait_for("devenv-staged")
    # unpacked while the services still run: the current data is untouched
    assert (vol / "appendonly.aof").read_text() == "old"
    assert (vol / ".devenv-restore" / "appendonly.aof").read_text() == "new"
    assert helper.send("go") and helper.wait_for("devenv-swapped")
    assert helper.wait().returncode == 0
    assert (vol / "appendonly.aof").read_text() == "new"
    assert (vol / ".devenv-old" / "appendonly.aof").read_text() == "old"
    assert (vol / ".devenv-old" / ".devenv-auto").read_text() == "auto-1\n"
    assert data.settle(ctx, eng, s) is True
    assert _read_part(snapshots.load(s.snapshot_dir, "auto-1"), "appendonly.aof") == "old"


def test_a_staged_restore_without_go_changes_nothing(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    helper = _stage(eng, base)
    assert helper.wait_for("devenv-staged")
    helper.close()  # devenv interrupted (Ctrl-C, killed) before the services were stopped
    assert helper.wait().returncode == data.EXIT_NOT_SWAPPED
    assert sorted(p.name for p in (eng.vol / "redis").iterdir()) == ["appendonly.aof"]
    assert (eng.vol / "redis" / "appendonly.aof").read_text() == "old"


def test_staging_leaves_what_an_earlier_restore_left_to_the_stopped_path(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    (eng.vol / "redis" / ".devenv-restore").mkdir()
    helper = _stage(eng, base)
    assert not helper.wait_for("devenv-staged")
    assert helper.wait().returncode == data.EXIT_UNSETTLED
    assert sorted(p.name for p in (eng.vol / "redis").iterdir()) == [
        ".devenv-restore", "appendonly.aof"]


def test_a_truncated_snapshot_fails_the_staged_restore_before_any_swap(tmp_path):
    eng, s, ctx, base = _restore_setup(tmp_path)
    with open(base.part("redis"), "r+b") as handle:
        handle.truncate(700)
    helper = _stage(eng, base)
    with pytest.raises(DataError, match="restore of the data failed") as err:
        data._swap(eng, s, helper, base)
    assert "unchanged" in (err.value.hint or "")
    assert sorted(p.name for p in (eng.vol / "redis").iterdir()) == ["appendonly.aof"]
    assert (eng.vol / "redis" / "appendonly.aof").read_text() == "old"


def test_a_whole_restore_through_the_staging_helper(tmp_path, monkeypatch):
    eng, s, ctx, base = _restore_setup(tmp_path)
    monkeypatch.setattr(data, "project_containers", lambda engine, project: {})
    monkeypatch.setattr(data, "connect", lambda environ: eng)
    eng.image_env = lambda reference: {}
    result = data.restore(ctx, "base", background=False)
    assert result.before is not None and result.before.auto
    assert _read_part(result.before, "appendonly.aof") == "old"
    assert sorted(p.name for p in (eng.vol / "redis").iterdir()) == ["appendonly.aof"]
    assert (eng.vol / "redis" / "appendonly.aof").read_text() == "new"


def test_a_restore_prunes_only_its_own_projects_automatic_snapshots(tmp_path, monkeypatch):
    """Two projects share DEVENV_SNAPSHOT_DIR: the other project's automatic snapshots (its
    only way back) are neither counted nor removed by this project's restore."""
    shared = tmp_path / "shared"
    eng, s, ctx, base = _restore_setup(tmp_path)
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p",
                                                 "DEVENV_SNAPSHOT_DIR": str(shared)})
    theirs = []
    for i in range(snapshots.KEEP_AUTO):
        work = snapshots.new_workdir(shared, f"auto-0000-{i}")
        _tar_of(work / "redis.tar", {"appendonly.aof": f"theirs-{i}"})
        theirs.append(snapshots.commit(work, shared, f"auto-0000-{i}", pg_major="",
                                       database="d", project="q", auto=True).name)
    work = snapshots.new_workdir(shared, "base")
    _tar_of(work / "redis.tar", {"appendonly.aof": "new"})
    snapshots.commit(work, shared, "base", pg_major="", database="d", project="p", auto=False)
    monkeypatch.setattr(data, "project_containers", lambda engine, project: {})
    monkeypatch.setattr(data, "connect", lambda environ: eng)
    eng.image_env = lambda reference: {}
    result = data.restore(ctx, "base", background=False)
    assert result.before is not None and result.before.project == "p"
    left = {snap.name for snap in snapshots.list_snapshots(shared)}
    assert set(theirs) <= left and result.before.name in left


def test_the_biggest_file_is_unpacked_beside_the_rest_by_a_second_tar(tmp_path):
    import tarfile

    eng, s, ctx, base = _restore_setup(tmp_path)
    big = tmp_path / "16385"
    with open(big, "wb") as handle:
        handle.write(b"x" * (65 << 20))  # over the 64 MiB that makes a file worth a tar
    part = base.path / "postgres.tar"
    with tarfile.open(part, "w") as tar:
        tar.add(tmp_path / "vol" / "redis", arcname=".", recursive=False)
        for name in ("./base", "./base/5"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        tar.add(big, arcname="./base/5/16385")
        info = tarfile.TarInfo("./base/5/1255")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"cat"))
    (eng.vol / "postgres").mkdir()
    helper = eng.start_helper("img", data.HELPER_SCRIPT, [(str(base.path), "/in", True)],
                              ["0", "0", "", "postgres", "", "stage", "auto-1"])
    assert helper.wait_for("devenv-staged"), helper.wait().stderr
    staged = eng.vol / "postgres" / ".devenv-restore" / "base" / "5"
    assert (staged / "16385").stat().st_size == 65 << 20
    assert (staged / "1255").read_text() == "cat"
    helper.close()
    assert helper.wait().returncode == data.EXIT_NOT_SWAPPED
    assert not (eng.vol / "postgres" / ".devenv-restore").exists()
