"""Tunnel ports by the services' planner, the replan when a port is taken at the start,
and what a running tunnel shows when devenv.toml changed under it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from devenv.config.state import Memory
from devenv.context import Context
from devenv.errors import PortConflictError, UsageError
from devenv.ports.plan import Holder
from devenv.tunnels import usecases as tunnel_stack
from devenv.tunnels.runtime import TunnelRecord, tunnel_dir
from devenv.tunnels.ssh_failures import PortRaceError
from devenv.tunnels.tables import TunnelSpec, recorded

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


# --- what runs against what devenv.toml declares now ---------------------------------
PROD_TOML = """[tunnels.prod-db]
via = "bastion"
target = "prod-db.internal:5432"
kind = "postgres"
production = true
"""
STAGING_TOML = """[tunnels.prod-db]
via = "bastion"
target = "staging-db.internal:5432"
kind = "postgres"
production = false
"""
READ_ONLY = "options=-c%20default_transaction_read_only%3Don"


@pytest.fixture
def opened(tmp_path):
    """A project whose prod-db tunnel was opened to production, with a stand-in for its
    supervisor (a process of this test's, so its pid and start time are real)."""
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    said: list[str] = []
    ctx = Context(project_dir=tmp_path, notify=said.append,
                  environ={"DOCKER_HOST": "unix:///nonexistent/docker.sock",
                           "DEVENV_PROJECT": "tun"})
    (tmp_path / "devenv.toml").write_text(PROD_TOML)

    def write_record(meta: dict | None = None) -> None:
        settings = ctx.settings()
        folder = tunnel_dir(settings.state_dir, settings.project)
        folder.mkdir(parents=True, exist_ok=True)
        spec = tunnel_stack._declared(settings)["prod-db"]
        if meta is None:
            meta = {"name": "prod-db", "project": "tun", **recorded(spec, "")}
        (folder / "prod-db.json").write_text(json.dumps({
            **meta, "supervisor_pid": stand_in.pid,
            "supervisor_started": psutil.Process(stand_in.pid).create_time(),
            "ssh_pid": None, "port": 15433, "state": "up", "restarts": 0,
            "since": time.time(), "last_error": ""}))

    write_record()
    try:
        yield ctx, said, write_record, stand_in
    finally:
        stand_in.kill()
        stand_in.wait()


def test_a_tunnel_shows_what_runs_and_says_that_devenv_toml_changed(opened):
    """The declaration moved from production to staging while the tunnel ran: what is
    shown is what runs (production, read-only URL), and the change is named."""
    ctx, _, _, _ = opened
    (ctx.project_dir / "devenv.toml").write_text(STAGING_TOML)
    (row,) = tunnel_stack.rows(ctx, ctx.settings(), probe=False)
    assert (row.target, row.production, row.label) == ("prod-db.internal:5432", True,
                                                       "prod-db PROD")
    assert row.url.endswith(READ_ONLY) and row.state == "up"
    assert row.changed == ("target prod-db.internal:5432 -> staging-db.internal:5432; "
                           "production true -> false")
    from devenv.report import format_tunnels

    assert "[devenv.toml changed: target prod-db.internal:5432 -> " in format_tunnels([row])


def test_ports_env_and_psql_refuse_a_tunnel_whose_declaration_changed(opened):
    ctx, _, _, _ = opened
    assert tunnel_stack.app_env(ctx, ctx.settings())["PROD_DB_URL"].endswith(READ_ONLY)
    (ctx.project_dir / "devenv.toml").write_text(STAGING_TOML)
    for call in (lambda: tunnel_stack.app_env(ctx, ctx.settings()),
                 lambda: tunnel_stack.psql(ctx, "prod-db", ["-c", "select 1"])):
        with pytest.raises(UsageError) as caught:
            call()
        assert caught.value.message == (
            "tunnel prod-db runs bastion -> prod-db.internal:5432, but devenv.toml changed "
            "since it was opened: target prod-db.internal:5432 -> staging-db.internal:5432; "
            "production true -> false")
        assert caught.value.hint.startswith("reopen it as declared: devenv tunnel up prod-db")
        assert caught.value.exit_code == 2


def test_tunnel_up_reopens_a_tunnel_whose_declaration_changed(opened, monkeypatch):
    ctx, said, _, stand_in = opened
    (ctx.project_dir / "devenv.toml").write_text(STAGING_TOML)
    started: list[TunnelSpec] = []

    def start(spec, port, *args, meta, **kwargs):
        started.append(spec)
        assert meta["target"] == "staging-db.internal:5432" and meta["production"] is False
        return replace(_record(port), meta=meta)

    monkeypatch.setattr(tunnel_stack, "start_tunnel", start)
    (row,) = tunnel_stack.up(ctx, ["prod-db"])
    assert [s.target for s in started] == ["staging-db.internal:5432"]
    assert stand_in.wait(10) is not None  # the old supervisor was ended (pid + start time)
    assert any("devenv.toml changed since it was opened (target prod-db.internal:5432 -> "
               "staging-db.internal:5432; production true -> false); reopening" in line
               for line in said), said
    assert (row.target, row.production) == ("staging-db.internal:5432", False)
    assert READ_ONLY not in row.url


def test_tunnel_up_keeps_a_tunnel_that_runs_its_declaration(opened, monkeypatch):
    ctx, said, _, stand_in = opened
    monkeypatch.setattr(tunnel_stack, "start_tunnel", None)  # must not be called
    (row,) = tunnel_stack.up(ctx, ["prod-db"])
    assert row.changed == "" and row.production and stand_in.poll() is None
    assert "tunnel prod-db: already up on 127.0.0.1:15433" in said


def test_a_record_that_does_not_say_everything_is_a_change(opened):
    """Opened by an earlier devenv (no ssh_options in its record), or a record whose
    declaration does not check: nobody can say what runs, so it is PROD and refused."""
    ctx, _, write_record, _ = opened
    write_record({"name": "prod-db", "kind": "postgres", "production": True, "via": "bastion",
                  "target": "prod-db.internal:5432", "path": "/", "configured": 5432})
    (row,) = tunnel_stack.rows(ctx, ctx.settings(), probe=False)
    assert row.changed.startswith("opened without a record of its ssh_options")
    write_record({"via": "bastion", "target": "prod-db.internal:5432\u00b2"})
    (row,) = tunnel_stack.rows(ctx, ctx.settings(), probe=False)
    assert (row.target, row.url, row.production) == ("?", "", True)
    assert row.changed == "its record does not say what it runs"
    with pytest.raises(UsageError):
        tunnel_stack.app_env(ctx, ctx.settings())


def test_a_running_tunnel_no_longer_declared_has_no_url_to_hand_out(opened):
    ctx, _, _, _ = opened
    (ctx.project_dir / "devenv.toml").write_text(
        '[tunnels.other]\nvia = "b"\ntarget = "x:1"\n')
    rows = {r.name: r for r in tunnel_stack.rows(ctx, ctx.settings(), probe=False)}
    assert rows["prod-db"].production and not rows["prod-db"].declared
    with pytest.raises(UsageError, match="devenv.toml no longer declares it") as caught:
        tunnel_stack.app_env(ctx, ctx.settings())
    assert caught.value.hint == "close it: devenv tunnel down prod-db"


def test_a_table_that_does_not_check_cannot_vouch_for_a_running_tunnels_url(opened):
    ctx, said, _, _ = opened
    (ctx.project_dir / "devenv.toml").write_text(PROD_TOML.replace("5432", "5432\u00b2"))
    with pytest.raises(UsageError, match="`target` = 'prod-db.internal:5432\u00b2'"):
        tunnel_stack.app_env(ctx, ctx.settings())
    (row,) = tunnel_stack.rows(ctx, ctx.settings(), probe=False, declared_only_if_running=True)
    assert row.production and row.stale  # `ports` still shows what runs, with a warning
    assert any("`target`" in line for line in said)
