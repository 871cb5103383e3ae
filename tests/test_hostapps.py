"""Host apps as real processes (sh and python3, no Docker): start, wait, fail, stop.

Each fault ends in one error with the app's last log lines and no process left behind, and
nothing devenv did not start is ever signalled."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devenv.config.settings import load_settings
from devenv.errors import EXIT_NOT_READY, EXIT_USAGE, NotReadyError, ProjectFileError
from devenv.hostapps.runtime import app_dir, read_record, read_records, stop_app
from devenv.stack.apps import AppStarter, check_cwds, stop_all

SERVE = "exec python3 -m http.server $PORT --bind 127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(tmp_path: Path, command: str, probe: str = "http:/", timeout: str = "10",
                 **env: str):
    port = free_port()
    text = f"[host_apps.web]\ncommand = {json.dumps(command)}\nport = {port}\n" \
           f"probe = \"{probe}\"\n"
    (tmp_path / "devenv.toml").write_text(text)
    return load_settings(tmp_path, {"DEVENV_PROJECT": "p", "DEVENV_WAIT_TIMEOUT": timeout,
                                    **env}, {})


def starter(settings, notes=None, replan=None, on_wait=None, shared=None):
    said = notes if notes is not None else []
    return AppStarter(settings, said.append, "127.0.0.1", shared or {},
                      replan or (lambda name, port: pytest.fail("no replan expected")),
                      on_wait=on_wait)


def group_alive(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                rest = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if rest[2] == str(pgid) and rest[0] not in ("Z", "X"):
                return True
    return False


@pytest.fixture
def cleanup():
    made = []
    yield made.append
    for settings in made:
        stop_all(settings)


def test_an_app_starts_on_its_port_with_port_and_the_stacks_urls(tmp_path, cleanup):
    settings = settings_for(tmp_path, "env > seen.env; " + SERVE)
    cleanup(settings)
    port = settings.catalog.apps["web"].port
    rows = starter(settings, shared={"REDIS_URL": "redis://127.0.0.1:6379"}).start(
        ["web"], {"web": port})
    assert rows[0].url == f"http://127.0.0.1:{port}" and rows[0].state == "ready"
    seen = (tmp_path / "seen.env").read_text()
    assert f"PORT={port}\n" in seen and "REDIS_URL=redis://127.0.0.1:6379\n" in seen
    record = read_records(settings.state_dir, "p")["web"]
    assert record.running and os.getpgid(record.meta["pid"]) == record.pgid
    assert oct(app_dir(settings.state_dir, "p").stat().st_mode)[-3:] == "700"


def test_a_second_start_leaves_an_unchanged_app_alone_and_says_why_it_restarts(
        tmp_path, cleanup):
    settings = settings_for(tmp_path, SERVE)
    cleanup(settings)
    port = settings.catalog.apps["web"].port
    starter(settings, shared={"REDIS_URL": "redis://a:1"}).start(["web"], {"web": port})
    pid = read_record(app_dir(settings.state_dir, "p") / "web.json").meta["pid"]
    notes: list[str] = []
    starter(settings, notes, shared={"REDIS_URL": "redis://a:1"}).start(["web"], {"web": port})
    assert notes == [] and read_records(settings.state_dir, "p")["web"].meta["pid"] == pid
    starter(settings, notes, shared={"REDIS_URL": "redis://a:2"}).start(["web"], {"web": port})
    assert "web: restarting (REDIS_URL changed)" in notes
    assert read_records(settings.state_dir, "p")["web"].meta["pid"] != pid


@pytest.mark.parametrize(("command", "words"), [
    ("no-such-devserver --port $PORT", "not found"),
    ("echo boom; exit 3", "boom"),
])
def test_an_app_that_ends_at_start_is_exit_3_with_its_last_log_lines(tmp_path, command, words):
    settings = settings_for(tmp_path, command)
    with pytest.raises(NotReadyError) as caught:
        starter(settings).start(["web"], {"web": settings.catalog.apps["web"].port})
    assert caught.value.exit_code == EXIT_NOT_READY
    assert "web stopped while devenv waited" in caught.value.message
    assert "exited (code" in caught.value.detail and words in caught.value.detail
    assert read_records(settings.state_dir, "p") == {}


def test_an_app_that_never_opens_its_port_is_stopped(tmp_path):
    settings = settings_for(tmp_path, "sleep 60.11 & wait", timeout="1.5")
    notes: list[str] = []
    with pytest.raises(NotReadyError) as caught:
        starter(settings, notes).start(["web"], {"web": settings.catalog.apps["web"].port})
    assert "did not answer on its port" in caught.value.message
    assert read_records(settings.state_dir, "p") == {}
    assert not any("sleep 60.11" in _cmdline(pid) for pid in _pids())


def test_an_app_on_another_port_is_named(tmp_path):
    other = free_port()
    settings = settings_for(tmp_path, f"exec python3 -m http.server {other} --bind 127.0.0.1",
                            timeout="1.5")
    with pytest.raises(NotReadyError) as caught:
        starter(settings).start(["web"], {"web": settings.catalog.apps["web"].port})
    assert f"it listens on {other}, not on $PORT" in caught.value.detail


def test_a_port_taken_between_plan_and_start_moves_the_app(tmp_path, cleanup):
    settings = settings_for(tmp_path, SERVE)
    cleanup(settings)
    planned, spare = free_port(), free_port()
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", planned))
        thief.listen()
        moved: list[tuple[str, int]] = []
        rows = starter(settings, replan=lambda n, p: moved.append((n, p)) or spare).start(
            ["web"], {"web": planned})
    assert moved == [("web", planned)] and rows[0].port == spare


def test_ctrl_c_during_the_wait_stops_the_app(tmp_path):
    settings = settings_for(tmp_path, "sleep 60.12 & wait")

    def interrupt(event):
        if event.state == "waiting":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        starter(settings, on_wait=interrupt).start(["web"],
                                                   {"web": settings.catalog.apps["web"].port})
    assert read_records(settings.state_dir, "p") == {}
    assert not any("sleep 60.12" in _cmdline(pid) for pid in _pids())


def test_stop_kills_an_app_that_ignores_sigterm_after_the_grace(tmp_path):
    folder = app_dir(tmp_path / ".devenv", "p")
    from devenv.hostapps.runtime import start_app

    _proc, record = start_app("web", "trap '' TERM; sleep 60 & wait", tmp_path,
                              dict(os.environ), {}, 4000, folder, [])
    assert record.running
    began = time.monotonic()
    assert stop_app(record, grace=0.5) == "killed"
    assert time.monotonic() - began < 5 and not group_alive(record.pgid)


def test_a_reused_pid_or_a_damaged_record_is_never_signalled(tmp_path):
    settings = settings_for(tmp_path, SERVE)
    folder = app_dir(settings.state_dir, "p")
    folder.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 start_new_session=True)
    try:
        (folder / "web.json").write_text(json.dumps({
            "schema": "devenv.hostapp/1", "port": 4000, "state": "running",
            "pgid": bystander.pid, "pid": bystander.pid, "started": 1.0,
            "supervisor_pid": bystander.pid, "supervisor_started": 1.0}))
        record = read_record(folder / "web.json")
        assert record is not None and record.state == "dead"
        assert stop_app(record, grace=0.2) == "not running"
        (folder / "web.json").write_text("{not json")
        damaged = read_record(folder / "web.json")
        assert damaged is not None and damaged.state == "damaged"
        assert stop_app(damaged, grace=0.2) == "not running"
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_damaged_record_is_said_and_the_app_starts_afresh(tmp_path, cleanup):
    settings = settings_for(tmp_path, SERVE)
    cleanup(settings)
    folder = app_dir(settings.state_dir, "p")
    folder.mkdir(parents=True)
    (folder / "web.json").write_text('{"port": "x"}')
    notes: list[str] = []
    starter(settings, notes).start(["web"], {"web": settings.catalog.apps["web"].port})
    assert any("record under .devenv/ was damaged" in n for n in notes)


def test_the_log_masks_secrets_and_is_bounded(tmp_path, monkeypatch):
    import devenv.hostapps.runtime as runtime

    monkeypatch.setattr(runtime, "LOG_LIMIT", 4096)
    folder = app_dir(tmp_path / ".devenv", "p")
    secret = "s3cr3t-Pa55word!"
    command = (f"echo 'url postgresql://u:{secret}@db/x'; "
               "i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxx; i=$((i+1)); done")
    _proc, record = runtime.start_app("web", command, tmp_path, dict(os.environ), {}, 4000,
                                      folder, [secret])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and read_record(record.path).state != "exited":
        time.sleep(0.05)
    log, older = folder / "web.log", folder / "web.log.1"
    assert log.stat().st_size <= 4096 + 200 and older.exists()
    text = older.read_text() + log.read_text()
    assert secret not in text and "line-399-" in text
    assert oct(log.stat().st_mode)[-3:] == "600"


def test_a_cwd_that_does_not_exist_is_exit_2_before_anything_starts(tmp_path):
    (tmp_path / "devenv.toml").write_text(
        '[host_apps.frontend]\ncommand = "npm start"\ncwd = "frontend"\n')
    settings = load_settings(tmp_path, {}, {})
    with pytest.raises(ProjectFileError) as caught:
        check_cwds(settings, ["frontend"])
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.message.startswith("devenv.toml: [host_apps.frontend] cwd:")


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if stat[0] in ("Z", "X"):
            return ""
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return ""


def test_what_an_app_left_in_its_group_ends_with_it(tmp_path):
    """A dev server's helper (esbuild beside Vite) must not outlive the server."""
    from devenv.hostapps.runtime import start_app

    folder = app_dir(tmp_path / ".devenv", "p")
    _proc, record = start_app("web", "sleep 61.25 & echo started; exit 4", tmp_path,
                              dict(os.environ), {}, 4000, folder, [])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (group_alive(record.pgid)
                                           or read_record(record.path).state != "exited"):
        time.sleep(0.05)
    assert read_record(record.path).exit_code == 4
    assert not any("sleep 61.25" in _cmdline(pid) for pid in _pids())
