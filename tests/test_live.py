from __future__ import annotations

from devenv.live import _parse_time, app_env, make_row, url_host
from devenv.settings import load_settings


def test_docker_times_with_nanoseconds():
    assert _parse_time("1970-01-01T00:01:40.5Z") == 100.5
    assert _parse_time("2026-11-26T10:00:00.123456789Z") > 1.7e9


def test_url_host_for_binds_and_remote_engines(tmp_path):
    local = load_settings(tmp_path, {}, {})
    assert url_host(local, None) == "127.0.0.1"
    assert url_host(local, "build-box") == "127.0.0.1"  # loopback there: a tunnel's job
    wide = load_settings(tmp_path, {"DEVENV_BIND": "0.0.0.0"}, {})
    assert url_host(wide, "build-box") == "build-box"
    v6 = load_settings(tmp_path, {"DEVENV_BIND": "::1"}, {})
    assert url_host(v6, None) == "[::1]"


def test_app_env_has_real_credentials_and_ports(tmp_path):
    settings = load_settings(tmp_path, {"DEVENV_POSTGRES_PASSWORD": "p@ss"}, {})
    rows = [make_row(settings, "postgres", "127.0.0.1", 5433, "ready"),
            make_row(settings, "redis", "::1", 6380, "ready")]
    assert rows[0].url == "postgresql://postgres:***@127.0.0.1:5433/cirkelline_agents"
    assert app_env(settings, rows) == {
        "DATABASE_URL": "postgresql://postgres:p%40ss@127.0.0.1:5433/cirkelline_agents",
        "REDIS_URL": "redis://[::1]:6380",
    }
