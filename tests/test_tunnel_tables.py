"""devenv/tunnels.py: the [tunnels.NAME] tables, credentials, URLs. (Not test_tunnels.py:
that basename is the end-to-end module in tests/e2e/.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.errors import UsageError
from devenv.tunnels.tables import (
    Credentials,
    credentials,
    load_tunnels,
    parse_tunnels,
    select_tunnels,
    tunnel_url,
    tunnel_values,
)

FILE = Path("/p/devenv.toml")
GOOD = {"via": "user@bastion-host", "target": "prod-db.internal:5432", "kind": "postgres",
        "production": True, "ssh_options": ["-p", "2222"]}


def test_the_issue_example_parses():
    spec = parse_tunnels(FILE, {"prod-db": GOOD})["prod-db"]
    assert (spec.via, spec.target_host, spec.target_port) == ("user@bastion-host",
                                                              "prod-db.internal", 5432)
    assert spec.production and spec.ssh_options == ("-p", "2222")
    assert spec.env_key == "PROD_DB_URL" and spec.wanted_port == 5432


@pytest.mark.parametrize(("change", "words"), [
    ({"colour": "red"}, "unknown field `colour`"),
    ({"target": "prod-db.internal"}, "`target` = 'prod-db.internal' is not host:port"),
    ({"target": "db:99999"}, "`target` = 'db:99999'"),
    ({"target": "bad host:5432"}, "`target`"),
    ({"kind": "mysql"}, "`kind` = 'mysql' is not one of postgres, redis, http, tcp"),
    ({"via": "-oProxyCommand=evil"}, "`via`"),
    ({"via": "two words"}, "`via`"),
    ({"production": "yes"}, "`production`"),
    ({"ssh_options": "-p 2222"}, "`ssh_options`"),
    ({"local_port": 0}, "`local_port`"),
    ({"local_port": True}, "`local_port`"),
    ({"path": "health"}, "`path`"),
    # the URL of `ports --env` is single-quoted: a quote was an internal error there
    ({"kind": "http", "path": "/it's"}, "`path` = \"/it's\" holds \"'\", which a URL"),
    ({"kind": "http", "path": "/<b>"}, "`path` = '/<b>' holds '<' '>'"),
])
def test_bad_fields_name_the_file_table_and_field(change, words):
    with pytest.raises(UsageError) as caught:
        parse_tunnels(FILE, {"prod-db": {**GOOD, **change}})
    assert caught.value.message.startswith("/p/devenv.toml: [tunnels.prod-db]")
    assert words in caught.value.message
    assert caught.value.exit_code == 2 and caught.value.hint


@pytest.mark.parametrize("port", ["5432\u00b2", "\u0665\u0664\u0663\u0662", "+5432", "5_432",
                                  " 5432", "05432", "5432\n", "0", "65536", "1e3"])
def test_a_target_port_is_plain_ascii_digits(port):
    """str.isdigit() says yes to `5432²` (int() then fails: an internal error in `tunnel ls`,
    `up` and doctor) and to Arabic-Indic digits (int() reads them): both are refused, as the
    settings refuse them, with the field named."""
    with pytest.raises(UsageError) as caught:
        parse_tunnels(FILE, {"prod-db": {**GOOD, "target": f"prod-db.internal:{port}"}})
    assert "[tunnels.prod-db]: `target`" in caught.value.message
    assert caught.value.exit_code == 2 and "host:port" in caught.value.hint


def test_a_name_or_host_with_a_line_break_is_refused():
    with pytest.raises(UsageError, match="the name must be"):
        parse_tunnels(FILE, {"prod-db\n": GOOD})
    with pytest.raises(UsageError, match="`target`"):
        parse_tunnels(FILE, {"prod-db": {**GOOD, "target": "db\n:5432"}})


@pytest.mark.parametrize(("options", "words"), [
    (["-f"], "holds -f (-f): ssh would fork"),
    (["-fN"], "holds -fN (-f): ssh would fork"),
    (["-Nf"], "holds -Nf (-f)"),
    (["-C", "-qf"], "holds -qf (-f)"),
    (["-o", "ForkAfterAuthentication=yes"], "holds -o ForkAfterAuthentication=yes: ssh would fork"),
    (["-oforkafterauthentication yes"], "holds -o forkafterauthentication yes"),
    (["-o", "ControlMaster=auto"], "connection-sharing master"),
    (["-oControlPersist=10m"], "connection-sharing master"),
    (["-o", " ControlPath /tmp/cm-%C"], "shared connection"),
    (["-M"], "connection-sharing master"),
    (["-S", "/tmp/cm"], "shared connection"),
    (["-O", "exit"], "only send a command"),
    (["-E", "/tmp/ssh.log"], "a file devenv does not read"),
    (["-W", "db:5432"], "standard input"),
    (["bastion2"], "holds 'bastion2', which is no option: ssh would take it"),
    (["-p", "2222", "--", "x"], "holds '--'"),
    (["-p"], "ends with -p, which needs a value"),
])
def test_ssh_options_that_would_fork_share_or_redirect_ssh_are_refused(options, words):
    """Read as ssh reads its arguments: combined flags, `-oKey=value` and `-o Key value`."""
    with pytest.raises(UsageError) as caught:
        parse_tunnels(FILE, {"prod-db": {**GOOD, "ssh_options": options}})
    assert caught.value.message.startswith("/p/devenv.toml: [tunnels.prod-db]: `ssh_options` ")
    assert words in caught.value.message
    assert "foreground" in caught.value.hint


@pytest.mark.parametrize("options", [["-p", "2222"], ["-p2222"], ["-o", "Port 2222"],
                                     ["-oProxyJump=jump"], ["-J", "jump", "-4", "-C"],
                                     ["-i", "-fkey"], ["-o", "ControlMasterish=1"]])
def test_ordinary_ssh_options_pass(options):
    spec = parse_tunnels(FILE, {"prod-db": {**GOOD, "ssh_options": options}})["prod-db"]
    assert spec.ssh_options == tuple(options)


def test_missing_fields_and_bad_names():
    with pytest.raises(UsageError, match="`target` is missing"):
        parse_tunnels(FILE, {"x": {"via": "b"}})
    with pytest.raises(UsageError, match="the name must be lowercase"):
        parse_tunnels(FILE, {"Prod DB": GOOD})
    with pytest.raises(UsageError, match="DATABASE_URL, which postgres uses"):
        parse_tunnels(FILE, {"database": GOOD})
    with pytest.raises(UsageError, match="also tunnel prod-db's"):
        parse_tunnels(FILE, {"prod-db": GOOD, "prod_db": GOOD})


def test_a_tunnel_cannot_take_the_device_urls_variables():
    # EXPO-PUBLIC-API's URL would be EXPO_PUBLIC_API_URL, which `ports --env` writes for
    # the API's device URLs
    with pytest.raises(UsageError, match="EXPO_PUBLIC_API_URL, which api's device URLs use"):
        parse_tunnels(FILE, {"expo-public-api": GOOD})


def test_a_path_remembered_by_an_older_tunnel_never_reaches_a_url():
    from devenv.tunnels.runtime import TunnelRecord
    from devenv.tunnels.usecases import _spec_of

    record = TunnelRecord(name="web", path=Path("/p/web.json"), port=8080, state="up",
                          supervisor_pid=1, ssh_pid=None, restarts=0, since=0.0,
                          last_error="", meta={"target": "web:80", "kind": "http",
                                               "path": "/it's"})
    assert _spec_of(record).path == "/"


def test_ipv6_target_keeps_its_brackets():
    spec = parse_tunnels(FILE, {"v6": {"via": "b", "target": "[::1]:6379"}})["v6"]
    assert spec.target == "[::1]:6379" and spec.kind == "tcp"


def test_the_file_is_read_once_and_invalid_toml_is_a_usage_error(tmp_path):
    assert load_tunnels(tmp_path) == {}
    (tmp_path / "devenv.toml").write_text("[tunnels.a\nvia = 1\n")
    with pytest.raises(UsageError, match=r"devenv.toml is not valid TOML"):
        load_tunnels(tmp_path)
    (tmp_path / "devenv.toml").write_text("tunnels = 3\n")
    with pytest.raises(UsageError, match="must be a table of tables"):
        load_tunnels(tmp_path)
    (tmp_path / "devenv.toml").write_text('[tunnels.a]\nvia = "b"\ntarget = "c:1"\n')
    assert list(load_tunnels(tmp_path)) == ["a"]


def test_selection_refuses_undeclared_names():
    specs = parse_tunnels(FILE, {"prod-db": GOOD})
    assert select_tunnels(specs, [], Path("/p"))[0].name == "prod-db"
    with pytest.raises(UsageError, match="'nope' is not declared in /p/devenv.toml") as caught:
        select_tunnels(specs, ["nope"], Path("/p"))
    assert caught.value.hint == "declared: prod-db"
    with pytest.raises(UsageError, match="no tunnels are declared"):
        select_tunnels({}, [], Path("/p"))


def test_credentials_come_from_the_environment_over_dotenv():
    spec = parse_tunnels(FILE, {"prod-db": GOOD})["prod-db"]
    values = tunnel_values({"DEVENV_TUNNEL_PROD_DB_PASSWORD": "env"},
                           {"DEVENV_TUNNEL_PROD_DB_PASSWORD": "file",
                            "DEVENV_TUNNEL_PROD_DB_DB": "agents", "OTHER": "x"})
    assert values == {"DEVENV_TUNNEL_PROD_DB_PASSWORD": "env", "DEVENV_TUNNEL_PROD_DB_DB": "agents"}
    assert credentials(spec, values) == Credentials("postgres", "env", "agents")


def test_urls_mask_the_password_and_production_postgres_is_read_only():
    creds = Credentials("app", "p@ss word", "agents")
    assert tunnel_url("postgres", 5433, creds) == "postgresql://app:***@127.0.0.1:5433/agents"
    shown = tunnel_url("postgres", 5433, creds, production=True, show_secrets=True)
    assert shown == ("postgresql://app:p%40ss%20word@127.0.0.1:5433/agents"
                     "?options=-c%20default_transaction_read_only%3Don")
    assert tunnel_url("redis", 6380, Credentials("", "", "")) == "redis://127.0.0.1:6380/0"
    assert tunnel_url("redis", 6380, creds) == "redis://:***@127.0.0.1:6380/0"
    assert tunnel_url("http", 8081, creds, path="/health") == "http://127.0.0.1:8081/health"
    assert tunnel_url("tcp", 2222, creds) == "tcp://127.0.0.1:2222"
