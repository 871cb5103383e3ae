from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from devenv.config.settings import load_settings
from devenv.engine import Container, Published
from devenv.live.status import (
    app_env,
    docker_time,
    make_row,
    published_host,
    published_port,
    url_host,
)
from devenv.probes import probe_redis


def test_docker_times_with_nanoseconds():
    assert docker_time("1970-01-01T00:01:40.5Z") == 100.5
    assert docker_time("2026-11-26T10:00:00.123456789Z") > 1.7e9
    for bad in ("", "yesterday", "2026-11-26T10:00:00.12ab", "0001-01-01T00:00:00Z "):
        with pytest.raises(ValueError):
            docker_time(bad)


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


#: every kind of DEVENV_BIND value, and where a host app (and the probe) reaches it
BINDS = [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "[::1]"),
         ("::1", "[::1]"), ("127.0.0.2", "127.0.0.2"), ("0:0::0", "[::1]")]


@pytest.mark.parametrize("bind, host", BINDS)
def test_every_bind_is_probed_and_reported_where_it_listens(tmp_path, bind, host):
    """A listener bound as Docker publishes (`::` on IPv6 only) answers the probe at the
    reported URL for every accepted bind value."""
    settings = load_settings(tmp_path, {"DEVENV_BIND": bind}, {})
    assert settings.url_host == host
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family) as listener:
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind((bind, 0))
        listener.listen()
        port = listener.getsockname()[1]
        threading.Thread(target=pong, args=(listener,), daemon=True).start()
        row = make_row(settings, "redis", url_host(settings, None), port, "starting")
        assert row.url == f"redis://{host}:{port}"
        assert probe_redis(row.host, row.port).ok
        assert app_env(settings, [row])["REDIS_URL"] == f"redis://{host}:{port}"


def pong(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.recv(64)
        conn.sendall(b"+PONG\r\n")


def test_a_stack_is_reached_where_docker_bound_it_not_where_env_says_now(tmp_path):
    settings = load_settings(tmp_path, {}, {})  # .env says 127.0.0.1 now
    c = Container("id", "x", "cirkelline", "redis", "running", "", "Up",
                  (Published("::", 6380, 6379),))
    published = published_port(settings, c, "redis")
    assert published_host(settings, "127.0.0.1", None, published) == "[::1]"
    both = Container("id", "x", "cirkelline", "redis", "running", "", "Up",
                     (Published("::", 6380, 6379), Published("127.0.0.1", 6380, 6379)))
    assert published_port(settings, both, "redis").host_ip == "127.0.0.1"
    # a remote engine: its host name, whatever it bound
    assert published_host(settings, "box", "box", published) == "box"


class FakeEngine:
    remote_host = None

    def __init__(self, containers):
        self._containers = containers

    def containers(self, project=None, all=True):
        return [c for c in self._containers if project is None or c.project == project]

    def port_bindings(self, c):
        return [7001] if c.service == "postgres" else []

    def inspect(self, container_id):
        return {"State": {"ExitCode": 137}, "RestartCount": 0}


def test_a_service_the_last_up_started_is_mentioned_when_exited_or_gone(tmp_path):
    from devenv.config.state import Memory, ProjectState, StateFile
    from devenv.live.status import live_rows, status_rows

    settings = load_settings(tmp_path, {}, {})
    StateFile(settings.state_dir).save("cirkelline", ProjectState(
        ports={"redis": Memory(6390, 6379)},
        containers={"postgres": "a", "redis": "b", "adminer": "c"}))
    engine = FakeEngine([
        Container("a", "cirkelline-postgres-1", "cirkelline", "postgres", "exited", "",
                  "Exited (137)", ()),
        Container("c", "cirkelline-adminer-1", "cirkelline", "adminer", "running", "", "Up",
                  (Published("127.0.0.1", 8080, 8080),)),
    ])
    rows = {r.service: r for r in live_rows(engine, settings, check=False, missing=True)}
    assert list(rows) == ["postgres", "redis", "adminer"]
    assert not rows["postgres"].running and rows["postgres"].port == 7001
    assert rows["postgres"].state.startswith("exited (code 137)")
    assert not rows["redis"].running and rows["redis"].port == 6390
    assert rows["redis"].state.startswith("gone")
    assert rows["adminer"].running
    assert list(app_env(settings, list(rows.values()))) == ["ADMINER_URL"]
    # restart's view (missing=False) is unchanged: only what runs
    assert [r.service for r in live_rows(engine, settings, check=False)] == ["adminer"]
    status = {r.service: r for r in status_rows(engine, settings)}
    assert list(status) == ["postgres", "redis", "adminer"]
    assert status["redis"].state == "gone" and status["postgres"].exit_code == 137


@pytest.mark.parametrize("code, setting", [
    ("28P01", "DEVENV_POSTGRES_PASSWORD (or DEVENV_POSTGRES_USER) changed"),
    ("3D000", "DEVENV_POSTGRES_DB changed"),
])
def test_a_refused_login_names_the_setting_and_both_ways_out(code, setting):
    from devenv.live.status import login_error, login_refused
    from devenv.probes import LoginResult

    settings = load_settings(Path("/nonexistent"), {}, {})
    error = login_error(settings, "postgres",
                        LoginResult(False, f"the server said no ({code})", code))
    assert error.exit_code == 3 and setting in error.hint
    assert "back to the old value" in error.hint and "devenv down --volumes" in error.hint
    assert error.hint.startswith("PostgreSQL keeps the user, password and database")
    settings_row = make_row(settings, "postgres", "127.0.0.1", 5432,
                            error.message.removeprefix("postgres "))
    assert login_refused([settings_row]) == ("postgres", code)


def test_container_output_masks_a_secret_cut_in_two_by_a_lines_limit(tmp_path):
    """A line past its limit ends in a note; the secret the cut split in two (its head
    before the note) is masked too, in a followed log and in the last lines alike."""
    from devenv.engine.lines import LineSplitter
    from devenv.live.output import ContainerOutput

    secret = "Zq3-x_9LkP0aQ2rT5vW8"
    settings = load_settings(tmp_path, {"DEVENV_POSTGRES_PASSWORD": secret}, {})
    output = ContainerOutput(settings)
    [cut] = LineSplitter(limit=24).feed(f"data=aaaa {secret} and more\n".encode())
    assert cut.head == "data=aaaa Zq3-x_9LkP0aQ2"
    assert output.mask(cut) == "data=aaaa *** [... cut: the line is longer than 24 bytes]"

    class Engine:
        def logs(self, container_id, tail=20):
            return f"url=postgresql://app:{secret}@db/app\n{cut}\n"

    assert output.last_lines(Engine(), "c1", 10) == (
        "url=postgresql://app:***@db/app\n"
        "data=aaaa *** [... cut: the line is longer than 24 bytes]\n")
