"""Named SSH tunnels end to end: the real OpenSSH client against a real OpenSSH server (the
devenv-test/sshd bastion) with a PostgreSQL ("prod-db") behind it that this host cannot
resolve or reach by itself. One bastion and one prod-db serve the whole module.

The remote engine: a second sshd of the same image ("devbox") on the host's network with the
engine's socket, so DOCKER_HOST=ssh://devbox reaches the engine through ssh as it would on
another machine. Its services publish on 127.0.0.2 (the "remote" loopback; this machine's
127.0.0.1 stays free for the forward), and an `ssh` wrapper first on PATH stands for the
user's ~/.ssh/config (ssh reads the config of the passwd home, not $HOME).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import Project, free_port, new_project

SSHD_IMAGE = "devenv-test/sshd:latest"
POSTGRES_IMAGE = "devenv-test/postgres:latest"
PROD_PASSWORD = "pr0d p@ss:/?#&'\"w0rd"
PROD_DB = "agents"


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def _keygen(path: Path) -> Path:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devenv-test", "-f", str(path))
    return path


@dataclass
class Bastion:
    port: int
    network: str
    #: an ssh config with Host aliases: bastion, bastion-wrongkey, bastion-newkey, and
    #: bastion-mux / bastion-fork (a user's connection sharing, a fork after login)
    config: Path


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Bastion]:
    if subprocess.run(["docker", "image", "inspect", SSHD_IMAGE],
                      capture_output=True).returncode != 0:
        pytest.fail(f"{SSHD_IMAGE} missing: run `bash scripts/build-test-images.sh sshd`")
    keys = tmp_path_factory.mktemp("sshkeys")
    user_key = _keygen(keys / "id_user")
    wrong_key = _keygen(keys / "id_wrong")
    host_key = _keygen(keys / "host_key")
    other_host_key = _keygen(keys / "other_host_key")
    mount = keys / "mount"
    mount.mkdir()
    (mount / "host_key").write_bytes(host_key.read_bytes())
    (mount / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
    for f in mount.iterdir():
        f.chmod(0o644)  # read by the container's root, installed 0600 there
    network = f"t{uuid.uuid4().hex[:8]}-tunnels"
    control = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # a socket path is short
    _run("docker", "network", "create", network)
    names = [f"{network}-prod-db", f"{network}-bastion"]
    try:
        _run("docker", "run", "-d", "--name", names[0], "--network", network,
             "--network-alias", "prod-db", "--network-alias", "staging-db",
             "-e", f"POSTGRES_PASSWORD={PROD_PASSWORD}",
             "-e", f"POSTGRES_DB={PROD_DB}", POSTGRES_IMAGE)
        _run("docker", "run", "-d", "--name", names[1], "--network", network,
             "-p", "127.0.0.1::22", "-v", f"{mount}:/keys:ro", SSHD_IMAGE)
        port = int(_run("docker", "port", names[1], "22").splitlines()[0].rsplit(":", 1)[1])
        for _ in range(300):
            # Over TCP: during its first start the image runs a socket-only server for init.
            if subprocess.run(["docker", "exec", names[0], "pg_isready", "-q", "-h",
                               "127.0.0.1", "-d", PROD_DB],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        known = keys / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
        changed = keys / "known_hosts_changed"
        changed.write_text(f"[127.0.0.1]:{port} {Path(f'{other_host_key}.pub').read_text()}")
        config = keys / "ssh_config"
        blocks = []
        for alias, key, hosts in (("bastion", user_key, known),
                                  ("bastion-wrongkey", wrong_key, known),
                                  ("bastion-newkey", user_key, changed)):
            blocks.append(f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User tunnel\n"
                          f"  IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
                          f"  UserKnownHostsFile {hosts}\n  StrictHostKeyChecking yes\n")
        blocks.append(blocks[0].replace("Host bastion", "Host bastion-mux") +
                      f"  ControlMaster auto\n  ControlPath {control}/%C\n"
                      "  ControlPersist 60\n")
        blocks.append(blocks[0].replace("Host bastion", "Host bastion-fork") +
                      "  ForkAfterAuthentication yes\n")
        config.write_text("\n".join(blocks))
        yield Bastion(port=port, network=network, config=config)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", *names], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)
        shutil.rmtree(control, ignore_errors=True)


TOML = """\
[tunnels.prod-db]
via = "bastion"
target = "prod-db:5432"
kind = "postgres"
production = true
local_port = {local_port}

[tunnels.wrong-key]
via = "bastion-wrongkey"
target = "prod-db:5432"
kind = "postgres"

[tunnels.new-host-key]
via = "bastion-newkey"
target = "prod-db:5432"
kind = "postgres"

[tunnels.no-such-host]
via = "tunnel@no-such-host.invalid"
target = "prod-db:5432"

[tunnels.closed-port]
via = "bastion"
target = "prod-db:5999"
kind = "postgres"

[tunnels.no-target]
via = "bastion"
target = "no-such-db.internal:5432"
kind = "postgres"

[tunnels.shared-conn]
via = "bastion-mux"
target = "prod-db:5432"
kind = "postgres"

[tunnels.forks]
via = "bastion-fork"
target = "prod-db:5432"
kind = "postgres"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, bastion: Bastion) -> Iterator[Project]:
    p = new_project(tmp_path_factory.mktemp("tunnels"),
                    DEVENV_SSH_CONFIG=str(bastion.config), SSH_AUTH_SOCK="")
    (p.path / "devenv.toml").write_text(
        TOML.format(local_port=p.env["DEVENV_POSTGRES_PORT"]))
    (p.path / ".env").write_text(
        "DEVENV_TUNNEL_PROD_DB_PASSWORD='" + PROD_PASSWORD.replace("'", "\\'") + "'\n"
        f"DEVENV_TUNNEL_PROD_DB_DB={PROD_DB}\n")
    try:
        yield p
    finally:
        p.run("down", "--tunnels", "--volumes", "--yes", check=False, timeout=120)


def _ours(project: Project) -> list[psutil.Process]:
    """Processes started for this project's tunnels: supervisors and their ssh."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "devenv.tunnels.supervisor" in cmdline and str(project.path) in cmdline:
            found.append(proc)
            found.extend(proc.children())
    return found


def _tunnels(project: Project) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(project.run("tunnel", "ls", "--json").stdout)}


def _doctor_tunnel(project: Project, name: str) -> dict:
    """doctor's check of one tunnel (doctor runs `ssh -G` on its command line, dials nothing)."""
    report = json.loads(project.run("doctor", "--json", check=False).stdout)
    return next(c for c in report["checks"] if c["name"] == f"tunnel {name}")


def _psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    """psql from the postgres test image on the host's network: a real login at the URL."""
    return subprocess.run(["docker", "run", "--rm", "--network", "host", "--entrypoint", "psql",
                           POSTGRES_IMAGE, url, "-At", "-c", sql],
                          capture_output=True, text=True, timeout=60)


def _env_url(project: Project, key: str) -> str:
    lines = project.run("ports", "--env").stdout.splitlines()
    values = dict(line.split("=", 1) for line in lines)
    return values[key].strip("'")


def test_prod_db_tunnel_answers_beside_the_local_stack_and_comes_back(project: Project):
    project.run("up", "--only", "db")
    local = project.ports()["postgres"]["port"]
    up = project.run("tunnel", "up", "prod-db")
    assert f"{local} is taken by this project's postgres" in up.stderr
    assert "PRODUCTION" in up.stderr
    row = _tunnels(project)["prod-db"]
    assert row["state"] == "up" and row["production"] and row["tags"] == ["PROD"]
    assert row["port"] != local and row["configured_port"] == local
    assert PROD_PASSWORD not in up.stdout + up.stderr  # masked by default

    url = _env_url(project, "PROD_DB_URL")
    assert f"127.0.0.1:{row['port']}/" in url
    answer = _psql(url, "select current_database(), current_setting("
                        "'default_transaction_read_only')")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == f"{PROD_DB}|on"  # production: read-only by default
    for path in project.path.joinpath(".devenv").rglob("*"):
        if path.is_file():
            assert PROD_PASSWORD not in path.read_text(errors="replace"), path

    # `devenv psql --tunnel`: this machine's psql, logged in, read-only on production.
    shell = project.run("psql", "--tunnel", "prod-db", "-At", "-c",
                        "select current_database(), current_setting("
                        "'default_transaction_read_only')")
    assert shell.stdout.strip() == f"{PROD_DB}|on" and "read-only session" in shell.stderr
    write = project.run("psql", "--tunnel", "prod-db", "-c", "create table t (x int)",
                        check=False)
    assert write.returncode != 0 and "read-only transaction" in write.stderr

    ports = project.run("ports")
    assert "prod-db PROD" in ports.stdout and "postgres" in ports.stdout
    status = json.loads(project.run("status", "--json").stdout)
    assert {"tunnel:prod-db", "postgres"} <= {item["service"] for item in status}
    check = _doctor_tunnel(project, "prod-db")
    assert check["status"] == "ok" and f"up on 127.0.0.1:{row['port']}" in check["detail"]

    # ssh killed behind devenv's back: the supervisor starts it again, on the same port.
    supervisor = psutil.Process(row["pid"])
    (ssh,) = supervisor.children()
    ssh.kill()
    for _ in range(150):
        again = _tunnels(project)["prod-db"]
        if again["restarts"] >= 1 and again["state"] == "up":
            break
        time.sleep(0.2)
    assert again["restarts"] >= 1 and again["state"] == "up", again
    assert again["port"] == row["port"]
    assert _psql(url, "select 1").stdout.strip() == "1"

    # The supervisor killed too: the tunnel shows as dead, and `tunnel up` brings it back
    # on its remembered port; ssh died with its supervisor (no stray process).
    supervisor.kill()
    supervisor.wait(10)
    for _ in range(50):
        if not _ours(project):
            break
        time.sleep(0.1)
    assert _ours(project) == []
    assert _tunnels(project)["prod-db"]["state"] == "dead"
    check = _doctor_tunnel(project, "prod-db")
    assert (check["status"], check["fix"]) == ("warn", "devenv tunnel up prod-db"), check
    project.run("tunnel", "up", "prod-db")
    assert _tunnels(project)["prod-db"]["port"] == row["port"]

    # `down` leaves tunnels alone unless asked.
    down = project.run("down")
    assert "tunnels left open: prod-db" in down.stderr
    assert _tunnels(project)["prod-db"]["state"] == "up"
    closed = project.run("down", "--tunnels")
    assert "tunnels closed: prod-db" in closed.stderr
    assert _ours(project) == []
    assert _tunnels(project)["prod-db"]["state"] == "down"


@pytest.mark.parametrize(("name", "code", "words"), [
    ("no-such-host", 6, "cannot resolve the host"),
    ("wrong-key", 6, "refused the key"),
    ("new-host-key", 6, "has CHANGED"),
    ("no-target", 3, "cannot reach no-such-db.internal:5432"),
    ("undeclared", 2, "is not declared in"),
])
def test_tunnel_faults_are_one_line_each_and_leave_no_process(project: Project, name: str,
                                                              code: int, words: str):
    result = project.run("tunnel", "up", name, check=False)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("devenv: error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr
    assert _ours(project) == []
    if name != "undeclared":
        assert _tunnels(project)[name]["state"] == "down"


def test_ctrl_c_while_waiting_for_the_far_end_leaves_no_process(project: Project):
    """Ctrl-C once ssh is connected and devenv waits for a target that refuses (it gets a
    grace of a few seconds to start listening): exit 130, supervisor and ssh ended."""
    import signal

    from conftest import devenv_command

    proc = subprocess.Popen([devenv_command(), "tunnel", "up", "closed-port"], cwd=project.path,
                            env={**os.environ, **project.env}, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "ssh is connected" in line:
            break
    assert _ours(project), seen  # the supervisor and ssh run now
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(30) == 130, seen + [rest]
    assert "Traceback" not in rest
    assert _ours(project) == []
    assert _tunnels(project)["closed-port"]["state"] == "down"


def test_a_port_taken_between_plan_and_start_is_a_port_race(project: Project,
                                                           bastion: Bastion):
    """The real ssh refuses the taken port (ExitOnForwardFailure); start_tunnel says so as a
    PortRaceError (which `tunnel up` answers by planning again, see the unit tests) and
    leaves no process behind."""
    from devenv.tunnels.runtime import start_tunnel
    from devenv.tunnels.ssh_failures import PortRaceError
    from devenv.tunnels.tables import Credentials, TunnelSpec

    spec = TunnelSpec(name="race", via="bastion", target_host="prod-db", target_port=5432,
                      kind="postgres")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        folder = project.path / ".devenv" / "tunnels" / "race-test"
        with pytest.raises(PortRaceError) as caught:
            start_tunnel(spec, port, folder, Credentials("postgres", "", "postgres"),
                         timeout=30, ssh_config=str(bastion.config))
    assert caught.value.port == port
    assert _ours(project) == []
    assert not (folder / "race.json").exists()


SHARED_TOML = """[tunnels.shared-db]
via = "bastion"
target = "{target}"
kind = "postgres"
production = {production}
"""


def test_a_tunnel_whose_declaration_changed_is_reopened_before_its_url_is_handed_out(
        tmp_path: Path, bastion: Bastion):
    """devenv.toml moves a running tunnel from production to staging: until `tunnel up`
    reopens it, what is shown is what runs (PROD, read-only) and `ports --env` and
    `psql --tunnel` refuse it; after, the URL leads to the new target, writable."""
    p = new_project(tmp_path, DEVENV_SSH_CONFIG=str(bastion.config), SSH_AUTH_SOCK="")
    (p.path / "devenv.toml").write_text(SHARED_TOML.format(target="prod-db:5432",
                                                           production="true"))
    (p.path / ".env").write_text(
        "DEVENV_TUNNEL_SHARED_DB_PASSWORD='" + PROD_PASSWORD.replace("'", "\\'") + "'\n"
        f"DEVENV_TUNNEL_SHARED_DB_DB={PROD_DB}\n")
    try:
        p.run("tunnel", "up", "shared-db")
        (p.path / "devenv.toml").write_text(SHARED_TOML.format(target="staging-db:5432",
                                                               production="false"))
        row = _tunnels(p)["shared-db"]
        assert (row["target"], row["tags"]) == ("prod-db:5432", ["PROD"]), row
        assert row["changed"] == ("target prod-db:5432 -> staging-db:5432; "
                                  "production true -> false")
        assert "read_only" in row["url"]
        assert "[devenv.toml changed: target prod-db:5432 -> staging-db:5432" in p.run(
            "tunnel", "ls").stdout
        env = p.run("ports", "--env", check=False)
        assert env.returncode == 2 and "SHARED_DB_URL" not in env.stdout, env
        assert "devenv.toml changed since it was opened" in env.stderr
        assert "hint: reopen it as declared: devenv tunnel up shared-db" in env.stderr
        write = p.run("psql", "--tunnel", "shared-db", "-c", "create table t (x int)",
                      check=False)
        assert write.returncode == 2 and "changed since it was opened" in write.stderr

        up = p.run("tunnel", "up", "shared-db")
        assert "reopening it as declared" in up.stderr and "PRODUCTION" not in up.stderr
        row = _tunnels(p)["shared-db"]
        assert (row["target"], row["tags"], row["changed"]) == ("staging-db:5432", [], "")
        url = _env_url(p, "SHARED_DB_URL")
        assert "read_only" not in url
        answer = _psql(url, "select current_setting('default_transaction_read_only')")
        assert answer.stdout.strip() == "off", answer.stderr
    finally:
        p.run("tunnel", "down", check=False)
        assert _ours(p) == []
        p.cleanup()


def _ssh_for(alias: str) -> list[psutil.Process]:
    """Every ssh whose command line names `alias` (a Host only this module's config has),
    wherever it runs: also one that forked away from its supervisor."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "ssh" and alias in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.mark.parametrize(("name", "alias"), [("shared-conn", "bastion-mux"),
                                             ("forks", "bastion-fork")])
def test_ssh_stays_in_the_foreground_whatever_the_ssh_config_says(project: Project, name: str,
                                                                   alias: str):
    """ControlMaster/ControlPersist (a master forks away and keeps the port) or
    ForkAfterAuthentication in the user's ssh config: the tunnel still opens, its port is
    held by the ssh its supervisor runs, and `tunnel down` leaves nothing listening."""
    try:
        up = project.run("tunnel", "up", name, check=False)
        assert up.returncode == 0, up.stderr
        row = _tunnels(project)[name]  # `up` returned once PostgreSQL answered through it
        assert row["state"] == "up", row
        listener = _listener(row["port"])
        assert listener is not None and listener.name() == "ssh"
        assert listener.ppid() == row["pid"]  # the supervisor's own child, not a fork
        project.run("tunnel", "down", name)
        assert _listener(row["port"]) is None
        assert _ssh_for(alias) == []
    finally:
        for stray in _ssh_for(alias):  # what the unfixed ssh left behind
            stray.kill()


@dataclass
class Devbox:
    bin_dir: Path  # holds the `ssh` wrapper
    port: int


@pytest.fixture(scope="module")
def devbox(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Devbox]:
    keys = tmp_path_factory.mktemp("devbox")
    user_key, host_key = _keygen(keys / "id_user"), _keygen(keys / "host_key")
    mount = keys / "mount"
    mount.mkdir()
    (mount / "host_key").write_bytes(host_key.read_bytes())
    (mount / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
    for f in mount.iterdir():
        f.chmod(0o644)
    port = free_port()
    name = f"t{uuid.uuid4().hex[:8]}-devbox"
    try:
        _run("docker", "run", "-d", "--name", name, "--network", "host",
             "-v", f"{mount}:/keys:ro", "-v", "/var/run/docker.sock:/var/run/docker.sock",
             SSHD_IMAGE, "/usr/sbin/sshd", "-D", "-e", "-p", str(port),
             "-o", "ListenAddress=127.0.0.1")
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        known = keys / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
        config = keys / "ssh_config"
        config.write_text(f"Host devbox\n  HostName 127.0.0.1\n  Port {port}\n  User tunnel\n"
                          f"  IdentityFile {user_key}\n  IdentitiesOnly yes\n"
                          f"  IdentityAgent none\n  UserKnownHostsFile {known}\n"
                          "  StrictHostKeyChecking yes\n")
        bin_dir = keys / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f"#!/bin/sh\nexec {shutil.which('ssh')} -F {config} \"$@\"\n")
        wrapper.chmod(0o755)
        yield Devbox(bin_dir=bin_dir, port=port)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _listener(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections(kind="tcp"):
        if (conn.status == psutil.CONN_LISTEN and conn.laddr.ip == "127.0.0.1"
                and conn.laddr.port == port and conn.pid):
            return psutil.Process(conn.pid)
    return None


def test_a_stack_on_a_remote_engine_answers_at_local_urls(tmp_path: Path, devbox: Devbox):
    # Through a Docker context, as `docker context use devbox` would (the unreachable test
    # below uses DOCKER_HOST). The port in the URL: the docker SDK passes -p 22 without one.
    config = tmp_path / "docker-config"
    config.mkdir()
    subprocess.run(["docker", "context", "create", "devbox", "--docker",
                    f"host=ssh://devbox:{devbox.port}"], env={**os.environ,
                   "DOCKER_CONFIG": str(config)}, capture_output=True, check=True)
    p = new_project(tmp_path, DOCKER_CONFIG=str(config), DOCKER_CONTEXT="devbox",
                    DOCKER_HOST="", DEVENV_BIND="127.0.0.2",
                    PATH=f"{devbox.bin_dir}:{os.environ['PATH']}")
    configured = int(p.env["DEVENV_POSTGRES_PORT"])
    try:
        # Both sides are planned: the port is free on the engine's host, but taken here.
        with socket.socket() as held:
            held.bind(("127.0.0.1", configured))
            held.listen()
            up = p.run("up", "--only", "db")
        assert f"{configured} is taken by" in up.stderr and "on this machine" in up.stderr
        row = p.ports()["postgres"]
        port = row["port"]
        assert port != configured and row["state"] == "ready"
        assert row["url"].startswith("postgresql://") and f"@127.0.0.1:{port}/" in row["url"]
        published = _run("docker", "port", p.containers()[0]["Names"], "5432")
        assert published == f"127.0.0.2:{port}"  # the remote's loopback, not reachable here
        forward = _listener(port)
        assert forward is not None and forward.name() == "ssh"
        url = _env_url(p, "DATABASE_URL")
        assert _psql(url, "select 1").stdout.strip() == "1"

        forward.kill()  # the connection drops: re-established, and said
        for _ in range(150):
            again = _listener(port)
            if again is not None and again.pid != forward.pid:
                break
            time.sleep(0.1)
        assert again is not None and again.name() == "ssh" and again.pid != forward.pid
        assert "up again after 1 reconnect" in p.run("ports").stderr
        assert _psql(url, "select 1").stdout.strip() == "1"

        down = p.run("down")
        assert "closed the ssh forward" in down.stderr
        assert _ours(p) == [] and _listener(port) is None
    finally:
        p.cleanup()


def test_remote_engine_unreachable_is_one_line(tmp_path: Path, devbox: Devbox):
    p = new_project(tmp_path, DOCKER_HOST="ssh://tunnel@no-such-host.invalid",
                    PATH=f"{devbox.bin_dir}:{os.environ['PATH']}")
    result = p.run("up", "--only", "db", check=False)
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("devenv: error:")]
    assert len(errors) == 1 and "Could not resolve hostname no-such-host.invalid" in errors[0]
    # ssh's own words are in that line, not printed beside it
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["devenv", "hint"]
    assert _ours(p) == []
