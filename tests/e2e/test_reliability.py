"""Bad input, faults and data on a real engine: each behaviour deliberate and shown."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from checks import psql, redis_cmd
from conftest import devenv_command, popen_paused, tmpfs
from test_up import env_lines

pytestmark = pytest.mark.e2e
SPECIAL = 'p@ss$w"o\'rd #1:x{y}\\z'


def override(project, service: str, old: str, new: str) -> None:
    """Put a changed copy of a built-in service template in the project's templates/."""
    builtin = Path(__file__).resolve().parents[2] / "templates" / "services" / f"{service}.yml.j2"
    target = project.path / "templates" / "services" / f"{service}.yml.j2"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = builtin.read_text()
    assert old in text
    target.write_text(text.replace(old, new))


def popen(project, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([devenv_command(), *args], cwd=project.path,
                            env={**os.environ, **project.env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


# --- bad input ------------------------------------------------------------------------
def test_special_characters_reach_the_service_exactly(project):
    project.env.update(DEVENV_POSTGRES_PASSWORD=SPECIAL, DEVENV_POSTGRES_USER="app user",
                       DEVENV_POSTGRES_DB="db: #1")
    up = project.run("up", "--only", "db,api")
    assert SPECIAL not in up.stdout + up.stderr
    url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
    assert psql(url, "select current_user || '|' || current_database()") == "app user|db: #1"
    result = subprocess.run(["psql", "-X", "-tA", "-h", "127.0.0.1", "-p",
                             str(project.ports()["postgres"]["port"]), "-U", "app user",
                             "-d", "db: #1", "-c", "select 1"],
                            env={**os.environ, "PGPASSWORD": SPECIAL}, capture_output=True,
                            text=True)
    assert result.stdout.strip() == "1", result.stderr
    compose = (project.path / "compose" / "docker-compose.yml")
    assert oct(compose.stat().st_mode & 0o777) == "0o600"
    assert project.ports()["api"]["state"] == "ready"


def test_compose_v1_only_is_named(project, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    real = subprocess.run(["sh", "-c", "command -v docker"], capture_output=True,
                          text=True).stdout.strip()
    (fake / "docker").write_text(
        "#!/bin/sh\nif [ \"$1\" = compose ] || [ \"$3\" = compose ] || [ \"$5\" = compose ];"
        " then echo \"docker: 'compose' is not a docker command.\" >&2; exit 1; fi\n"
        f"exec {real} \"$@\"\n")
    (fake / "docker-compose").write_text("#!/bin/sh\necho 'docker-compose version 1.29.2'\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    path = {"PATH": f"{fake}:{os.environ['PATH']}"}
    result = project.run("up", "--only", "cache", check=False, extra_env=path)
    assert result.returncode == 4
    assert "Docker Compose v2 is not installed" in result.stderr
    doctor = project.run("doctor", check=False, extra_env=path)
    assert doctor.returncode == 1 and "only Docker Compose v1" in doctor.stdout


# --- faults -------------------------------------------------------------------------
def test_container_that_exits_fails_the_wait_at_once_with_its_log(project):
    override(project, "redis", 'command: ["redis-server", "--appendonly", "yes"]',
             'command: ["redis-server", "--no-such-directive", "yes"]')
    start = time.monotonic()
    result = project.run("up", "--only", "cache", "--timeout", "60", check=False)
    elapsed = time.monotonic() - start
    assert result.returncode == 3
    assert "redis stopped while devenv waited for it" in result.stderr
    assert "last 20 log lines of redis" in result.stderr
    assert "no-such-directive" in result.stderr  # redis's own complaint, from its log
    assert elapsed < 30, elapsed  # not the 60 s deadline


def test_service_that_never_answers_ends_at_the_timeout_naming_it(project):
    override(project, "redis", 'command: ["redis-server", "--appendonly", "yes"]',
             'command: ["sleep", "600"]')
    start = time.monotonic()
    result = project.run("up", "--only", "cache", "--timeout", "3", check=False)
    elapsed = time.monotonic() - start
    assert result.returncode == 3
    assert "redis did not become ready within 3 s" in result.stderr
    assert "PING:" in result.stderr  # its last probe error
    assert elapsed < 20


def test_secrets_in_a_failing_services_log_are_masked(project):
    project.env["DEVENV_POSTGRES_PASSWORD"] = SPECIAL
    override(project, "redis", 'command: ["redis-server", "--appendonly", "yes"]',
             'environment:\n      SECRET: {{ settings.DEVENV_POSTGRES_PASSWORD | q }}\n'
             '    command: ["sh", "-c", "echo \\"connecting with $$SECRET\\"; exit 3"]')
    result = project.run("up", "--only", "cache", check=False)
    assert result.returncode == 3
    assert "connecting with ***" in result.stderr
    assert SPECIAL not in result.stderr + result.stdout


def test_ctrl_c_exits_130_and_a_rerun_finishes(project, tmp_path):
    seam = tmp_path / "pause"
    proc = popen_paused(project, seam, "up", "--only", "db,cache")
    wait_file(Path(str(seam) + ".plan"))
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - start < 5
    assert "interrupted" in err and "Traceback" not in err
    json.loads((project.path / ".devenv" / "state.json").read_text()) if (
        project.path / ".devenv" / "state.json").exists() else None
    project.run("up", "--only", "db,cache")
    assert set(project.ports()) == {"postgres", "redis"}


def test_ctrl_c_while_waiting_exits_130(project):
    override(project, "redis", 'command: ["redis-server", "--appendonly", "yes"]',
             'command: ["sleep", "600"]')
    proc = popen(project, "up", "--only", "cache")
    deadline = time.monotonic() + 60
    while not any("redis" in c["Names"] for c in project.containers()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - start < 3
    assert "Traceback" not in err


def test_two_ups_at_once_the_second_waits_for_the_first(project, tmp_path):
    seam = tmp_path / "hold"
    first = popen_paused(project, seam, "up", "--only", "cache")
    wait_file(Path(str(seam) + ".plan"))
    second = popen(project, "up", "--only", "cache")
    time.sleep(1.5)
    assert second.poll() is None  # it waits
    Path(str(seam) + ".go").write_text("go")
    _o1, e1 = first.communicate(timeout=120)
    _o2, e2 = second.communicate(timeout=120)
    assert first.returncode == 0, e1
    assert second.returncode == 0, e2
    assert f"waiting for devenv up (pid {first.pid}) to finish" in e2
    assert "already up to date" in e2


def test_corrupt_state_file_is_recovered_with_a_warning(project):
    project.run("up", "--only", "cache")
    (project.path / ".devenv" / "state.json").write_text('{"projects": {"x": ')
    again = project.run("up", "--only", "cache")
    assert "was unreadable" in again.stderr and "set aside" in again.stderr
    assert json.loads((project.path / ".devenv" / "state.json").read_text())["projects"]


@pytest.fixture
def small_mount(tmp_path):
    with tmpfs(tmp_path / "mnt", "256k") as mount:
        yield mount


def test_full_disk_while_rendering_keeps_the_previous_files(project, small_mount):
    project.path = small_mount
    first = project.run("render", "--only", "cache")
    compose = small_mount / "compose" / "docker-compose.yml"
    before = compose.read_text()
    subprocess.run(["dd", "if=/dev/zero", f"of={small_mount}/filler", "bs=4k", "count=1000"],
                   capture_output=True)
    result = project.run("render", check=False)
    assert result.returncode == 1, (first.stdout, result.stderr)
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    assert compose.read_text() == before
    os.unlink(f"{small_mount}/filler")


def test_read_only_project_directory_is_a_clear_error(project, small_mount):
    project.path = small_mount
    project.run("render", "--only", "cache")
    before = (small_mount / "compose" / "docker-compose.yml").read_text()
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    try:
        result = project.run("render", check=False)
        assert result.returncode == 1
        assert "Read-only file system" in result.stderr and "hint:" in result.stderr
        assert (small_mount / "compose" / "docker-compose.yml").read_text() == before
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_mount)], check=True)


# --- data ---------------------------------------------------------------------------
def test_redis_keys_and_rows_survive_down_up_and_a_port_move(project):
    project.run("up", "--only", "db,cache")
    url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
    psql(url, "create table t (v int); insert into t values (1)")
    redis_port = project.ports()["redis"]["port"]
    assert redis_cmd("127.0.0.1", redis_port, "SET", "k", "v") == "+OK"
    project.run("down")
    # the next up finds the old ports taken and moves both: the data follows
    holders = []
    for port in (int(project.env["DEVENV_POSTGRES_PORT"]), redis_port):
        s = socket.socket()
        # the stopped proxy's connections may linger in TIME_WAIT on the port; a listener
        # that reuses the address holds it all the same (docker-proxy binds this way too)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        holders.append(s)
    try:
        project.run("up", "--only", "db,cache")
        rows = project.ports()
        assert rows["redis"]["port"] != redis_port
        url = env_lines(project.run("ports", "--env").stdout)["DATABASE_URL"]
        assert psql(url, "select v from t") == "1"
        assert redis_cmd("127.0.0.1", rows["redis"]["port"], "GET", "k") == "$1\r\nv"
    finally:
        for s in holders:
            s.close()


def test_down_volumes_asks_on_a_terminal(project):
    project.run("up", "--only", "cache")
    pid, fd = pty.fork()
    if pid == 0:  # the child: devenv on a terminal
        os.chdir(project.path)
        os.execve(devenv_command(), [devenv_command(), "down", "--volumes"],
                  {**os.environ, **project.env})
    output = b""
    deadline = time.monotonic() + 30
    while b"[y/N]" not in output and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            output += os.read(fd, 1024)
    assert b"Delete the data volumes of project" in output
    os.write(fd, b"n\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
    os.waitpid(pid, 0)
    assert len(project.containers()) == 1  # nothing removed
    volumes = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True,
                             text=True).stdout.split()
    assert f"{project.name}_redis-data" in volumes


# --- security ---------------------------------------------------------------------------
def test_wider_bind_warns_once(project):
    project.env["DEVENV_BIND"] = "0.0.0.0"
    up = project.run("up", "--only", "cache")
    assert up.stderr.count("ports bind to 0.0.0.0") == 1
    assert any("0.0.0.0:" in c["Ports"] for c in project.containers())


def test_default_output_holds_no_secret(project):
    project.env["DEVENV_POSTGRES_PASSWORD"] = SPECIAL
    out = project.run("up", "--only", "db")
    status = project.run("status")
    config = project.run("config")
    logs = project.run("logs", "db")
    for result in (out, status, config, logs, project.run("ports", "--json")):
        assert SPECIAL not in result.stdout + result.stderr
    assert "%40ss" not in out.stdout  # not even URL-encoded
    shown = project.run("ports", "--show-secrets")
    assert "p%40ss%24w%22o%27rd" in shown.stdout
