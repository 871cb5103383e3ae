"""exec and run: the command after `--`, and services that are not there."""

from __future__ import annotations

import pytest

from devenv.context import Context
from devenv.errors import EXIT_USAGE, SelectionError, UsageError
from devenv.stack.inside import _command, exec_in, run_in


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


MAIL = ('[services.mail]\nimage = "mail:1"\nport = 1025\nhost_port = {port}\n'
        'probe = "tcp"\naliases = ["smtp"]\n')


@pytest.mark.parametrize("word", ["mail", "smtp", "SMTP"])
def test_exec_and_run_take_a_devenv_toml_service_by_name_or_alias(fake_context, fake_engine,
                                                                  word):
    from devenv.stack import usecases as stack

    ctx = fake_context()
    (ctx.project_dir / "devenv.toml").write_text(
        MAIL.format(port=fake_context.ports["DEVENV_API_PORT"] + 11))
    fake_engine.images.add("mail:1")
    stack.up(ctx, ["mail"])
    assert exec_in(ctx, word, ["--", "true"]) == 0
    assert run_in(ctx, word, ["--", "true"]) == 0
    assert [call for call in fake_engine.calls if call[0] in ("exec", "run")] == [
        ("exec", ("mail", ("true",))), ("run", ("mail", ("true",)))]
    # and a name no catalog knows still lists the project's names with the built-in ones
    with pytest.raises(SelectionError) as caught:
        exec_in(ctx, "mali", ["true"])
    assert "mail" in caught.value.hint and "smtp" in caught.value.hint
