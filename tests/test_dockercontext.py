"""Which engine devenv talks to: the Docker CLI's rules, over a temporary DOCKER_CONFIG."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from devenv.engine import Compose, PortRaceError, compose_error, connect
from devenv.engine.dockercontext import DEFAULT_HOST, resolve_engine
from devenv.engine.transport import _unreachable
from devenv.errors import DockerUnavailableError


def make_context(config: Path, name: str, host: str, tls: bool = False) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host,
                                                                "SkipTLSVerify": False}}}))
    if tls:
        certs = config / "contexts" / "tls" / digest / "docker"
        certs.mkdir(parents=True)
        for stem in ("ca", "cert", "key"):
            (certs / f"{stem}.pem").write_text("x")


@pytest.fixture
def config(tmp_path) -> Path:
    directory = tmp_path / "docker-config"
    directory.mkdir()
    make_context(directory, "colima", "unix:///home/me/.colima/default/docker.sock")
    make_context(directory, "remote", "tcp://build-box:2376", tls=True)
    return directory


def use(config: Path, current: str) -> None:
    (config / "config.json").write_text(json.dumps({"auths": {}, "currentContext": current}))


def test_nothing_set_is_the_default_socket(config):
    target = resolve_engine({"DOCKER_CONFIG": str(config)})
    assert (target.host, target.context, target.source) == (DEFAULT_HOST, "default", "default")
    assert target.where == DEFAULT_HOST


def test_current_context_from_the_cli_config(config):
    use(config, "colima")
    target = resolve_engine({"DOCKER_CONFIG": str(config)})
    assert target.host == "unix:///home/me/.colima/default/docker.sock"
    assert target.where == "unix:///home/me/.colima/default/docker.sock (context colima)"
    assert "context colima" in target.how and "current context" in target.how


def test_home_docker_config_when_docker_config_is_unset(tmp_path):
    make_context(tmp_path / ".docker", "colima", "unix:///c.sock")
    use(tmp_path / ".docker", "colima")
    assert resolve_engine({"HOME": str(tmp_path)}).host == "unix:///c.sock"


def test_docker_context_wins_over_the_config_and_docker_host_over_both(config):
    use(config, "colima")
    env = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "remote"}
    target = resolve_engine(env)
    assert (target.host, target.source) == ("tcp://build-box:2376", "DOCKER_CONTEXT")
    assert target.tls_dir.endswith("/docker")
    target = resolve_engine({**env, "DOCKER_HOST": "unix:///other.sock"})
    assert (target.host, target.context, target.source) == ("unix:///other.sock", "",
                                                            "DOCKER_HOST")


def test_context_default_means_the_default_socket(config):
    use(config, "colima")
    target = resolve_engine({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "default"})
    assert target.host == DEFAULT_HOST


def test_the_resolved_host_reaches_clients_that_read_the_environment(config):
    use(config, "remote")
    env = resolve_engine({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "remote"}).environ(
        {"DOCKER_CONTEXT": "remote", "PATH": "/bin"})
    assert env["DOCKER_HOST"] == "tcp://build-box:2376" and "DOCKER_CONTEXT" not in env
    assert env["DOCKER_TLS_VERIFY"] == "1" and env["DOCKER_CERT_PATH"].endswith("docker")


def test_compose_is_given_the_same_engine(config, monkeypatch):
    use(config, "colima")
    environ = {"DOCKER_CONFIG": str(config)}
    compose = connect(environ).compose("p")
    assert compose.target.host == "unix:///home/me/.colima/default/docker.sock"
    ran = []

    def run(argv, **kwargs):
        ran.append((argv, kwargs["env"]))
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(subprocess, "run", run)
    Compose("p", None, environ, compose.target).up(["db"])
    [(argv, env)] = ran
    assert argv[1:] == ["compose", "-p", "p", "up", "--detach", "db"]
    assert env["DOCKER_HOST"] == "unix:///home/me/.colima/default/docker.sock"


def test_compose_failures_become_devenv_errors(monkeypatch):
    def run(argv, **kwargs):
        return subprocess.CompletedProcess(
            argv, 1, b"", b"Error response from daemon: driver failed programming external "
            b"connectivity: Bind for 127.0.0.1:5432 failed: port is already allocated\n")

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(PortRaceError) as info:
        Compose("p", None, {}, resolve_engine({})).up(["db"])
    assert info.value.port == 5432
    Compose("p", None, {}, resolve_engine({})).up([])  # nothing asked: nothing run


@pytest.mark.parametrize("text, words", [
    ("{not json", "is not valid JSON (line 1)"),
    ("[1, 2]", "is not a JSON object"),
    ('{"currentContext": 3}', "is not a context name"),
])
def test_broken_config_is_a_clear_error(config, text, words):
    (config / "config.json").write_text(text)
    with pytest.raises(DockerUnavailableError) as info:
        resolve_engine({"DOCKER_CONFIG": str(config)})
    assert words in info.value.message and str(config / "config.json") in info.value.message
    assert info.value.exit_code == 4 and info.value.hint


def test_missing_context_names_it_and_who_chose_it(config):
    use(config, "orbstack")
    with pytest.raises(DockerUnavailableError) as info:
        resolve_engine({"DOCKER_CONFIG": str(config)})
    assert "Docker context 'orbstack'" in info.value.message
    assert "currentContext in" in info.value.message and "docker context ls" in info.value.hint
    with pytest.raises(DockerUnavailableError) as info:
        resolve_engine({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "podman"})
    assert "'podman' (DOCKER_CONTEXT) does not exist" in info.value.message


def test_context_without_a_docker_endpoint_is_refused(config):
    meta = config / "contexts" / "meta" / hashlib.sha256(b"k8s").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text('{"Name": "k8s", "Endpoints": {}}')
    with pytest.raises(DockerUnavailableError, match="names no Docker engine"):
        resolve_engine({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "k8s"})


def test_errors_name_the_context(config):
    use(config, "colima")
    target = resolve_engine({"DOCKER_CONFIG": str(config)})
    error = _unreachable(target, ConnectionRefusedError(111, "Connection refused"))
    assert error.message == ("cannot reach the Docker engine at "
                             "unix:///home/me/.colima/default/docker.sock (context colima): "
                             "Connection refused")
    assert "context colima" in error.hint and "docker context use default" in error.hint
    from_compose = compose_error("up", "Cannot connect to the Docker daemon at unix:///x. Is "
                                 "the docker daemon running?", target)
    assert "(context colima)" in from_compose.message and from_compose.exit_code == 4


def test_unreachable_context_engine_exits_4_through_the_cli(config, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from devenv.cli.main import cli

    make_context(config, "gone", f"unix://{tmp_path}/nothing.sock")
    use(config, "gone")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    result = CliRunner().invoke(cli, ["ports"], env={"DOCKER_CONFIG": str(config)})
    assert result.exit_code == 4
    assert result.output.splitlines()[0] == (
        f"devenv: error: cannot reach the Docker engine at unix://{tmp_path}/nothing.sock "
        "(context gone): No such file or directory")
    (config / "config.json").write_text("{")
    result = CliRunner().invoke(cli, ["ports"], env={"DOCKER_CONFIG": str(config)})
    assert result.exit_code == 4 and "is not valid JSON" in result.output
