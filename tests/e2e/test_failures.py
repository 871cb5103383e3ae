"""Clear failures: one line that says what and how to fix it, never a traceback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_unreachable_docker_host(project):
    result = project.run("up", check=False, extra_env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 4
    assert "cannot reach the Docker engine at unix:///nonexistent.sock" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    result = project.run("ports", check=False,
                         extra_env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert result.returncode == 4 and "cannot reach the Docker engine" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_image_says_so(project):
    result = project.run("up", "--only", "cache", check=False,
                         extra_env={"DEVENV_REDIS_IMAGE": "devenv-test/no-such-image:1"})
    assert result.returncode == 4, result.stderr
    assert "image devenv-test/no-such-image:1 is not on this engine" in result.stderr
    assert "try to pull" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_exits_2(project):
    result = project.run("up", check=False, extra_env={"DEVENV_REDIS_PORT": "99999"})
    assert result.returncode == 2
    assert "DEVENV_REDIS_PORT=99999 is outside 1-65535" in result.stderr
    assert project.containers() == []
