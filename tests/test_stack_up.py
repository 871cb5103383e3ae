"""The use cases over the fake engine (tests/fake_engine.py): up, the port race, "already up
to date", a reload instead of a restart, down. The real engine's side is in tests/e2e."""

from __future__ import annotations

import json

import pytest
from fake_engine import running, stop

from devenv.errors import PortConflictError
from devenv.stack import usecases as stack


def test_up_starts_the_selection_waits_and_reports(fake_context, fake_engine):
    ctx = fake_context()
    result = stack.up(ctx, ["cache"])
    assert result.started and result.services == ("redis",)
    assert [(r.service, r.state, r.port) for r in result.rows] == \
        [("redis", "ready", fake_context.ports["DEVENV_REDIS_PORT"])]
    assert fake_engine.calls == [("up", (("redis",), False))]
    assert "starting redis" in fake_context.notes
    state = json.loads((ctx.project_dir / ".devenv" / "state.json").read_text())
    assert state["projects"]["unit"]["containers"] == {"redis": running(fake_engine)["redis"].id}


def test_a_second_up_is_already_up_to_date_and_touches_nothing(fake_context, fake_engine):
    ctx = fake_context()
    stack.up(ctx, ["cache"])
    ids = {n: c.id for n, c in running(fake_engine).items()}
    again = stack.up(ctx, ["cache"])
    assert not again.started
    assert [call for call in fake_engine.calls if call[0] == "up"] == \
        [("up", (("redis",), False))]  # no second compose call
    assert {n: c.id for n, c in running(fake_engine).items()} == ids


def test_a_stopped_container_is_started_again(fake_context, fake_engine):
    ctx = fake_context()
    stack.up(ctx, ["cache"])
    stop(fake_engine, "redis")
    assert stack.up(ctx, ["cache"]).started


def test_a_port_taken_after_planning_moves_only_that_service(fake_context, fake_engine):
    ctx = fake_context()
    taken = fake_context.ports["DEVENV_PROMETHEUS_PORT"]
    fake_engine.race_ports.add(taken)
    result = stack.up(ctx, ["cache", "metrics"])
    ports = {r.service: r.port for r in result.rows}
    assert ports["redis"] == fake_context.ports["DEVENV_REDIS_PORT"]
    assert ports["prometheus"] != taken
    assert f"prometheus: {taken} was taken after planning; moving it" in fake_context.notes
    assert [r.state for r in result.rows] == ["ready", "ready"]
    # the file was rendered again with the new port before the retry
    compose = (ctx.project_dir / "compose" / "docker-compose.yml").read_text()
    assert f'published: "{ports["prometheus"]}"' in compose
    assert len([c for c in fake_engine.calls if c[0] == "up"]) == 2


def test_a_port_that_keeps_being_taken_is_exit_5_naming_it(fake_context, fake_engine):
    ctx = fake_context()
    fake_engine.always_race = True
    with pytest.raises(PortConflictError) as info:
        stack.up(ctx, ["cache"])
    assert info.value.exit_code == 5 and "kept being taken" in info.value.message
    assert len([c for c in fake_engine.calls if c[0] == "up"]) == 1 + stack.RACE_RETRIES
    assert not running(fake_engine)


def test_a_changed_file_of_a_running_service_sends_its_reload_signal(fake_context,
                                                                      fake_engine):
    ctx = fake_context()
    stack.up(ctx, ["metrics"])
    prometheus = running(fake_engine)["prometheus"]
    # the API joins: Prometheus' targets change, it rereads them on SIGHUP, no restart
    fake_engine.images.add("devenv-test/base:bookworm")
    ctx = fake_context(DEVENV_API_IMAGE="team/api:1")
    fake_engine.images.add("team/api:1")
    stack.up(ctx, ["api"])
    assert ("signal", (prometheus.id, "SIGHUP")) in fake_engine.calls
    assert running(fake_engine)["prometheus"].id == prometheus.id


def test_down_removes_the_project_and_keeps_the_ports_remembered(fake_context, fake_engine):
    ctx = fake_context()
    stack.up(ctx, ["cache"])
    assert stack.down(ctx).services == ["redis"]
    assert not running(fake_engine)
    assert ("down", ("unit", False)) in fake_engine.calls
    state = json.loads((ctx.project_dir / ".devenv" / "state.json").read_text())
    entry = state["projects"]["unit"]
    assert entry["containers"] == {} and "redis" in entry["ports"]


def test_a_service_from_devenv_toml_comes_up_like_a_built_in_one(fake_context, fake_engine):
    ctx = fake_context()
    (ctx.project_dir / "devenv.toml").write_text(
        '[services.mail]\nimage = "mail:1"\nport = 1025\nhost_port = '
        f'{fake_context.ports["DEVENV_API_PORT"] + 11}\nprobe = "http:/livez"\n'
        'needs = ["cache"]\n')
    fake_engine.images.add("mail:1")
    result = stack.up(ctx, ["mail"])
    assert result.services == ("redis", "mail")
    assert [r.state for r in result.rows] == ["ready", "ready"]
    assert result.rows[1].url == f"http://127.0.0.1:{fake_context.ports['DEVENV_API_PORT'] + 11}"
