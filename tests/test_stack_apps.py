"""`up`, `restart` and `down` with host apps over the fake engine, the apps real processes."""

from __future__ import annotations

import json
import socket

from fake_engine import running

from devenv.hostapps.runtime import read_records
from devenv.stack import usecases as stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def declare(ctx, needs: str = "") -> int:
    port = free_port()
    (ctx.project_dir / "devenv.toml").write_text(
        "[host_apps.web]\n"
        "command = \"env > seen.env; exec python3 -m http.server $PORT --bind 127.0.0.1\"\n"
        f"port = {port}\nprobe = \"http:/\"\nneeds = [{needs}]\n")
    return port


def test_up_starts_an_app_after_what_it_needs_with_its_urls(fake_context, fake_engine):
    ctx = fake_context()
    port = declare(ctx, '"cache"')
    try:
        result = stack.up(ctx, ["web"])
        assert [(r.service, r.state) for r in result.rows] == [("redis", "ready"),
                                                               ("web", "ready")]
        assert "adding redis (needed by web)" in fake_context.notes
        seen = (ctx.project_dir / "seen.env").read_text()
        redis = fake_context.ports["DEVENV_REDIS_PORT"]
        assert f"REDIS_URL=redis://127.0.0.1:{redis}\n" in seen and f"PORT={port}\n" in seen
        state = json.loads((ctx.project_dir / ".devenv" / "state.json").read_text())
        assert state["projects"]["unit"]["ports"]["web"] == {"port": port, "configured": port}
        down = stack.down(ctx)
        assert down.services == ["redis", "web"]
        assert read_records(ctx.project_dir / ".devenv", "unit") == {}
    finally:
        stack.down(ctx)


def test_up_of_an_app_alone_starts_no_container(fake_context, fake_engine):
    ctx = fake_context()
    declare(ctx)
    try:
        result = stack.up(ctx, ["web"])
        assert [r.service for r in result.rows] == ["web"]
        assert not [c for c in fake_engine.calls if c[0] == "up"] and not running(fake_engine)
    finally:
        stack.down(ctx)


def test_restart_brings_a_killed_app_back_on_its_port(fake_context, fake_engine):
    import os
    import signal
    import time

    ctx = fake_context()
    port = declare(ctx)
    try:
        stack.up(ctx, ["web"])
        record = read_records(ctx.project_dir / ".devenv", "unit")["web"]
        os.kill(record.meta["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and \
                read_records(ctx.project_dir / ".devenv", "unit")["web"].running:
            time.sleep(0.05)
        assert read_records(ctx.project_dir / ".devenv", "unit")["web"].state == "exited"
        rows = stack.restart(ctx, ["web"])
        assert [(r.service, r.port, r.state) for r in rows] == [("web", port, "ready")]
    finally:
        stack.down(ctx)


def test_ports_env_of_rows_with_a_host_app_holds_the_services_urls_only(tmp_path):
    from devenv.config.settings import load_settings
    from devenv.live.running import app_env, app_row, make_row

    (tmp_path / "devenv.toml").write_text('[host_apps.frontend]\ncommand = "vite"\n')
    settings = load_settings(tmp_path, {}, {})
    rows = [make_row(settings, "redis", "127.0.0.1", 6380, "ready"),
            app_row(settings, "frontend", "127.0.0.1", 3001, "ready")]
    assert app_env(settings, rows) == {"REDIS_URL": "redis://127.0.0.1:6380"}


def test_ports_device_lists_a_running_mobile_app_at_the_lan_address(tmp_path):
    import os

    from devenv.config.settings import load_settings
    from devenv.hostapps.runtime import app_dir, read_record, start_app, stop_app
    from devenv.live.status import _mobile_apps

    (tmp_path / "devenv.toml").write_text('[host_apps.metro]\ncommand = "sleep 30"\n'
                                          '[host_apps.frontend]\ncommand = "sleep 30"\n')
    settings = load_settings(tmp_path, {"DEVENV_PROJECT": "p"}, {})
    folder = app_dir(settings.state_dir, "p")
    started = [start_app(name, "sleep 30", tmp_path, dict(os.environ), {}, port, folder, [])[1]
               for name, port in (("metro", 8082), ("frontend", 3001))]
    try:
        urls = _mobile_apps(settings, "192.168.1.20")
        assert [(u.target, u.url) for u in urls] == [("app:metro", "http://192.168.1.20:8082")]
    finally:
        for record in started:
            stop_app(read_record(record.path) or record, grace=1)
