"""Use cases over a fake engine at the seam (devenv.engine.connect, which the Context's
factory calls): what they refuse and say."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import devenv.engine
from devenv.cli.main import cli
from devenv.engine import Container, EngineInfo, Published, compose_error
from devenv.errors import ComposeError


class FakeEngine:
    """The engine as the restart use case sees it: a project's containers."""

    remote_host = None

    def __init__(self, containers: list[Container], fail: ComposeError | None = None):
        self._containers = containers
        self.fail = fail
        self.restarted: list[str] = []

    def info(self) -> EngineInfo:
        return EngineInfo("20.10", "1.41", None)

    def containers(self, project: str | None = None, all: bool = True) -> list[Container]:
        return [c for c in self._containers if project is None or c.project == project]

    def restart(self, containers: list[Container]) -> None:
        if self.fail:
            raise self.fail
        self.restarted += [c.service for c in containers]


def container(service: str, state: str = "running") -> Container:
    return Container(f"id-{service}", f"cirkelline-{service}-1", "cirkelline", service, state,
                     "", "Up", (Published("127.0.0.1", 1, 6379),))


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in [k for k in __import__("os").environ if k.startswith("DEVENV_")]:
        monkeypatch.delenv(key)

    def invoke(engine: FakeEngine, *args: str):
        monkeypatch.setattr(devenv.engine, "connect", lambda environ: engine)
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_restart_with_nothing_running_says_so_and_how_to_start(run):
    for containers in ([], [container("redis", "exited")]):
        engine = FakeEngine(containers)
        result = run(engine, "restart")
        assert result.exit_code == 2
        assert result.output.splitlines() == [
            "devenv: error: nothing of project cirkelline is running, so nothing was restarted",
            "hint: start it with `devenv up`"]
        assert engine.restarted == []
    result = run(FakeEngine([]), "restart", "cache")
    assert result.exit_code == 2 and "hint: start it with `devenv up --only redis`" in \
        result.output


def test_restart_error_is_one_line_with_a_hint(run):
    failure = compose_error("restart", "Error response from daemon: cannot restart container "
                            "x: OCI runtime error")
    result = run(FakeEngine([container("redis")], fail=failure), "restart", "cache")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    errors = [line for line in lines if line.startswith("devenv: error:")]
    assert len(errors) == 1 and "OCI runtime error" in errors[0]
    assert sum("OCI runtime error" in line for line in lines) == 1, result.output
    assert lines[-1].startswith("hint: ")


def test_compose_error_keeps_earlier_lines_as_detail_only():
    single = compose_error("up", "no such service: grafana")
    assert single.detail is None and single.hint
    many = compose_error("up", "line one\nline two\nno such service: grafana")
    assert many.message.endswith("no such service: grafana")
    assert many.detail == "line one\nline two"


class RunningStack(FakeEngine):
    """Postgres, Prometheus and Grafana running; what `render` asks of the engine."""

    def port_bindings(self, c: Container) -> list[int]:
        return [p.host_port for p in c.ports]

    def network(self, name: str) -> dict | None:
        return {"Labels": {"com.docker.compose.project": "cirkelline"}}


def running(service: str, port: int) -> Container:
    from devenv.config.projectfile import builtin_catalog

    spec = builtin_catalog().services[service]
    return Container(f"id-{service}", f"cirkelline-{service}-1", "cirkelline", service,
                     "running", "", "Up",
                     (Published("127.0.0.1", port, spec.container_port),))


def test_render_only_x_keeps_what_runs_in_the_file(run, tmp_path):
    import yaml

    engine = RunningStack([running("postgres", 45432), running("prometheus", 49090),
                           running("grafana", 43001)])
    first = run(engine, "render", "--only", "db,dashboards")
    assert first.exit_code == 0, first.output
    result = run(engine, "render", "--only", "cache")
    assert result.exit_code == 0, result.output
    assert "keeping postgres, prometheus, grafana in the file: running now" in result.output
    assert "removed" not in result.output
    doc = yaml.safe_load((tmp_path / "compose" / "docker-compose.yml").read_text())
    assert list(doc["services"]) == ["postgres", "redis", "prometheus", "grafana"]
    # the running services keep the ports they publish
    assert doc["services"]["grafana"]["ports"][0]["published"] == "43001"
    assert (tmp_path / "compose" / "prometheus" / "prometheus.yml").is_file()
    assert (tmp_path / "compose" / "grafana" / "provisioning" / "datasources" /
            "prometheus.yml").is_file()


def test_render_takes_the_project_lock(run, tmp_path, monkeypatch):
    from devenv.config.state import project_lock

    monkeypatch.setenv("DEVENV_WAIT_TIMEOUT", "0.5")
    with project_lock(tmp_path / ".devenv", "cirkelline", "up", 1):
        result = run(RunningStack([]), "render", "--only", "cache")
    assert result.exit_code == 1
    assert "project cirkelline is busy: devenv up" in result.output
    assert not (tmp_path / "compose").exists()
