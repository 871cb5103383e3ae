"""The data use cases' pure parts and their seams, with a fake engine."""

from __future__ import annotations

import gzip
import io

import pytest

from devenv import data, snapshots
from devenv import engine as engine_module
from devenv.context import Context
from devenv.engine import api as engine_api
from devenv.errors import DataError
from devenv.settings import load_settings


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
    assert data.dump_kind(path) == kind


@pytest.mark.parametrize("head", [b"", b"\x89PNG\r\n\x1a\n\0\0", b"\xff\xfe\0\0garbage"])
def test_files_that_are_no_dump_are_refused(tmp_path, head):
    path = tmp_path / "photo.png"
    path.write_bytes(head)
    with pytest.raises(DataError, match="is not a PostgreSQL dump") as error:
        data.dump_kind(path)
    assert "sql.gz" in (error.value.hint or "")


def test_seed_failure_is_read_from_the_log(tmp_path):
    log = ("2026-11-26 17:00:00 UTC [entrypoint] running /docker-entrypoint-initdb.d/02-bad.sql\n"
           "INSERT 0 1\n"
           'psql:/docker-entrypoint-initdb.d/02-bad.sql:2: ERROR:  relation "b" does not exist\n'
           "LINE 1: INSERT INTO b VALUES (2);\n")
    message, hint = data.seed_failure(log, settings(tmp_path))
    assert message == ('seed file db/seed/02-bad.sql failed at line 2: ERROR: relation "b" '
                       "does not exist")
    assert "devenv db reset --yes" in hint
    assert data.seed_failure("FATAL: the database system is starting up", settings(tmp_path)) \
        is None
    piped = ("[entrypoint] running /docker-entrypoint-initdb.d/01-a.sql\n"
             "[entrypoint] running /docker-entrypoint-initdb.d/03-big.sql.gz\n"
             "psql:<stdin>:7: ERROR:  syntax error at or near \"x\"\n")
    assert data.seed_failure(piped, settings(tmp_path))[0] == \
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
