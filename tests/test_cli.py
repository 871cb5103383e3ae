"""CLI behaviour without an engine: exact messages and exit codes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from devenv.cli.main import cli


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    for key in [k for k in __import__("os").environ if k.startswith("DEVENV_")]:
        monkeypatch.delenv(key)

    def invoke(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


def test_help_lists_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    for name in ("up", "down", "ports", "status", "logs", "restart", "render", "doctor",
                 "config"):
        assert f"  {name} " in result.output


def test_unknown_service_exits_2(run):
    result = run("up", "--only", "db,nosuch")
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == "devenv: error: unknown service 'nosuch'"
    assert "hint: valid names: api, postgres" in result.output


def test_empty_service_name_exits_2(run):
    result = run("up", "--only", "db,,cache")
    assert result.exit_code == 2 and "empty service name" in result.output


def test_bad_port_setting_exits_2(run):
    result = run("up", env={"DEVENV_POSTGRES_PORT": "0"})
    assert result.exit_code == 2
    assert "DEVENV_POSTGRES_PORT=0 is outside 1-65535" in result.output


def test_engine_unreachable_exits_4_in_one_line(run):
    result = run("ports")
    assert result.exit_code == 4
    lines = result.output.splitlines()
    assert lines[0].startswith("devenv: error: cannot reach the Docker engine at "
                               "unix:///nonexistent/docker.sock")
    assert lines[1].startswith("hint: is the daemon running?")
    assert len(lines) == 2


def test_render_without_engine_still_writes(run, tmp_path):
    result = run("render", "--only", "db")
    assert result.exit_code == 0, result.output
    assert "created    compose/docker-compose.yml" in result.output
    assert (tmp_path / "compose" / "docker-compose.yml").exists()


def test_config_masks_secrets_and_names_sources(run, tmp_path):
    (tmp_path / ".env").write_text("DEVENV_POSTGRES_PASSWORD=hunter22\n")
    result = run("config", env={"DEVENV_REDIS_PORT": "6400"})
    assert result.exit_code == 0
    assert "hunter22" not in result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[1:]}
    assert lines["DEVENV_POSTGRES_PASSWORD"] == ["***", ".env"]
    assert lines["DEVENV_REDIS_PORT"] == ["6400", "environment"]
    shown = run("config", "--show-secrets")
    assert "hunter22" in shown.output


def test_project_flag_wins(run):
    result = run("-p", "other", "config", "--json", env={"DEVENV_PROJECT": "env"})
    assert '"value": "other"' in result.output and '"source": "flag"' in result.output


def test_down_volumes_without_yes_in_a_script(run):
    result = run("down", "--volumes")
    assert result.exit_code == 2 and "--yes" in result.output


def test_logs_tail_must_be_a_number(run):
    result = run("logs", "--tail", "many")
    assert result.exit_code == 2


def test_shell_completion_offers_services_and_aliases(run):
    result = run(env={"_DEVENV_COMPLETE": "bash_complete", "COMP_WORDS": "devenv up --only db,c",
                      "COMP_CWORD": "3"})
    assert "db,cache" in result.output


@pytest.mark.parametrize("command", [["down", "--volumes", "--yes"], ["up"], ["ports"]])
def test_empty_project_flag_never_means_the_default_project(run, command):
    result = run("-p", "", *command)
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == \
        "devenv: error: DEVENV_PROJECT is empty (given by a command-line flag)"
    assert "hint: " in result.output and "Traceback" not in result.output


def test_empty_project_in_dotenv_is_refused(run, tmp_path):
    (tmp_path / ".env").write_text("DEVENV_PROJECT=\n")
    result = run("down", "--volumes", "--yes")
    assert result.exit_code == 2
    assert "DEVENV_PROJECT is empty (in the .env file)" in result.output


def test_bad_image_reference_exits_2_naming_the_setting(run):
    result = run("up", "--only", "cache", env={"DEVENV_REDIS_IMAGE": "Bars-redis:local"})
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        "devenv: error: DEVENV_REDIS_IMAGE='Bars-redis:local' is not an image reference: "
        "the repository name must be lowercase")


@pytest.mark.parametrize("value", ["nan", "inf", "1e3", "-5"])
def test_timeout_flag_is_parsed_strictly(run, value):
    result = run("up", "--only", "db", "--timeout", value)
    assert result.exit_code == 2
    assert f"DEVENV_WAIT_TIMEOUT={value!r} is not a number of seconds" in result.output


def test_ctrl_c_in_logs_follow_exits_130_quietly(run, monkeypatch):
    import devenv.stack.usecases

    def lines(*args, **kwargs):
        yield "db-1  | ready to accept connections"
        raise KeyboardInterrupt

    monkeypatch.setattr(devenv.stack.usecases, "logs", lines)
    result = run("logs", "-f", "db")
    assert result.exit_code == 130
    assert result.output == "db-1  | ready to accept connections\n"


HOLDER = """
import sys, time
from pathlib import Path
from devenv.cli.main import cli
from devenv.config.state import project_lock

@cli.command("hold")
def hold():
    with project_lock(Path(sys.argv[1]), "p", "up", 5):
        print("held", flush=True)
        time.sleep(60)

cli(["hold"], prog_name="devenv")
"""


def test_sigterm_is_handled_like_ctrl_c_and_releases_the_lock(tmp_path):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from devenv.errors import EXIT_CODES, EXIT_TERMINATED

    root = Path(__file__).resolve().parent.parent  # `-c` imports devenv from here
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    assert (tmp_path / "p.lock").read_text() == f"devenv up (pid {proc.pid})"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == EXIT_TERMINATED == 143 and 143 in EXIT_CODES
    assert err == "devenv: terminated (SIGTERM); run the command again to finish\n"
    assert (tmp_path / "p.lock").read_text() == ""  # the lock was left by its holder


def test_the_sigterm_handler_is_only_set_while_a_command_runs(run):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    run("config")
    assert signal.getsignal(signal.SIGTERM) is before


def test_dashboard_port_out_of_range_is_a_usage_error():
    from devenv.cli.main import cli

    result = CliRunner().invoke(cli, ["dashboard", "--port", "70000"])
    assert result.exit_code == 2 and "70000 is not in the range 1<=x<=65535" in result.output


def test_exec_without_a_command_exits_2(run):
    result = run("exec", "api", "--")
    assert result.exit_code == 2
    assert result.output.startswith("devenv: error: name the command to run after --")


def test_up_watch_needs_the_api(run):
    result = run("up", "--only", "db", "--watch")
    assert result.exit_code == 2
    assert "devenv: error: --watch watches api, which this up does not start" in \
        result.output


def test_up_watch_with_a_missing_watch_path_exits_2_before_starting(run, tmp_path):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "Dockerfile").write_text("FROM scratch\n")
    result = run("up", "--watch", env={"DEVENV_API_BUILD": "team",
                                       "DEVENV_API_WATCH_SYNC": "src"})
    assert result.exit_code == 2
    assert f"DEVENV_API_WATCH_SYNC: src does not exist in {tmp_path / 'team'}" in result.output


def test_lan_for_the_database_needs_a_second_yes_in_a_script(run, monkeypatch):
    from devenv.live import devices

    monkeypatch.setattr(devices, "route_address", lambda: "192.168.1.20")
    result = run("up", "--lan", "api,db")
    assert result.exit_code == 2
    assert "devenv: error: --lan postgres puts the team's data on the network" in result.output
    assert "hint: name it and add --yes to confirm in a script" in result.output


def test_lan_without_a_lan_address_exits_1(run, monkeypatch):
    from devenv.live import devices

    monkeypatch.setattr(devices, "route_address", lambda: None)
    result = run("up", "--lan", "api")
    assert result.exit_code == 1
    assert result.output.startswith("devenv: error: this machine has no LAN address")

def test_data_commands_that_delete_need_yes_in_a_script(run, tmp_path):
    from devenv.data import snapshots

    root = tmp_path / ".devenv" / "snapshots"
    work = snapshots.new_workdir(root, "base")
    (work / "redis.tar").write_bytes(b"x")
    snapshots.commit(work, root, "base", pg_major="", database="d", project="p", auto=False)
    for args in (("db", "rm", "base"), ("db", "reset")):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert "add --yes to confirm in a script" in result.output
    assert (root / "base" / "redis.tar").exists()


def test_db_rm_of_a_folder_devenv_did_not_write_is_refused_before_it_asks(run, tmp_path):
    folder = tmp_path / ".devenv" / "snapshots" / "photos"
    folder.mkdir(parents=True)
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    result = run("db", "rm", "photos")  # no --yes: it would ask, but refuses first
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"devenv: error: {folder} is not a devenv snapshot")
    assert "hint: it is not devenv's to delete" in result.output
    assert (folder / "holiday.jpg").exists()


def test_a_snapshot_name_with_a_slash_exits_2(run):
    result = run("db", "rm", "../base", "--yes")
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == "devenv: error: '../base' is not a snapshot name"


def test_db_snapshots_json_is_a_list(run):
    result = run("db", "snapshots", "--json")
    assert result.exit_code == 0 and result.output.strip() == "[]"


def test_snapshot_names_complete(run, tmp_path):
    from devenv.data import snapshots

    root = tmp_path / ".devenv" / "snapshots"
    work = snapshots.new_workdir(root, "before-upgrade")
    (work / "redis.tar").write_bytes(b"x")
    snapshots.commit(work, root, "before-upgrade", pg_major="", database="d", project="p",
                     auto=False)
    result = CliRunner().invoke(cli, [], env={"_DEVENV_COMPLETE": "bash_complete",
                                              "COMP_WORDS": "devenv db restore be",
                                              "COMP_CWORD": "3"}, prog_name="devenv")
    assert "before-upgrade" in result.output



def test_tunnel_bad_toml_exits_2_naming_file_table_and_field(run, tmp_path):
    (tmp_path / "devenv.toml").write_text('[tunnels.prod-db]\nvia = "b"\ntarget = "db:5432"\n'
                                          'kind = "mysql"\n')
    result = run("tunnel", "up", "prod-db")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == (f"devenv: error: {tmp_path / 'devenv.toml'}: [tunnels.prod-db]: "
                        "`kind` = 'mysql' is not one of postgres, redis, http, tcp")
    assert lines[1].startswith("hint: kind is one of")
    (tmp_path / "devenv.toml").write_text("[tunnels.prod-db\n")
    result = run("tunnel", "ls")
    assert result.exit_code == 2 and "devenv.toml: invalid TOML" in result.output


@pytest.mark.parametrize("command", [("tunnel", "ls"), ("tunnel", "up"), ("tunnel", "down",
                                                                         "prod-db")])
def test_a_target_port_with_a_non_ascii_digit_exits_2_in_one_line(run, tmp_path, command):
    (tmp_path / "devenv.toml").write_text('[tunnels.prod-db]\nvia = "b"\n'
                                          'target = "db:5432\u00b2"\n')
    result = run(*command)
    lines = result.output.splitlines()
    assert result.exit_code == 2, result.output
    if command[1] == "down":  # down warns about the table, then cannot find the name
        assert "is not host:port" in lines[0] and lines[1].startswith("devenv: error: ")
        return
    assert lines[0].startswith("devenv: error: ") and "`target` = 'db:5432\u00b2'" in lines[0]
    assert lines[1].startswith("hint: target is host:port") and len(lines) == 2


def test_tunnel_ls_lists_declared_tunnels_down_and_up_refuses_unknown(run, tmp_path):
    (tmp_path / "devenv.toml").write_text('[tunnels.prod-db]\nvia = "b"\ntarget = "db:5432"\n'
                                          'kind = "postgres"\nproduction = true\n')
    result = run("tunnel", "ls")
    assert result.exit_code == 0
    assert result.output.splitlines()[1].split() == ["prod-db", "PROD", "-", "down", "b", "->",
                                                     "db:5432"]
    result = run("tunnel", "up", "nope")
    assert result.exit_code == 2 and "tunnel 'nope' is not declared" in result.output
    assert run("tunnel", "down").output.strip() == "closed: no tunnel was open"


def test_tunnel_names_complete_from_devenv_toml(tmp_path, monkeypatch):
    from devenv.cli.tunnel import _complete_tunnels

    monkeypatch.chdir(tmp_path)
    (tmp_path / "devenv.toml").write_text('[tunnels.prod-db]\n[tunnels.staging-db]\n'
                                          '[tunnels.cache]\n')
    ctx = cli.make_context("devenv", ["tunnel", "up"], resilient_parsing=True)
    assert _complete_tunnels(ctx, None, "") == ["prod-db", "staging-db", "cache"]
    assert _complete_tunnels(ctx, None, "st") == ["staging-db"]


def test_psql_through_a_tunnel_that_is_not_open_exits_2(run, tmp_path):
    (tmp_path / "devenv.toml").write_text('[tunnels.prod-db]\nvia = "b"\ntarget = "db:5432"\n'
                                          'kind = "postgres"\n[tunnels.web]\nvia = "b"\n'
                                          'target = "web:80"\nkind = "http"\n')
    result = run("psql", "--tunnel", "prod-db", "-c", "select 1")
    assert result.exit_code == 2
    assert result.output.splitlines() == ["devenv: error: tunnel prod-db is down",
                                          "hint: open it: devenv tunnel up prod-db"]
    result = run("psql", "--tunnel", "web")
    assert result.exit_code == 2 and "tunnel web is kind http, not postgres" in result.output


def test_ls_reads_no_settings_and_completes_like_any_command(run, tmp_path):
    # a broken .env where it runs is no business of `ls`: only the engine is
    (tmp_path / ".env").write_text("this is not a dotenv line\n")
    (tmp_path / "devenv.toml").write_text("[services.x\n")
    result = run("ls")
    assert result.exit_code == 4, result.output
    assert result.output.startswith("devenv: error: cannot reach the Docker engine at ")
    result = CliRunner().invoke(cli, [], env={"_DEVENV_COMPLETE": "bash_complete",
                                              "COMP_WORDS": "devenv l", "COMP_CWORD": "1"},
                                prog_name="devenv")
    assert "plain,ls" in result.output.split()
    result = CliRunner().invoke(cli, [], env={"_DEVENV_COMPLETE": "bash_complete",
                                              "COMP_WORDS": "devenv ls --", "COMP_CWORD": "2"},
                                prog_name="devenv")
    assert "plain,--json" in result.output.split()
