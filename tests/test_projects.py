"""`devenv ls` over the fake engine: which Compose projects are devenv's, what each runs and
publishes, when it started, its tunnels; and what it reads from disk, read like input."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import psutil
import pytest
from fake_engine import free_block

from devenv.context import Context
from devenv.engine import Container, Published
from devenv.live.projects import (
    format_projects,
    format_projects_json,
    list_projects,
    projects_on,
)
from devenv.stack import usecases as stack

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture
def two(fake_context, fake_engine, tmp_path):
    """Project `unit` in tmp_path and `other` in tmp_path/b, Redis in each."""
    a = fake_context()
    base = free_block()
    b = Context(project_dir=tmp_path / "b", environ={
        "DEVENV_PROJECT": "other", "DEVENV_REDIS_PORT": str(base),
        "DEVENV_POSTGRES_PORT": str(base + 1), "DEVENV_WAIT_TIMEOUT": "5"},
        engine_factory=lambda env: fake_engine)
    (tmp_path / "b").mkdir()
    stack.up(a, ["cache"])
    stack.up(b, ["cache"])
    for c in fake_engine.containers_:
        fake_engine.started[c.id] = ("2027-01-15T07:55:00.123456789Z" if c.project == "unit"
                                     else "2027-01-15T06:00:00Z")
    return a, b, base


def by_name(engine) -> dict:
    return {p.project: p for p in projects_on(engine, NOW)}


def test_each_devenv_project_with_its_directory_ports_and_start(two, fake_engine, fake_context,
                                                                tmp_path):
    a, b, base = two
    found = by_name(fake_engine)
    assert set(found) == {"unit", "other"}
    unit, other = found["unit"], found["other"]
    assert (unit.directory, other.directory) == (str(tmp_path), str(tmp_path / "b"))
    assert unit.running == ("redis",) and other.running == ("redis",)
    assert [p.port for p in unit.services[0].ports] == [fake_context.ports["DEVENV_REDIS_PORT"]]
    assert [p.port for p in other.services[0].ports] == [base]
    assert (unit.started_at, unit.uptime_seconds) == ("2027-01-15T07:55:00Z", 299.9)
    assert (other.started_at, other.uptime_seconds) == ("2027-01-15T06:00:00Z", 7200.0)
    # the use case reads the engine from the Context, wherever it is run
    nowhere = Context(project_dir=tmp_path / "nowhere", environ={"DEVENV_REDIS_PORT": "x"},
                      engine_factory=lambda env: fake_engine)
    assert [p.project for p in list_projects(nowhere)] == ["other", "unit"]


def test_other_compose_projects_one_offs_and_borrowed_directories_are_left_out(
        two, fake_engine, tmp_path):
    def container(project: str, working_dir: str, service: str = "web",
                  **labels: str) -> Container:
        return Container(id=f"x{len(fake_engine.containers_)}", name=f"{project}-{service}-1",
                         project=project, service=service, state="running", health="",
                         status="Up", ports=(), working_dir=working_dir, labels=labels)

    fake_engine.containers_ += [
        container("shop", "/srv/shop"),  # another tool's Compose project
        container("shop2", "/srv/shop2/compose"),  # named like devenv's, made by nobody
        container("borrowed", str(tmp_path / "compose")),  # claims unit's directory
        container("unit", str(tmp_path / "compose"), "redis-run",
                  **{"com.docker.compose.oneoff": "True"}),  # a `devenv run` one-off
        container("", "")]  # no Compose at all
    found = by_name(fake_engine)
    assert set(found) == {"unit", "other"}
    assert [s.service for s in found["unit"].services] == ["redis"]


def test_a_project_whose_state_was_never_saved_is_known_by_what_devenv_rendered(
        two, fake_engine, tmp_path):
    """An `up` whose seed failed stops before it saves the state: compose/ still says it."""
    (tmp_path / ".devenv" / "state.json").unlink()
    assert "unit" in by_name(fake_engine)
    (tmp_path / "compose" / ".devenv-files.json").write_text("{damaged")
    assert "unit" not in by_name(fake_engine)
    assert (tmp_path / "compose" / ".devenv-files.json").read_text() == "{damaged"


@pytest.mark.parametrize("bad", ["fifo", "link", "not json", "not utf-8", "a list",
                                 "huge", "no entry", "a directory"])
def test_the_marks_on_disk_are_read_like_input_and_left_as_they_are(two, fake_engine,
                                                                   tmp_path, bad):
    state = tmp_path / "b" / ".devenv" / "state.json"
    (tmp_path / "b" / "compose" / ".devenv-files.json").unlink()  # the state alone decides
    good = state.read_text()
    state.unlink()
    if bad == "fifo":  # opening it for reading would wait for a writer forever
        os.mkfifo(state)
    elif bad == "link":
        (tmp_path / "elsewhere.json").write_text(good)
        state.symlink_to(tmp_path / "elsewhere.json")
    elif bad == "not json":
        state.write_text("{")
    elif bad == "not utf-8":
        state.write_bytes(b"\xff\xfe{}")
    elif bad == "a list":
        state.write_text("[]")
    elif bad == "huge":
        state.write_text(good[:-2] + " " * (1 << 20) + good[-2:])
    elif bad == "no entry":
        state.write_text(json.dumps({"schema": 1, "projects": {"unit": {}}}))
    else:
        state.mkdir()
    before = sorted(p.name for p in state.parent.iterdir())
    assert set(by_name(fake_engine)) == {"unit"}
    assert sorted(p.name for p in state.parent.iterdir()) == before  # nothing set aside


def test_its_tunnels_from_their_records(two, fake_engine, tmp_path):
    me = psutil.Process(os.getpid())
    folder = tmp_path / ".devenv" / "tunnels" / "unit"
    folder.mkdir(parents=True)
    record = {"supervisor_pid": me.pid, "supervisor_started": me.create_time(),
              "ssh_pid": None, "port": 15432, "state": "up", "production": True}
    (folder / "prod-db.json").write_text(json.dumps(record))
    (folder / "staging.json").write_text(json.dumps({**record, "port": 15433,
                                                     "production": "false"}))
    (folder / "gone.json").write_text(json.dumps({**record, "supervisor_started": 1.0}))
    (folder / "_engine.json").write_text(json.dumps(record))  # a remote engine's forward
    (folder / "bad.json").write_text(json.dumps({**record, "port": "x"}))
    tunnels = {t.name: t for t in by_name(fake_engine)["unit"].tunnels}
    assert set(tunnels) == {"gone", "prod-db", "staging"}
    assert (tunnels["prod-db"].port, tunnels["prod-db"].state,
            tunnels["prod-db"].production) == (15432, "up", True)
    assert tunnels["staging"].production is False  # only a real true is production
    assert tunnels["gone"].state == "dead"
    assert by_name(fake_engine)["other"].tunnels == ()


def test_the_table_and_the_json(two, fake_engine, fake_context, tmp_path):
    redis = fake_context.ports["DEVENV_REDIS_PORT"]
    c = next(c for c in fake_engine.containers_ if c.project == "other")
    fake_engine.containers_[fake_engine.containers_.index(c)] = replace(
        c, state="exited", ports=())
    fake_engine.containers_.append(Container(
        id="c-db", name="unit-postgres-1", project="unit", service="postgres",
        state="running", health="", status="Up",
        ports=(Published("127.0.0.1", 5433, 5432), Published("::1", 5433, 5432)),
        working_dir=str(tmp_path / "compose")))
    found = projects_on(fake_engine, NOW)
    lines = format_projects(found).splitlines()
    assert lines[0].split() == ["PROJECT", "DIRECTORY", "SERVICES", "STARTED", "TUNNELS"]
    assert lines[1].split() == ["other", str(tmp_path / "b"), "redis", "(exited)", "-", "-"]
    assert lines[2].split() == ["unit", str(tmp_path), "postgres:5433,", f"redis:{redis}",
                                "4m59s", "ago", "-"]
    items = json.loads(format_projects_json(found))
    assert [i["schema"] for i in items] == ["devenv.ls/1", "devenv.ls/1"]
    assert items[0]["running"] == [] and items[0]["started_at"] is None
    unit = items[1]
    assert unit["running"] == ["postgres", "redis"]
    assert unit["services"][0]["ports"] == [
        {"host": "127.0.0.1", "port": 5433, "container_port": 5432},
        {"host": "::1", "port": 5433, "container_port": 5432}]
    assert unit["started_at"] == "2027-01-15T07:55:00Z" and unit["uptime_seconds"] == 299.9


def test_a_crafted_label_cannot_write_to_the_terminal(two, fake_engine):
    found = [replace(p, project=p.project + "\x1b]0;owned\x07") for p in
             projects_on(fake_engine, NOW)]
    text = format_projects(found)
    assert "\x1b" not in text and "\x07" not in text and "unit?]0;owned?" in text
    assert "\\u001b]0;owned\\u0007" in format_projects_json(found)
