"""[data] branches on the real engine with a real git repository: each branch keeps its own
data; a new branch starts from its parent's; a switch back copies nothing. How long a switch
takes against `devenv restart db` is bench/branches.py's to say, not a test's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from conftest import TEST_IMAGES, Project, devenv_command

from devenv.config.branchstate import volume_suffix
from devenv.data.volumes import VOLUME_KEYS


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], cwd=path, capture_output=True, text=True,
                          check=True).stdout


def sql(project: Project, statement: str) -> str:
    return project.run("psql", "-Atc", statement).stdout.strip()


def test_each_branch_keeps_its_own_data(project: Project) -> None:
    (project.path / "devenv.toml").write_text("[data]\nbranches = true\n")
    git(project.path, "init", "-q", "-b", "main")
    git(project.path, "commit", "-q", "--allow-empty", "-m", "start")

    first = project.run("up", "--only", "db,cache").stderr
    assert "data: branch main (new, fresh database)" in first
    sql(project, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('on main')")
    project.run("redis-cli", "set", "where", "main")

    git(project.path, "checkout", "-q", "-b", "feature/agents")
    said = project.run("up", "--only", "db,cache").stderr
    assert "data: branch feature/agents (new, from main, " in said, said
    assert sql(project, "SELECT body FROM notes") == "on main"
    assert project.run("redis-cli", "get", "where").stdout.strip() == "main"
    sql(project, "INSERT INTO notes VALUES ('on feature')")
    project.run("redis-cli", "set", "where", "feature")

    git(project.path, "checkout", "-q", "main")
    said = project.run("up", "--only", "db,cache").stderr
    assert "data: branch main" in said and "new" not in said, said
    assert sql(project, "SELECT body FROM notes ORDER BY body") == "on main"
    assert project.run("redis-cli", "get", "where").stdout.strip() == "main"

    git(project.path, "checkout", "-q", "feature/agents")
    said = project.run("up", "--only", "db,cache").stderr
    assert "data: branch feature/agents" in said and "new" not in said, said
    assert sql(project, "SELECT body FROM notes ORDER BY body") == "on feature\non main"
    assert project.run("redis-cli", "get", "where").stdout.strip() == "feature"

    rows = {row["name"]: row for row in json.loads(project.run("db", "branches",
                                                               "--json").stdout)}
    assert set(rows) == {"main", "feature/agents"}
    assert rows["feature/agents"]["in_use"] and rows["feature/agents"]["parent"] == "main"
    assert rows["main"]["in_git"] and rows["main"]["size"] > 0


def test_rows_committed_while_the_first_pass_copies_are_all_on_the_new_branch(
        project: Project) -> None:
    """A new branch's data is copied in two passes: the first while PostgreSQL runs (and
    takes writes), the second once it is stopped. Every row committed before the stop is on
    the new branch, and its cluster starts as one that was shut down cleanly."""
    (project.path / "devenv.toml").write_text("[data]\nbranches = true\n")
    git(project.path, "init", "-q", "-b", "main")
    git(project.path, "commit", "-q", "--allow-empty", "-m", "start")
    project.run("up", "--only", "db")
    sql(project, "CREATE TABLE w (x int); INSERT INTO w SELECT generate_series(1, 400000)")
    container = f"{project.name}-postgres-1"
    writer = subprocess.Popen(
        ["docker", "exec", container, "psql", "-U", "postgres", "-d", "cirkelline_agents",
         "-qc", "DO $$ BEGIN FOR i IN 1..1000000 LOOP INSERT INTO w VALUES (i); COMMIT; "
         "END LOOP; END $$"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        before = int(sql(project, "SELECT count(*) FROM w"))
        git(project.path, "checkout", "-q", "-b", "copy-under-writes")
        said = project.run("up", "--only", "db").stderr
        assert "data: branch copy-under-writes (new, from main, " in said, said
    finally:
        writer.kill()
        writer.wait()
    copied = int(sql(project, "SELECT count(*) FROM w"))
    log = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    assert "database system was shut down at" in log.stdout + log.stderr
    git(project.path, "checkout", "-q", "main")
    project.run("up", "--only", "db")
    on_main = int(sql(project, "SELECT count(*) FROM w"))
    assert on_main == copied > before, (before, copied, on_main)


def _on_main_with_a_row(project: Project) -> None:
    (project.path / "devenv.toml").write_text("[data]\nbranches = true\n")
    git(project.path, "init", "-q", "-b", "main")
    git(project.path, "commit", "-q", "--allow-empty", "-m", "start")
    project.run("up", "--only", "db")
    sql(project, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('on main'); "
        "INSERT INTO notes SELECT md5(g::text) FROM generate_series(1, 300000) g")


def _postgres_started(project: Project) -> str:
    """When PostgreSQL's container last started ("" when it does not run)."""
    return subprocess.run(["docker", "inspect", "-f",
                           "{{if .State.Running}}{{.State.StartedAt}}{{end}}",
                           f"{project.name}-postgres-1"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_disk_too_small_for_the_copy_is_said_before_anything_stops(project: Project) -> None:
    """The new branch's volume is a 1 MB tmpfs made beforehand (devenv uses a volume of
    that name that exists): the room is checked before the services stop, the line says
    so, and the volume, which devenv did not make, is kept."""
    _on_main_with_a_row(project)
    volume = f"{project.name}_{VOLUME_KEYS['postgres']}{volume_suffix('small')}"
    subprocess.run(["docker", "volume", "create", "--driver", "local", "--opt", "type=tmpfs",
                    "--opt", "device=tmpfs", "--opt", "o=size=1m", volume], check=True,
                   capture_output=True)
    try:
        started = _postgres_started(project)
        git(project.path, "checkout", "-q", "-b", "small")
        result = project.run("up", "--only", "db", check=False)
        assert result.returncode == 1, result.stderr
        assert "not enough room for the new branch's data" in result.stderr
        assert "nothing was stopped or changed" in result.stderr
        assert "Traceback" not in result.stderr
        assert _postgres_started(project) == started  # never stopped
        assert sql(project, "SELECT body FROM notes LIMIT 1") == "on main"
        assert subprocess.run(["docker", "volume", "inspect", volume],
                              capture_output=True).returncode == 0
    finally:
        project.cleanup()
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)


def test_ctrl_c_during_the_copy_keeps_the_branch_in_use_running_on_its_data(
        project: Project) -> None:
    """Ctrl-C as soon as `up` says it copies (the first pass, beside the running services):
    exit 130, PostgreSQL was never stopped and serves main's data, the new branch's volumes
    are gone; the next `up` copies again and succeeds."""
    _on_main_with_a_row(project)
    started = _postgres_started(project)
    git(project.path, "checkout", "-q", "-b", "interrupted")
    up = subprocess.Popen([devenv_command(), "up", "--only", "db"], cwd=project.path,
                          env={**os.environ, **project.env}, stderr=subprocess.PIPE, text=True)
    assert up.stderr is not None
    said = []
    for line in up.stderr:
        said.append(line)
        if "data: copying branch main's data for interrupted" in line:
            up.send_signal(signal.SIGINT)
            break
    said.append(up.stderr.read())
    assert up.wait(60) == 130, "".join(said)
    assert "Traceback" not in "".join(said)
    assert _postgres_started(project) == started  # the first pass runs beside it
    assert sql(project, "SELECT body FROM notes LIMIT 1") == "on main"
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                              f"name={project.name}_"], capture_output=True, text=True).stdout
    assert volume_suffix("interrupted") not in volumes, volumes
    said_again = project.run("up", "--only", "db").stderr
    assert "data: branch interrupted (new, from main, " in said_again, said_again
    assert sql(project, "SELECT body FROM notes LIMIT 1") == "on main"


def test_a_switch_closes_the_clients_connections_as_a_fast_shutdown(project: Project) -> None:
    """A client holds a connection (a long query) while `up` switches branches: PostgreSQL
    ends it as a fast shutdown does (it does not wait for the client, nor is it killed)."""
    _on_main_with_a_row(project)
    git(project.path, "checkout", "-q", "-b", "other")
    project.run("up", "--only", "db")
    git(project.path, "checkout", "-q", "main")
    client = subprocess.Popen(
        ["docker", "exec", f"{project.name}-postgres-1", "psql", "-U", "postgres", "-d",
         "cirkelline_agents", "-c", "SELECT pg_sleep(120)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):  # until its query runs
            if sql(project, "SELECT count(*) FROM pg_stat_activity "
                   "WHERE query LIKE 'SELECT pg_sleep%'") == "1":
                break
        said = project.run("up", "--only", "db").stderr
        assert "data: branch main" in said, said
        _out, err = client.communicate(timeout=30)
    finally:
        client.kill()
    assert "terminating connection due to administrator command" in err, err
    assert sql(project, "SELECT body FROM notes LIMIT 1") == "on main"



def test_the_copy_makes_a_tree_alike_with_its_biggest_file_copied_beside_the_rest(
        engine: str) -> None:
    """COPY_SCRIPT in the PostgreSQL image on a made-up data folder: a 70 MB file two
    folders down (copied by a cp of its own), folders of another owner and mode, WAL
    segments (all copied: this is no cleanly shut-down cluster), and what is not data
    (postmaster.pid, a restore's leftovers) left out. Names, modes, owners, sizes and
    contents come out alike."""
    from devenv.data.branches import COPY_SCRIPT

    image = TEST_IMAGES["DEVENV_POSTGRES_IMAGE"]
    src, dst = f"copytest-src-{os.getpid()}", f"copytest-dst-{os.getpid()}"
    listing = ("cd \"$1\" && find . -printf '%p %m %U %s\\n' | sort "
               "&& find . -type f -exec md5sum {} + | sort")

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", *args],
                              input=stdin, capture_output=True, text=True, timeout=120)

    try:
        made = run("-v", f"{src}:/v", "--entrypoint", "sh", image, "-c", """set -e
            cd /v && mkdir -p base/16384 global pg_wal/archive_status .devenv-old
            head -c 70000000 /dev/urandom > base/16384/16400
            head -c 9000 /dev/urandom > base/16384/16401 && echo 1 > global/pg_control
            head -c 16384 /dev/urandom > pg_wal/000000010000000000000001
            echo x > postmaster.pid && echo old > .devenv-old/kept && echo 16 > PG_VERSION
            chown -R 999:999 /v && chmod 700 /v base base/16384 && chmod 600 PG_VERSION""")
        assert made.returncode == 0, made.stderr
        copied = run("-v", f"{src}:/src/postgres:ro", "-v", f"{dst}:/dst/postgres",
                     "--entrypoint", "sh", image, "-c", COPY_SCRIPT, "sh", "postgres",
                     stdin="go\n")
        assert copied.returncode == 0 and "devenv-copied" in copied.stderr, copied.stderr
        want = run("-v", f"{src}:/v:ro", "--entrypoint", "sh", image, "-c",
                   listing.replace("find . -printf", "find . ! -path './.devenv-old*' "
                                   "! -name postmaster.pid -printf").replace(
                       "find . -type f", "find . -type f ! -path './.devenv-old*' "
                       "! -name postmaster.pid"), "sh", "/v").stdout
        got = run("-v", f"{dst}:/v:ro", "--entrypoint", "sh", image, "-c", listing,
                  "sh", "/v").stdout
        assert "./base/16384 700 999 " in got and "./base/16384/16400 644 999 70000000" in got
        assert got == want and "postmaster.pid" not in got and "kept" not in got
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", src, dst], capture_output=True)
