"""The PostgreSQL password changed after its volume exists: said, with what to do."""

from __future__ import annotations

import json

import pytest
from checks import psql

pytestmark = pytest.mark.e2e


def test_changed_password_after_the_volume_exists_is_a_clear_error(project):
    project.run("up", "--only", "db")
    (project.path / ".env").write_text("DEVENV_POSTGRES_PASSWORD=a-new-one\n")
    again = project.run("up", "--only", "db", check=False)
    assert again.returncode == 3, again.stderr
    assert "postgres answers, but the configured login is refused: password " \
           "authentication failed" in again.stderr
    assert "DEVENV_POSTGRES_PASSWORD (or DEVENV_POSTGRES_USER) changed" in again.stderr
    assert "devenv down --volumes" in again.stderr and "Traceback" not in again.stderr
    assert "a-new-one" not in again.stderr + again.stdout
    rows = {r["service"]: r for r in json.loads(project.run("ports", "--json").stdout)}
    assert rows["postgres"]["state"].startswith("answers, but the configured login is refused")
    plain = project.run("ports")
    assert "hint: PostgreSQL keeps the user, password and database" in plain.stderr
    # the old password still opens the data: nothing was lost
    port = rows["postgres"]["port"]
    assert psql(f"postgresql://postgres:password@127.0.0.1:{port}/cirkelline_agents",
                "select 1") == "1"
    (project.path / ".env").write_text("")
    assert project.ports()["postgres"]["state"] == "ready"
