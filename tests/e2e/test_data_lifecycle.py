"""The data lifecycle on the real engine: seed folder, psql/redis-cli, snapshots, restore,
reset, export/import, the migration step, and each bad input or fault leaving the data as it
was. One stack (`--only db,cache`) for the module; the API joins for the migration test."""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_IMAGES, Project, devenv_command, new_project, tmpfs

SEED_SQL = ("CREATE TABLE seeded (ord serial PRIMARY KEY, name text NOT NULL);\n"
            "INSERT INTO seeded (name) VALUES ('sql');\n"
            "CREATE TABLE items (n int PRIMARY KEY);\n"
            "INSERT INTO items SELECT generate_series(1, 100);\n")
SEED_SH = """#!/bin/sh
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \\
  -c "INSERT INTO seeded (name) VALUES ('sh')"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Project]:
    p = new_project(tmp_path_factory.mktemp("data"))
    seed = p.path / "db" / "seed"
    seed.mkdir(parents=True)
    (seed / "01-schema.sql").write_text(SEED_SQL)
    (seed / "02-more.sql.gz").write_bytes(
        gzip.compress(b"INSERT INTO seeded (name) VALUES ('gz');\n"))
    (seed / "03-note.sh").write_text(SEED_SH)
    (seed / "03-note.sh").chmod(0o755)
    try:
        p.run("up", "--only", "db,cache")
        yield p
    finally:
        p.cleanup()


def sql(p: Project, query: str) -> str:
    return p.run("psql", "-Atc", query).stdout.strip()


def items(p: Project) -> str:
    return sql(p, "SELECT count(*) FROM items")


def test_seed_folder_ran_once_in_name_order(stack):
    assert sql(stack, "SELECT string_agg(name, ',' ORDER BY ord) FROM seeded") == "sql,gz,sh"
    assert items(stack) == "100"
    stack.run("up", "--only", "db,cache")  # a second up runs nothing again
    assert sql(stack, "SELECT count(*) FROM seeded") == "3"


def test_shells_pass_arguments_and_exit_codes_through(stack):
    assert sql(stack, "SELECT current_user || '@' || current_database()") == \
        "postgres@cirkelline_agents"
    assert stack.run("redis-cli", "set", "greeting", "hello").stdout.strip() == "OK"
    assert stack.run("redis-cli", "get", "greeting").stdout.strip() == "hello"
    bad = stack.run("psql", "-c", "SELECT nope", check=False)
    assert bad.returncode == 1 and 'column "nope" does not exist' in bad.stderr
    # psql's own exit code 2 (cannot connect), not one of devenv's
    assert stack.run("psql", "-d", "no_such_db", check=False).returncode == 2


def test_snapshot_and_restore_with_an_automatic_snapshot_first(stack):
    stack.run("redis-cli", "set", "color", "blue")
    taken = stack.run("db", "snapshot", "base")
    assert taken.stdout.strip() == "base" and "postgres, redis" in taken.stderr
    root = stack.path / ".devenv" / "snapshots"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "base").stat().st_mode) == 0o700
    for part in (root / "base").iterdir():
        assert stat.S_IMODE(part.stat().st_mode) == 0o600, part
    assert "snapshots" not in (stack.path / "compose" / "docker-compose.yml").read_text()
    assert "snapshots" not in stack.run("logs", "--tail", "50").stdout

    sql(stack, "DELETE FROM items WHERE n > 10")
    stack.run("redis-cli", "set", "color", "red")
    restored = stack.run("db", "restore", "base")
    assert items(stack) == "100"
    assert stack.run("redis-cli", "get", "color").stdout.strip() == "blue"
    auto = restored.stderr.split("devenv db restore ")[-1].strip()
    assert auto.startswith("auto-"), restored.stderr

    listed = json.loads(stack.run("db", "snapshots", "--json").stdout)
    by_name = {s["name"]: s for s in listed}
    assert by_name["base"]["holds"] == ["postgres", "redis"]
    assert by_name["base"]["postgres_major"] == "15" and by_name[auto]["auto"] is True
    assert all(s["schema"] == "devenv.snapshots/1" for s in listed)

    stack.run("db", "restore", auto)  # the way back
    assert items(stack) == "10"
    assert stack.run("redis-cli", "get", "color").stdout.strip() == "red"
    stack.run("db", "restore", "base")


def test_restore_while_a_client_holds_a_connection(stack):
    env = {**os.environ, **stack.env}
    holder = subprocess.Popen([devenv_command(), "psql", "-c", "SELECT pg_sleep(120)"],
                              cwd=stack.path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
        for _ in range(50):
            if sql(stack, query) == "1":
                break
            time.sleep(0.2)
        sql(stack, "DELETE FROM items")
        restored = stack.run("db", "restore", "base")
        assert "closing 1 client connection" in restored.stderr
        assert holder.wait(timeout=30) != 0  # its session was closed, not left hanging
        assert items(stack) == "100"
    finally:
        holder.kill()


def test_bad_snapshots_are_refused_and_the_data_stays(stack):
    root = stack.path / ".devenv" / "snapshots"
    sql(stack, "DELETE FROM items WHERE n > 50")

    slash = stack.run("db", "restore", "../base", check=False)
    assert slash.returncode == 2 and "is not a snapshot name" in slash.stderr
    assert "hint:" in slash.stderr
    assert stack.run("db", "snapshot", "a/b", check=False).returncode == 2

    (root / "foreign").mkdir()
    (root / "foreign" / "data.bin").write_bytes(b"\0" * 100)
    foreign = stack.run("db", "restore", "foreign", check=False)
    assert foreign.returncode == 1 and "is not a devenv snapshot" in foreign.stderr

    subprocess.run(["cp", "-a", str(root / "base"), str(root / "cut")], check=True)
    with open(root / "cut" / "postgres.tar", "r+b") as handle:
        handle.truncate(4096)
    cut = stack.run("db", "restore", "cut", check=False)
    assert cut.returncode == 1 and "damaged" in cut.stderr and "hint:" in cut.stderr

    subprocess.run(["cp", "-a", str(root / "base"), str(root / "old")], check=True)
    manifest = json.loads((root / "old" / "manifest.json").read_text())
    manifest["postgres_major"] = "14"
    (root / "old" / "manifest.json").write_text(json.dumps(manifest))
    old = stack.run("db", "restore", "old", check=False)
    assert old.returncode == 1 and "PostgreSQL 14" in old.stderr
    assert "DEVENV_POSTGRES_IMAGE" in old.stderr

    # `db rm` deletes only what devenv wrote: never a folder that merely has the name
    kept = stack.run("db", "rm", "foreign", "--yes", check=False)
    assert kept.returncode == 1 and "is not a devenv snapshot" in kept.stderr
    assert (root / "foreign" / "data.bin").stat().st_size == 100

    for result in (slash, foreign, cut, old, kept):
        assert "Traceback" not in result.stderr
    assert items(stack) == "50"
    (root / "foreign" / "data.bin").unlink()
    (root / "foreign").rmdir()
    for name in ("cut", "old"):
        stack.run("db", "rm", name, "--yes")
    assert stack.run("db", "rm", "base", check=False).returncode == 2  # a script must say --yes


def test_a_full_disk_mid_snapshot_keeps_the_data(stack, tmp_path):
    with tmpfs(tmp_path / "small", "4m") as mount:
        full = stack.run("db", "snapshot", "big", check=False,
                         extra_env={"DEVENV_SNAPSHOT_DIR": str(mount)})
        assert full.returncode == 1, full.stderr
        assert "no space left" in full.stderr and "DEVENV_SNAPSHOT_DIR" in full.stderr
        assert list(mount.iterdir()) == []  # no half snapshot left behind
        assert items(stack) == "50"  # running again, data as it was


def test_a_full_disk_while_the_automatic_snapshot_is_written_keeps_the_old_data(
        stack, tmp_path):
    """The restore sets the current data aside in its volume and writes its automatic
    snapshot after it returns; when that fails, the old data waits in the volume and the
    next data command writes the snapshot first."""
    log = stack.path / ".devenv" / f"{stack.env['DEVENV_PROJECT']}.restore.log"
    with tmpfs(tmp_path / "snaps", "512m") as mount:
        env = {"DEVENV_SNAPSHOT_DIR": str(mount)}
        sql(stack, "DELETE FROM items WHERE n > 40")
        stack.run("db", "snapshot", "forty", extra_env=env)
        size = sum(f.stat().st_size for f in (mount / "forty").iterdir())
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        with open(mount / "filler", "wb") as filler:  # leave room for half a snapshot
            left = free - size // 2
            while left > 0:
                left -= filler.write(b"\0" * min(left, 1 << 24))
        sql(stack, "DELETE FROM items WHERE n > 30")
        before = log.read_text() if log.exists() else ""
        restored = stack.run("db", "restore", "forty", extra_env=env)
        auto = restored.stderr.split("devenv db restore ")[-1].strip()
        assert auto.startswith("auto-") and "being written" in restored.stderr
        assert items(stack) == "40"
        for _ in range(300):  # the writer runs after the command returned
            if "was not written" in log.read_text()[len(before):]:
                break
            time.sleep(0.2)
        assert "no space left" in log.read_text()[len(before):]
        assert not (mount / auto).exists()
        assert not [p for p in mount.iterdir() if p.name.startswith(".tmp-")]

        (mount / "filler").unlink()  # space again: the next data command pays first
        after = stack.run("db", "snapshot", "after", extra_env=env)
        assert f"writing the automatic snapshot {auto}" in after.stderr
        listed = {s["name"]: s for s in json.loads(
            stack.run("db", "snapshots", "--json", extra_env=env).stdout)}
        assert listed[auto]["auto"] is True and listed[auto]["bytes"] > 0
        with tarfile.open(mount / "after" / "postgres.tar") as tar:  # set-aside copy gone
            assert not [n for n in tar.getnames() if ".devenv-" in n]
        stack.run("db", "restore", auto, extra_env=env)
        assert items(stack) == "30"  # the data the restore replaced
        stack.run("db", "snapshot", "last", extra_env=env)  # its own writer is done now
        sql(stack, "INSERT INTO items SELECT generate_series(31, 50)")  # as the next test expects


def test_ctrl_c_while_the_snapshot_is_unpacked_keeps_the_data_running(stack):
    """A restore unpacks the snapshot beside the data while the services stop; Ctrl-C in
    that window throws the unpacked copy away and starts the services on the data they had."""
    stack.run("db", "snapshot", "ten")  # 50 items
    sql(stack, "DELETE FROM items WHERE n > 20")
    env = {**os.environ, **stack.env}
    proc = subprocess.Popen([devenv_command(), "db", "restore", "ten"], cwd=stack.path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("stopping "):
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, "".join(seen) + rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert items(stack) == "20"  # running again, on the data it had
    assert stack.run("redis-cli", "ping").stdout.strip() == "PONG"
    stack.run("db", "snapshot", "after-ctrl-c")  # nothing of the restore left in the volume
    with tarfile.open(stack.path / ".devenv" / "snapshots" / "after-ctrl-c" /
                      "postgres.tar") as tar:
        assert not [n for n in tar.getnames() if ".devenv-" in n]
    for name in ("ten", "after-ctrl-c"):
        stack.run("db", "rm", name, "--yes")
    sql(stack, "INSERT INTO items SELECT generate_series(21, 50)")  # as the next test expects


def test_export_and_import_in_postgres_own_formats(stack, tmp_path):
    dump = tmp_path / "team.dump"
    stack.run("db", "export", str(dump))
    assert dump.read_bytes()[:5] == b"PGDMP" and stat.S_IMODE(dump.stat().st_mode) == 0o600
    pg = next(c for c in stack.containers() if c["Names"].endswith("postgres-1"))
    with open(dump, "rb") as handle:
        listing = subprocess.run(["docker", "exec", "-i", pg["ID"], "pg_restore", "-l"],
                                 stdin=handle, capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE public items" in listing.stdout

    sql(stack, "DELETE FROM items")
    imported = stack.run("db", "import", str(dump))
    assert "devenv db restore auto-" in imported.stderr
    assert items(stack) == "50"

    plain = tmp_path / "small.sql.gz"
    plain.write_bytes(gzip.compress(b"CREATE TABLE items (n int);\n"
                                    b"INSERT INTO items VALUES (7);\n"))
    stack.run("db", "import", str(plain))
    assert items(stack) == "1"

    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE TABLE x (n int);\nINSERT INTO nowhere VALUES (1);\n")
    failed = stack.run("db", "import", str(bad), check=False)
    assert failed.returncode == 1 and 'relation "nowhere" does not exist' in failed.stderr
    assert "unchanged" in failed.stderr
    cut = tmp_path / "cut.dump"
    cut.write_bytes(dump.read_bytes()[:600])
    assert stack.run("db", "import", str(cut), check=False).returncode == 1
    foreign = tmp_path / "photo.png"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    refused = stack.run("db", "import", str(foreign), check=False)
    assert refused.returncode == 1 and "not a PostgreSQL dump" in refused.stderr
    assert items(stack) == "1"


def test_reset_and_the_seed_snapshot(stack):
    refused = stack.run("db", "reset", check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert items(stack) == "1"
    # no `seed` snapshot: a fresh database from the seed folder
    reset = stack.run("db", "reset", "--yes")
    assert "fresh database" in reset.stderr and "devenv db restore auto-" in reset.stderr
    assert items(stack) == "100"
    assert sql(stack, "SELECT count(*) FROM seeded") == "3"

    sql(stack, "DELETE FROM items WHERE n > 20")
    stack.run("db", "snapshot", "seed")
    sql(stack, "DELETE FROM items")
    assert "reset to snapshot seed" in stack.run("db", "reset", "--yes").stderr
    assert items(stack) == "20"
    # a fresh volume starts from the `seed` snapshot, not from the seed folder
    stack.run("down", "--volumes", "--yes")
    up = stack.run("up", "--only", "db,cache")
    assert "starting from snapshot seed" in up.stderr
    assert items(stack) == "20"


def test_migration_runs_before_the_api_starts(stack):
    failing = stack.run("up", "--only", "api", check=False,
                        extra_env={"DEVENV_API_MIGRATE": "echo step-2-broke; exit 7"})
    assert failing.returncode == 3, failing.stderr
    assert "the API was not started" in failing.stderr and "step-2-broke" in failing.stderr
    assert not [c for c in stack.containers() if c["Names"].endswith("api-1")]

    stack.run("up", "--only", "api",
              extra_env={"DEVENV_API_MIGRATE": "python3 /app/app.py migrate"})
    assert sql(stack, "SELECT version FROM schema_migrations") == "0001_agents"
    assert sql(stack, "SELECT count(*) FROM agents") == "0"
    assert stack.ports()["api"]["state"] == "ready"


def test_a_failing_seed_fails_up_naming_file_and_line(make_project):
    p = make_project()
    seed = p.path / "db" / "seed"
    seed.mkdir(parents=True)
    (seed / "01-ok.sql").write_text("CREATE TABLE a (n int);\n")
    (seed / "02-bad.sql").write_text("INSERT INTO a VALUES (1);\nINSERT INTO b VALUES (2);\n")
    result = p.run("up", "--only", "db", check=False)
    assert result.returncode == 3, result.stderr
    assert "seed file db/seed/02-bad.sql failed at line 2" in result.stderr
    assert 'relation "b" does not exist' in result.stderr
    assert "devenv db reset --yes" in result.stderr


ANON_TOML = """
[services.cachebox]
image = "{image}"
port = 8080
host_port = {port}
probe = "http:/"
data = ["/var/cachebox"]
"""


def test_down_volumes_also_deletes_the_anonymous_volumes_an_image_declares(make_project):
    """An image that declares a `VOLUME` no named volume covers gets an anonymous volume
    that holds data too: `down --volumes` deletes it with the named ones."""
    p = make_project()
    tag = f"devenv-test/anon-volume:{p.name}"
    dockerfile = f"FROM {TEST_IMAGES['DEVENV_ADMINER_IMAGE']}\nVOLUME /srv/anon\n"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True,
                   check=True, capture_output=True,
                   env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/usr/local/bin"})
    anonymous: list[str] = []
    try:
        port = int(p.env["DEVENV_API_PORT"]) + 13  # inside the project's free block
        (p.path / "devenv.toml").write_text(ANON_TOML.format(image=tag, port=port))
        p.run("up", "--only", "cachebox")
        [box] = [c for c in p.containers() if "-cachebox-" in c["Names"]]
        mounts = json.loads(subprocess.run(
            ["docker", "inspect", "--format", "{{json .Mounts}}", box["ID"]],
            capture_output=True, text=True, check=True).stdout)
        anonymous = [m["Name"] for m in mounts if m["Destination"] == "/srv/anon"]
        named = [m["Name"] for m in mounts if m["Destination"] == "/var/cachebox"]
        assert len(anonymous) == 1 and len(named) == 1, mounts
        subprocess.run(["docker", "exec", "-u", "0", box["ID"], "sh", "-c",
                        "echo secret-rows > /srv/anon/table"], check=True)

        p.run("down", "--volumes", "--yes")
        for volume in (*anonymous, *named):
            gone = subprocess.run(["docker", "volume", "inspect", volume],
                                  capture_output=True, text=True)
            assert gone.returncode != 0, f"volume {volume} still holds its data"
    finally:
        p.cleanup()
        for volume in anonymous:
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


TEAM_SQL = """CREATE TABLE team_items (n int PRIMARY KEY, note text);
INSERT INTO team_items SELECT n, 'row ' || n FROM generate_series(1, 7) n;
COMMENT ON DATABASE cirkelline_agents IS 'from the team server';
"""
TEAM_ROLES_SQL = """CREATE ROLE team_owner; CREATE ROLE team_reader;
ALTER TABLE team_items OWNER TO team_owner;
GRANT SELECT ON team_items TO team_reader;
"""


@pytest.fixture(scope="module")
def team_dumps(stack, tmp_path_factory) -> dict[str, Path]:
    """Dumps of a database of the stack's name on another server: `pg_dump --create
    --clean` (plain) of it as it is, then plain and custom dumps once its roles own and are
    granted what it holds."""
    name, into = f"{stack.name}-team", tmp_path_factory.mktemp("team")
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "-e",
                    "POSTGRES_PASSWORD=team", "-e", "POSTGRES_DB=cirkelline_agents",
                    stack.env["DEVENV_POSTGRES_IMAGE"]], check=True, capture_output=True)
    try:
        for _ in range(300):
            if subprocess.run(["docker", "exec", name, "pg_isready", "-q", "-h", "127.0.0.1"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        made = {}
        for script, dumps in ((TEAM_SQL, {"clean.sql": ["--create", "--clean"]}),
                              (TEAM_ROLES_SQL, {"team.sql": [], "team.dump": ["-Fc"]})):
            subprocess.run(["docker", "exec", "-i", name, "psql", "-v", "ON_ERROR_STOP=1",
                            "-U", "postgres", "-d", "cirkelline_agents"], input=script,
                           text=True, check=True, capture_output=True)
            for file, options in dumps.items():
                with open(into / file, "wb") as out:
                    subprocess.run(["docker", "exec", name, "pg_dump", "-U", "postgres",
                                    *options, "cirkelline_agents"], stdout=out, check=True)
                made[file] = into / file
        return made
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)


def test_a_create_clean_dump_ends_in_the_database_it_claims(stack, team_dumps):
    """`pg_dump --create --clean` drops, recreates and \\connects to its database: the
    data ends in the stack's database (not in one dropped after the swap), with the
    database's comment; no other database is made or dropped."""
    sql(stack, "CREATE TABLE IF NOT EXISTS local_only (n int)")  # what an import replaces
    imported = stack.run("db", "import", str(team_dumps["clean.sql"]))
    assert sql(stack, "SELECT count(*) FROM team_items") == "7", imported.stderr
    assert sql(stack, "SELECT to_regclass('local_only') IS NULL") == "t"
    assert sql(stack, "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                      "WHERE datname = current_database()") == "from the team server"
    assert sql(stack, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database") \
        == "cirkelline_agents,postgres,template0,template1"
    assert "left out" not in imported.stderr and "devenv db restore auto-" in imported.stderr


def test_dumps_with_another_servers_roles_import_and_say_what_was_left_out(stack,
                                                                            team_dumps):
    """Owners and grants of roles this server does not have: the rest is imported (as
    --no-owner --no-privileges would) and the import names what it left out."""
    for file, words in (("team.sql", "GRANT/REVOKE"), ("team.dump", "privilege entr")):
        sql(stack, "DROP TABLE IF EXISTS team_items")
        imported = stack.run("db", "import", str(team_dumps[file]))
        assert sql(stack, "SELECT count(*) FROM team_items") == "7", imported.stderr
        assert "left out" in imported.stderr and "team_owner" in imported.stderr, file
        assert words in imported.stderr
        assert sql(stack, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'team_%'") == "0"


def tcp_login_works(p: Project, password: str) -> bool:
    """psql with the password from another container on the project's network, as the API
    logs in (inside PostgreSQL's own container, local connections are trusted)."""
    return subprocess.run(["docker", "run", "--rm", "--network", p.name, "-e", "PGPASSWORD",
                           "--entrypoint", "psql", p.env["DEVENV_POSTGRES_IMAGE"], "-h",
                           "postgres", "-U", "postgres", "-d", "cirkelline_agents", "-Atc",
                           "SELECT 1"], env={**os.environ, "PGPASSWORD": password},
                          capture_output=True).returncode == 0


def test_a_snapshot_taken_with_other_credentials_is_checked_before_the_swap(stack):
    """A snapshot keeps the login it was taken with: with another password in the settings
    the restore is refused before anything stops; one that did not record its login is
    restored and the refused login is named with the one command that fixes it;
    --adopt-credentials puts the project's login on the restored data."""
    old = stack.env.get("DEVENV_POSTGRES_PASSWORD", "password")  # the default
    new = {"DEVENV_POSTGRES_PASSWORD": "n3w-pw"}
    root = stack.path / ".devenv" / "snapshots"
    assert tcp_login_works(stack, old)
    stack.run("db", "snapshot", "creds")

    refused = stack.run("db", "restore", "creds", check=False, extra_env=new)
    assert refused.returncode == 1, refused.stderr
    assert "DEVENV_POSTGRES_PASSWORD is not the one it was taken with" in refused.stderr
    assert "devenv db restore creds --adopt-credentials" in refused.stderr
    assert "stopping" not in refused.stderr and "n3w-pw" not in refused.stderr

    subprocess.run(["cp", "-a", str(root / "creds"), str(root / "unrecorded")], check=True)
    manifest = json.loads((root / "unrecorded" / "manifest.json").read_text())
    del manifest["login"]  # as snapshots of an earlier devenv
    (root / "unrecorded" / "manifest.json").write_text(json.dumps(manifest))
    after = stack.run("db", "restore", "unrecorded", check=False, extra_env=new)
    assert after.returncode == 3, after.stderr
    assert "restored snapshot unrecorded, but PostgreSQL refuses this project's login" \
        in after.stderr
    assert "devenv db restore unrecorded --adopt-credentials" in after.stderr
    assert "devenv down --volumes" not in after.stderr  # no advice to delete the data

    adopted = stack.run("db", "restore", "unrecorded", "--adopt-credentials", extra_env=new)
    assert "with this project's PostgreSQL login" in adopted.stderr
    assert tcp_login_works(stack, "n3w-pw") and not tcp_login_works(stack, old)

    stack.run("db", "restore", "creds")  # back to the stack's own login
    assert tcp_login_works(stack, old)
    for name in ("creds", "unrecorded"):
        stack.run("db", "rm", name, "--yes")
