"""The PostgreSQL login a snapshot carries (data/credentials.py): recorded without the
password, checked before a restore or a fresh volume swaps it in, and put on restored data
only when asked."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from devenv.config.settings import load_settings
from devenv.context import Context
from devenv.data import credentials, seeding, snapshots
from devenv.data import ops as data
from devenv.errors import DataError

PASSWORD = "s3cret-'quoted' \\ pw"


def settings(tmp_path, **values):
    return load_settings(tmp_path, {"DEVENV_PROJECT": "p", "DEVENV_POSTGRES_PASSWORD": PASSWORD,
                                    **values})


class FakeEngine:
    """image_env and no volumes; any other call (stop, run_helper ...) fails the test."""

    remote_host = None

    def image_env(self, reference):
        return {}

    def volume_exists(self, name):
        return False

    def __getattr__(self, name):
        raise AssertionError(f"engine.{name} called")


def take_snapshot(tmp_path, name, login_settings, login_ok=True):
    root = login_settings.snapshot_dir
    work = snapshots.new_workdir(root, name)
    (work / "postgres.tar").write_bytes(b"x" * 100)
    return data._commit(work, login_settings, name, auto=False, login_ok=login_ok)


def test_a_fingerprint_tells_the_password_without_holding_it():
    one, two = credentials.fingerprint(PASSWORD), credentials.fingerprint(PASSWORD)
    assert one != two  # salted
    assert PASSWORD not in one and "s3cret" not in one
    assert credentials.same_password(one, PASSWORD) is True
    assert credentials.same_password(one, "other") is False
    assert credentials.same_password("md5$x", PASSWORD) is None


def test_a_snapshot_records_the_login_it_was_seen_to_work_with(tmp_path):
    s = settings(tmp_path)
    taken = take_snapshot(tmp_path, "base", s)
    text = (taken.path / "manifest.json").read_text()
    assert "s3cret" not in text
    assert json.loads(text)["login"]["user"] == "postgres"
    assert credentials.differences(snapshots.load(s.snapshot_dir, "base"), s) == []
    unknown = take_snapshot(tmp_path, "unknown", s, login_ok=False)
    assert "login" not in json.loads((unknown.path / "manifest.json").read_text())


def test_what_differs_is_named_by_setting_never_by_password(tmp_path):
    taken = take_snapshot(tmp_path, "base", settings(tmp_path, DEVENV_POSTGRES_USER="alice",
                                                     DEVENV_POSTGRES_DB="team"))
    found = credentials.differences(taken, settings(tmp_path, DEVENV_POSTGRES_PASSWORD="new"))
    assert found == ["DEVENV_POSTGRES_USER was 'alice' (now 'postgres')",
                     "DEVENV_POSTGRES_DB was 'team' (now 'cirkelline_agents')",
                     "DEVENV_POSTGRES_PASSWORD is not the one it was taken with"]
    assert not any("new" in line or "s3cret" in line for line in found)


def test_a_restore_with_other_credentials_is_refused_before_anything_stops(tmp_path,
                                                                           monkeypatch):
    take_snapshot(tmp_path, "base", settings(tmp_path))
    monkeypatch.setattr(data, "connect", lambda environ: FakeEngine())
    ctx = Context(project_dir=tmp_path, environ={"DEVENV_PROJECT": "p",
                                                 "DEVENV_POSTGRES_PASSWORD": "n3w-pw"})
    with pytest.raises(DataError, match="taken with other PostgreSQL credentials: "
                       "DEVENV_POSTGRES_PASSWORD is not the one") as error:
        data.restore(ctx, "base")
    assert "nothing was changed" in error.value.message
    assert "devenv db restore base --adopt-credentials" in (error.value.hint or "")
    assert "n3w-pw" not in error.value.message + (error.value.hint or "")


def test_a_fresh_volume_never_starts_from_a_seed_with_other_credentials(tmp_path):
    take_snapshot(tmp_path, "seed", settings(tmp_path))
    with pytest.raises(DataError, match="snapshot seed was taken with other PostgreSQL "
                       "credentials: DEVENV_POSTGRES_USER was 'postgres'") as error:
        seeding.prepare_volumes(FakeEngine(), settings(tmp_path, DEVENV_POSTGRES_USER="bob"),
                                ["postgres"], lambda line: None)
    assert "nothing was created" in error.value.message
    assert "--adopt-credentials" in (error.value.hint or "")


class Compose:
    def __init__(self, refuse=()):
        self.calls, self.refuse = [], refuse

    def exec(self, service, argv, **options):
        self.calls.append((service, argv, options))
        role = argv[argv.index("-U") + 1]
        code = 2 if role in self.refuse else 0
        return SimpleNamespace(code=code, stdout="", stderr=f'role "{role}" does not exist'
                               if code else "")


def test_adopting_sets_the_projects_login_through_stdin_as_the_snapshots_user(tmp_path):
    taken = take_snapshot(tmp_path, "base", settings(tmp_path, DEVENV_POSTGRES_USER="alice",
                                                     DEVENV_POSTGRES_DB="team"))
    compose = Compose(refuse=("alice",))
    engine = SimpleNamespace(compose=lambda project, file: compose)
    credentials.adopt(engine, settings(tmp_path), taken)
    assert [argv[argv.index("-U") + 1] for _, argv, _ in compose.calls] == ["alice", "postgres"]
    _service, argv, options = compose.calls[-1]
    assert PASSWORD not in " ".join(argv)
    script = options["stdin"].decode()
    assert "ALTER ROLE \"postgres\" WITH SUPERUSER LOGIN PASSWORD 's3cret-''quoted'' \\ pw';" \
        in script
    assert 'ALTER DATABASE "team" RENAME TO "cirkelline_agents";' in script


def test_a_failed_adoption_never_shows_the_password(tmp_path):
    taken = take_snapshot(tmp_path, "base", settings(tmp_path))
    compose = SimpleNamespace(exec=lambda service, argv, **options: SimpleNamespace(
        code=3, stdout="", stderr=f"ERROR:  permission denied\nLINE 1: ... PASSWORD "
        f"'{PASSWORD.replace(chr(39), chr(39) * 2)}';\n"))  # as the script quotes it
    engine = SimpleNamespace(compose=lambda project, file: compose)
    with pytest.raises(DataError, match="could not put this project's credentials") as error:
        credentials.adopt(engine, settings(tmp_path), taken)
    assert "s3cret" not in error.value.message + (error.value.hint or "")
