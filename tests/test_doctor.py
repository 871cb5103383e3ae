"""doctor without a real engine: every check is reported, whatever fails."""

from __future__ import annotations

import json
import os
import socket

import pytest
from click.testing import CliRunner

import devenv.stack.doctor as doctor
from devenv.cli.main import cli
from devenv.context import Context
from devenv.engine import EngineInfo
from devenv.stack.doctor import FAIL, OK, WARN, blocking


class FakeCompose:
    def version(self) -> str:
        return "Docker Compose version v2.26.1"


class FakeEngine:
    """The few engine calls doctor makes, answered from memory."""

    remote_host = None
    docker_host = "unix:///fake.sock"

    def __init__(self, images=()):
        self.images = set(images)
        self.asked: list[str] = []

    def compose(self, project, file=None):
        return FakeCompose()

    def containers(self, project=None):
        return []

    def port_bindings(self, container):
        return []

    def image_present(self, image):
        self.asked.append(image)
        return image in self.images

    def system_info(self):
        return {}

    def network(self, name):
        return None  # compose will create it


@pytest.fixture
def patched_engine(monkeypatch):
    engine = FakeEngine()
    info = EngineInfo("20.10.24", "1.41", remote_host="fake-host")

    def connected(environ):
        return engine, info, doctor.Check("engine", doctor.OK, "fake")

    monkeypatch.setattr(doctor, "_engine", connected)
    return engine


def run_checks(project_dir, environ, flags, env_file):
    return doctor.run_checks(Context(project_dir, environ, flags, env_file))


def names(checks):
    return [c.name for c in checks]


def test_a_bad_setting_fails_its_check_and_every_other_check_still_runs(tmp_path,
                                                                       patched_engine):
    checks = run_checks(tmp_path, {"DEVENV_REDIS_IMAGE": "Bars-redis:local",
                                          "DEVENV_WAIT_TIMEOUT": "nan"}, {}, None)
    failed = [c for c in checks if c.status == doctor.FAIL]
    assert [c.name for c in failed] == ["settings", "settings"]
    assert any("DEVENV_REDIS_IMAGE" in c.detail for c in failed)
    assert any("DEVENV_WAIT_TIMEOUT" in c.detail for c in failed)
    for name in ("engine", "compose", "api level", "port postgres", "disk project directory",
                 "project directory"):
        assert name in names(checks), name
    assert "Bars-redis:local" not in patched_engine.asked  # never sent to the engine
    assert "postgres:16" in patched_engine.asked  # the other images are still checked


def test_a_bad_port_skips_only_that_ports_check(tmp_path, patched_engine):
    checks = run_checks(tmp_path, {"DEVENV_REDIS_PORT": "8_081"}, {}, None)
    assert "port redis" not in names(checks) and "port postgres" in names(checks)


def test_an_unreadable_env_file_still_runs_the_checks_that_need_no_settings(tmp_path,
                                                                           patched_engine):
    (tmp_path / ".env").write_text("this is not a setting\n")
    checks = run_checks(tmp_path, {}, {}, None)
    assert checks[0].name == "settings" and checks[0].status == doctor.FAIL
    assert {"engine", "compose", "disk project directory", "project directory"} <= set(
        names(checks))


def test_a_project_directory_that_does_not_exist_is_a_check(tmp_path):
    missing = tmp_path / "not" / "yet"
    checks = run_checks(missing, {"DOCKER_HOST": "unix:///nonexistent.sock"}, {},
                               None)
    by_name = {c.name: c for c in checks}
    assert by_name["project directory"].status == doctor.WARN
    assert "does not exist yet" in by_name["project directory"].detail
    assert by_name["disk project directory"].status in (doctor.OK, doctor.WARN, doctor.FAIL)
    assert not missing.exists()  # doctor creates nothing


def test_a_project_directory_that_is_a_file_fails_its_check(tmp_path):
    (tmp_path / "f").write_text("x")
    checks = run_checks(tmp_path / "f", {"DOCKER_HOST": "unix:///nonexistent.sock"},
                               {}, None)
    assert {c.name: c.status for c in checks}["project directory"] == doctor.FAIL


def test_a_check_that_breaks_is_a_failed_check_not_the_end(tmp_path, patched_engine,
                                                           monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "_images", broken)
    checks = run_checks(tmp_path, {}, {}, None)
    [images] = [c for c in checks if c.name == "images"]
    assert images.status == doctor.FAIL and "boom" in images.detail
    assert "project directory" in names(checks)


@pytest.mark.parametrize("args, env", [
    (["--project-dir", "{tmp}/nowhere", "doctor", "--json"], {}),
    (["doctor", "--json"], {"DEVENV_REDIS_IMAGE": "Bars-redis:local"}),
    (["-p", "", "doctor", "--json"], {}),
    (["doctor", "--json"], {"DEVENV_API_DB_POOL_SIZE": "1_0"}),
])
def test_doctor_json_always_prints_json(tmp_path, monkeypatch, args, env):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    report = json.loads(result.stdout)
    assert report["schema"] == "devenv.doctor/1" and report["ok"] is False
    assert result.exit_code == 1
    assert {"engine", "project directory"} <= {c["name"] for c in report["checks"]}


# --- over the fake engine of tests/fake_engine.py ------------------------------------------
def by_name(checks):
    return {c.name: c for c in checks}


def test_all_well(fake_context, fake_engine):
    fake_engine.images |= {"devenv-test/base:bookworm", "grafana/grafana:11.1.0",
                           "python:3.12-slim"}
    checks = by_name(doctor.run_checks(fake_context()))
    assert checks["engine"].status == OK and "20.10.24" in checks["engine"].detail
    assert checks["compose"].detail == "Docker Compose v2.26.1"
    assert checks["images"].status == OK
    assert checks["port redis"].status == OK
    assert not blocking(list(checks.values()))


def test_a_taken_port_and_a_missing_image_are_warnings_with_the_setting(fake_context,
                                                                         fake_engine):
    ctx = fake_context()
    port = fake_context.ports["DEVENV_REDIS_PORT"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        checks = by_name(doctor.run_checks(ctx))
    assert checks["port redis"].status == WARN
    assert f"{port} is taken" in checks["port redis"].detail
    assert "DEVENV_REDIS_PORT" in checks["port redis"].fix
    # grafana's image is not on the fake engine, nor the bundled API's base image
    assert checks["image grafana"].status == WARN
    assert "DEVENV_GRAFANA_IMAGE" in checks["image grafana"].fix
    assert "python:3.12-slim" in checks["image api"].detail


def test_a_devenv_toml_service_is_checked_like_the_others(fake_context, fake_engine):
    ctx = fake_context()
    (ctx.project_dir / "devenv.toml").write_text(
        f'[services.mail]\nimage = "mail:1"\nport = 1025\nhost_port = '
        f'{fake_context.ports["DEVENV_API_PORT"] + 11}\n')
    checks = by_name(doctor.run_checks(ctx))
    assert checks["port mail"].status == OK
    assert checks["image mail"].status == WARN and "DEVENV_MAIL_IMAGE" in \
        checks["image mail"].fix


def test_a_broken_devenv_toml_fails_the_settings_check(fake_context):
    ctx = fake_context()
    (ctx.project_dir / "devenv.toml").write_text('[services.mail]\nport = 1025\n')
    checks = doctor.run_checks(ctx)
    assert (checks[0].name, checks[0].status) == ("settings", FAIL)
    assert checks[0].detail == "devenv.toml: [services.mail] image: is required"
    assert blocking(checks)
    # the rest still runs, with the built-in services
    assert {"engine", "port redis", "project directory"} <= {c.name for c in checks}


# --- tunnels: checked without dialling anyone, never blocking `up` ----------------------
TUNNEL_TOML = """
[tunnels.prod-db]
via = "deploy@bastion.example"
target = "prod-db.internal:5432"
kind = "postgres"
{extra}
"""


def tunnel_checks(tmp_path, extra="", environ=None):
    (tmp_path / "devenv.toml").write_text(TUNNEL_TOML.format(extra=extra))
    checks = run_checks(tmp_path, {"DEVENV_PROJECT": "tun", **(environ or {})}, {}, None)
    return [c for c in checks if c.name.startswith("tunnel")], checks


def test_no_tunnel_declared_adds_no_check(tmp_path, patched_engine):
    checks = run_checks(tmp_path, {}, {}, None)
    assert not [c for c in checks if c.name.startswith("tunnel")]


def test_a_declared_tunnel_that_is_not_open_is_fine(tmp_path, patched_engine):
    found, _ = tunnel_checks(tmp_path)
    assert [(c.name, c.status) for c in found] == [("tunnel prod-db", OK)]
    assert "via deploy@bastion.example to prod-db.internal:5432: not open" in found[0].detail


def test_an_ssh_option_ssh_refuses_is_a_warning_with_ssh_own_words(tmp_path, patched_engine):
    found, checks = tunnel_checks(tmp_path, 'ssh_options = ["-o", "NoSuchOption=1"]')
    assert [(c.name, c.status) for c in found] == [("tunnel prod-db", WARN)]
    assert "Bad configuration option: nosuchoption" in found[0].detail
    assert "ssh_options" in found[0].fix
    assert not blocking([c for c in checks if c.name.startswith("tunnel")])


def test_a_missing_ssh_config_file_is_a_warning(tmp_path, patched_engine):
    found, _ = tunnel_checks(tmp_path, environ={
        "DEVENV_SSH_CONFIG": str(tmp_path / "no-such-config")})
    assert found[0].status == WARN and "no-such-config" in found[0].detail


def test_no_ssh_client_is_a_warning_naming_the_tunnels(tmp_path, patched_engine, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    found, _ = tunnel_checks(tmp_path)
    assert [(c.name, c.status) for c in found] == [("tunnels", WARN)]
    assert "ssh) is not installed: prod-db cannot open" in found[0].detail


def test_a_bad_tunnel_table_is_a_warning_and_the_rest_still_runs(tmp_path, patched_engine):
    found, checks = tunnel_checks(tmp_path, 'colour = "blue"')
    assert [(c.name, c.status) for c in found] == [("tunnels", WARN)]
    assert "colour" in found[0].detail
    assert [c.status for c in checks if c.name == "settings"] == [OK]


def test_a_target_port_with_a_non_ascii_digit_is_a_warning_not_a_broken_doctor(
        tmp_path, patched_engine):
    (tmp_path / "devenv.toml").write_text(TUNNEL_TOML.format(extra="").replace(
        "prod-db.internal:5432", "prod-db.internal:5432\u00b2"))
    checks = run_checks(tmp_path, {"DEVENV_PROJECT": "tun"}, {}, None)
    found = [c for c in checks if c.name.startswith("tunnel")]
    assert [(c.name, c.status) for c in found] == [("tunnels", WARN)]
    assert "`target`" in found[0].detail and "host:port" in found[0].fix


def _write_record(tmp_path, name, state, last_error=""):
    folder = tmp_path / ".devenv" / "tunnels" / "tun"
    folder.mkdir(parents=True, exist_ok=True)
    # this process's pid with another start time: the record is of a supervisor that died
    (folder / f"{name}.json").write_text(json.dumps({
        "supervisor_pid": os.getpid(), "supervisor_started": 1.0, "port": 5433,
        "state": state, "last_error": last_error}))


def test_a_tunnel_whose_ssh_died_is_a_warning_with_the_way_back(tmp_path, patched_engine):
    _write_record(tmp_path, "prod-db", "up")
    found, _ = tunnel_checks(tmp_path)
    assert [(c.name, c.status) for c in found] == [("tunnel prod-db", WARN)]
    assert found[0].detail == "was opened, but its ssh no longer runs"
    assert found[0].fix == "devenv tunnel up prod-db"


def test_a_tunnel_that_gave_up_says_why(tmp_path, patched_engine):
    _write_record(tmp_path, "prod-db", "failed", "Permission denied (publickey)")
    found, _ = tunnel_checks(tmp_path)
    assert found[0].detail == "was opened, but gave up: Permission denied (publickey)"


def test_a_tunnel_running_an_older_declaration_is_a_warning_with_the_way_back(
        tmp_path, patched_engine):
    import subprocess
    import sys

    import psutil

    from devenv.tunnels.tables import TunnelSpec, recorded

    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / ".devenv" / "tunnels" / "tun"
        folder.mkdir(parents=True)
        opened = TunnelSpec(name="prod-db", via="deploy@bastion.example",
                            target_host="old-db.internal", target_port=5432, kind="postgres")
        (folder / "prod-db.json").write_text(json.dumps({
            **recorded(opened, ""), "supervisor_pid": stand_in.pid,
            "supervisor_started": psutil.Process(stand_in.pid).create_time(),
            "port": 15433, "state": "up"}))
        found, _ = tunnel_checks(tmp_path)
        assert [(c.name, c.status) for c in found] == [("tunnel prod-db", WARN)]
        assert found[0].detail == ("up on 127.0.0.1:15433, but devenv.toml changed since it "
                                   "was opened: target old-db.internal:5432 -> "
                                   "prod-db.internal:5432")
        assert found[0].fix == "devenv tunnel up prod-db"
    finally:
        stand_in.kill()
        stand_in.wait()
