"""What `restart`, `ports` and `status` say when the stack is not (all) there."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_restart_with_nothing_running_says_how_to_start(project):
    result = project.run("restart", check=False)
    assert result.returncode == 2
    assert "nothing of project" in result.stderr and "is running" in result.stderr
    assert "hint: start it with `devenv up`" in result.stderr
    assert "restarting" not in result.stderr and result.stdout == ""
