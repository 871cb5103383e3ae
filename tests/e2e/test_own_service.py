"""A seventh service declared in devenv.toml alone (no Python, no template): it is planned,
started, probed, listed everywhere, and moves when its port is taken. One stack."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from checks import http_get
from conftest import TEST_IMAGES, new_project
from test_up import env_lines

pytestmark = pytest.mark.e2e

DEVENV_TOML = """
[services.notes]
title = "Team notes"
image = "{image}"
port = 8080                 # the container port of its main URL
host_port = {port}
probe = "http:/"
aliases = ["memo"]
url = "http://{{host}}:{{port}}/"
data = ["/var/notes"]
[services.notes.environment]
NOTES_GREETING = "it's $HOME: \\"quoted\\""
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    """`up --only memo` with the wanted port held by another process: it moves."""
    p = new_project(tmp_path_factory.mktemp("own"))
    port = int(p.env["DEVENV_API_PORT"]) + 11  # inside the project's free block
    (p.path / "devenv.toml").write_text(DEVENV_TOML.format(image=TEST_IMAGES[
        "DEVENV_ADMINER_IMAGE"], port=port))
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        up = p.run("up", "--only", "memo")
        yield p, port, up
    finally:
        holder.close()
        p.cleanup()


def test_it_comes_up_where_it_moved_and_answers_there(stack):
    p, port, up = stack
    assert f"notes: {port} is taken" in up.stderr and f"using {port + 1}" in up.stderr
    rows = {line.split()[0]: line.split()[1] for line in up.stdout.splitlines()[1:]}
    assert rows == {"notes": f"http://127.0.0.1:{port + 1}/"}  # nothing else started
    status, _body = http_get(rows["notes"])
    assert status == 200
    names = {c["Names"] for c in p.containers()}
    assert names == {f"{p.name}-notes-1"}


def test_it_is_listed_by_ports_status_and_env(stack):
    p, port, _up = stack
    row = p.ports()["notes"]
    assert (row["port"], row["configured_port"], row["moved"], row["state"]) == \
        (port + 1, port, True, "ready")
    assert row["schema"] == "devenv.ports/1"
    table = p.run("ports").stdout
    assert f"http://127.0.0.1:{port + 1}/" in table
    status = {r["service"]: r for r in json.loads(p.run("status", "--json").stdout)}
    assert status["notes"]["state"] == "running" and status["notes"]["port"] == port + 1
    assert "notes" in p.run("status").stdout
    assert env_lines(p.run("ports", "--env").stdout) == {
        "NOTES_URL": f"http://127.0.0.1:{port + 1}/"}


def test_its_settings_environment_and_volume_are_rendered(stack):
    p, port, _up = stack
    config = {r["key"]: r for r in json.loads(p.run("config", "--json").stdout)["settings"]}
    assert config["DEVENV_NOTES_PORT"]["value"] == str(port)
    assert config["DEVENV_NOTES_IMAGE"]["value"] == TEST_IMAGES["DEVENV_ADMINER_IMAGE"]
    env = subprocess.run(["docker", "exec", f"{p.name}-notes-1", "printenv",
                          "NOTES_GREETING"], capture_output=True, text=True, check=True)
    assert env.stdout.strip() == 'it\'s $HOME: "quoted"'  # literally, no interpolation
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                              f"label=com.docker.compose.project={p.name}"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert volumes == [f"{p.name}_notes-data"]


def test_a_second_up_is_up_to_date_and_logs_work(stack):
    p, _port, _up = stack
    again = p.run("up", "--only", "notes")
    assert "already up to date" in again.stderr
    assert p.run("logs", "memo", "--tail", "5").returncode == 0


def test_exec_and_run_take_its_name_and_alias(stack):
    p, _port, _up = stack
    want = 'it\'s $HOME: "quoted"'
    for word in ("notes", "memo"):
        inside = p.run("exec", "-T", word, "--", "printenv", "NOTES_GREETING", check=False)
        assert (inside.returncode, inside.stdout.strip()) == (0, want), inside.stderr
    one_off = p.run("run", "-T", "memo", "--", "printenv", "NOTES_GREETING", check=False)
    assert (one_off.returncode, one_off.stdout.strip()) == (0, want), one_off.stderr
    assert {c["Names"] for c in p.containers()} == {f"{p.name}-notes-1"}  # run removed it


@pytest.mark.parametrize(("old", "new", "error"), [
    ('probe = "http:/"', 'probe = "smtp"', "[services.notes] probe: 'smtp' is not a probe"),
    # a quote in url was an internal error, after containers started and in `ports --env`
    ('url = "http://{host}:{port}/"', 'url = "http://{host}:{port}/it\'s"',
     "[services.notes] url: \"http://{host}:{port}/it's\" holds"),
    # the declared default replaced devenv's: every port published on all interfaces
    ("[services.notes.environment]",
     '[[services.notes.settings]]\nkey = "DEVENV_BIND"\ndefault = "0.0.0.0"\n'
     "[services.notes.environment]", "[services.notes] settings: DEVENV_BIND is devenv's own"),
    # reached Compose, exit 1
    ('image = "', 'image = ""\nimage_help = "', "[services.notes] image: is empty"),
], ids=["probe", "url-quote", "own-setting", "empty-image"])
def test_bad_devenv_toml_exits_2_and_stops_nothing(stack, old, new, error):
    p, _port, _up = stack
    path = p.path / "devenv.toml"
    good = path.read_text()
    before = {c["ID"] for c in p.containers()}
    try:
        assert old in good
        path.write_text(good.replace(old, new, 1))
        for command in (("up",), ("down",), ("ports", "--env")):
            result = p.run(*command, check=False)
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith(f"devenv: error: devenv.toml: {error}")
            assert "Traceback" not in result.stderr
    finally:
        path.write_text(good)
    assert p.ports()["notes"]["state"] == "ready"  # still running
    assert {c["ID"] for c in p.containers()} == before  # not recreated
