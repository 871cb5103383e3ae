"""Tunnel ports by the services' planner, and the replan when a port is taken at the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.config.state import Memory
from devenv.context import Context
from devenv.errors import PortConflictError
from devenv.ports.plan import Holder
from devenv.tunnels import usecases as tunnel_stack
from devenv.tunnels.runtime import TunnelRecord
from devenv.tunnels.ssh_failures import PortRaceError
from devenv.tunnels.tables import TunnelSpec

SPEC = TunnelSpec(name="prod-db", via="bastion", target_host="prod-db.internal",
                  target_port=5432, kind="postgres", production=True)
LOCAL_PG = {5432: Holder("own", "this project's postgres", "postgres")}


def test_never_the_local_postgres_port_and_the_reason_is_said():
    choice = tunnel_stack.plan_tunnel_port(SPEC, LOCAL_PG, {}, {})
    assert choice.port == 5433
    assert choice.describe() == ("tunnel prod-db: 5432 is taken by this project's postgres, "
                                 "using 5433")


def test_sticky_and_reserved_ports():
    remembered = {"prod-db": Memory(6000, 5432)}
    assert tunnel_stack.plan_tunnel_port(SPEC, LOCAL_PG, {}, remembered).port == 6000
    reserved = {5433: "this project's redis (not running now)"}
    choice = tunnel_stack.plan_tunnel_port(SPEC, LOCAL_PG, reserved, {})
    assert choice.port == 5434


def _record(port: int) -> TunnelRecord:
    return TunnelRecord(name="prod-db", path=Path("/x"), port=port, state="up",
                        supervisor_pid=1, ssh_pid=2, restarts=0, since=0.0, last_error="",
                        meta={})


@pytest.fixture
def context(tmp_path) -> tuple[Context, list[str]]:
    said: list[str] = []
    environ = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    return Context(project_dir=tmp_path, environ=environ, notify=said.append), said


def test_a_port_taken_at_the_start_is_planned_again(context, monkeypatch):
    ctx, said = context
    tried: list[int] = []

    def start(spec, port, *args, **kwargs):
        tried.append(port)
        if len(tried) == 1:
            raise PortRaceError(port, "bind: Address already in use")
        return _record(port)

    monkeypatch.setattr(tunnel_stack, "start_tunnel", start)
    record, choice = tunnel_stack._start_one(ctx, ctx.settings(), SPEC, None, {}, Path("/x"),
                                             "ssh")
    assert len(tried) == 2 and tried[1] != tried[0]
    assert record.port == choice.port == tried[1]
    assert any("was taken after planning" in line and "planning again" in line
               for line in said)


def test_a_port_taken_every_time_ends_in_exit_5(context, monkeypatch):
    ctx, _ = context

    def start(spec, port, *args, **kwargs):
        raise PortRaceError(port, "bind: Address already in use")

    monkeypatch.setattr(tunnel_stack, "start_tunnel", start)
    with pytest.raises(PortConflictError) as caught:
        tunnel_stack._start_one(ctx, ctx.settings(), SPEC, None, {}, Path("/x"), "ssh")
    assert caught.value.exit_code == 5 and "local_port" in caught.value.hint
