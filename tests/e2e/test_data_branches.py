"""[data] branches on the real engine with a real git repository: each branch keeps its own
data; a new branch starts from its parent's; a switch back copies nothing. How long a switch
takes against `devenv restart db` is bench/branches.py's to say, not a test's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import Project


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
