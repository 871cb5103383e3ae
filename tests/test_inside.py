"""exec and run: the command after `--`, and services that are not there."""

from __future__ import annotations

import pytest

from devenv.context import Context
from devenv.errors import EXIT_USAGE, SelectionError, UsageError
from devenv.stack.inside import _command, run_in


def test_the_double_dash_is_dropped_and_a_command_is_needed():
    assert _command(["--", "ls", "-la"], "api", "exec") == ["ls", "-la"]
    assert _command(["ls", "--", "x"], "api", "exec") == ["ls", "--", "x"]
    with pytest.raises(UsageError, match="name the command to run after --"):
        _command(["--"], "api", "exec")


def test_run_needs_the_service_in_the_rendered_stack(tmp_path):
    ctx = Context(project_dir=tmp_path, environ={})
    with pytest.raises(UsageError) as caught:
        run_in(ctx, "backend", ["true"])
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.message == "api is not in the rendered stack of project cirkelline"
    with pytest.raises(SelectionError):
        run_in(ctx, "nosuch", ["true"])
