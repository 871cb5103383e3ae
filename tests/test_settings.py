from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devenv.config.settings import SETTINGS, load_settings
from devenv.errors import EXIT_USAGE, SettingError, UsageError


def load(tmp_path: Path, env_text: str | None = None, environ=None, flags=None):
    if env_text is not None:
        (tmp_path / ".env").write_text(env_text)
    return load_settings(tmp_path, environ or {}, flags or {})


def test_defaults(tmp_path):
    s = load(tmp_path)
    assert s.project == "cirkelline" and s.network == "cirkelline"
    assert s.bind == "127.0.0.1"
    assert s.port("postgres") == 5432 and s.port("grafana") == 3000
    assert s["DEVENV_POSTGRES_USER"] == "postgres"
    assert s["DEVENV_POSTGRES_DB"] == "cirkelline_agents"
    assert s.wait_timeout == 120
    assert s.reserved_ports == (3000, 8081, 19000)
    assert set(s.sources.values()) == {"default"}


def test_precedence_flag_over_environment_over_dotenv(tmp_path):
    s = load(tmp_path, "DEVENV_POSTGRES_PORT=6000\nDEVENV_REDIS_PORT=6001\nDEVENV_API_PORT=6002\n",
             environ={"DEVENV_REDIS_PORT": "7001", "DEVENV_API_PORT": "7002"},
             flags={"DEVENV_API_PORT": "8002"})
    assert (s.port("postgres"), s.port("redis"), s.port("api")) == (6000, 7001, 8002)
    assert s.sources["DEVENV_POSTGRES_PORT"] == ".env"
    assert s.sources["DEVENV_REDIS_PORT"] == "environment"
    assert s.sources["DEVENV_API_PORT"] == "flag"


def test_dotenv_is_never_written_into_os_environ(tmp_path, monkeypatch):
    monkeypatch.delenv("DEVENV_PROJECT", raising=False)
    load(tmp_path, "DEVENV_PROJECT=fromfile\n")
    import os

    assert "DEVENV_PROJECT" not in os.environ


def test_other_project_gets_its_own_network(tmp_path):
    assert load(tmp_path, environ={"DEVENV_PROJECT": "foo"}).network == "foo"
    s = load(tmp_path, environ={"DEVENV_PROJECT": "foo", "DEVENV_NETWORK": "shared"})
    assert s.network == "shared"


def test_values_are_literal(tmp_path):
    s = load(tmp_path, "DEVENV_POSTGRES_PASSWORD='pa$word ${HOME} #x'\n")
    assert s["DEVENV_POSTGRES_PASSWORD"] == "pa$word ${HOME} #x"


@pytest.mark.parametrize("value, words", [
    ("70000", "outside 1-65535"), ("0", "outside 1-65535"), ("abc", "not a port"),
    ("-1", "not a port"), ("5432.5", "not a port"),
])
def test_bad_port_names_the_setting(tmp_path, value, words):
    with pytest.raises(SettingError) as info:
        load(tmp_path, environ={"DEVENV_REDIS_PORT": value})
    assert "DEVENV_REDIS_PORT" in info.value.message and words in info.value.message
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("key, value", [
    ("DEVENV_WAIT_TIMEOUT", "soon"), ("DEVENV_WAIT_TIMEOUT", "0"), ("DEVENV_BIND", "localhost:1"),
    ("DEVENV_PROJECT", "Has Spaces"), ("DEVENV_POSTGRES_IMAGE", "bad image"),
    ("DEVENV_RESERVED_PORTS", "3000,x"), ("DEVENV_POSTGRES_PASSWORD", "two\nlines"),
    ("DEVENV_NETWORK", "bad/net"), ("DEVENV_POSTGRES_USER", ""),
    ("DEVENV_SNAPSHOT_DIR", ""), ("DEVENV_SEED_DIR", " "),
    ("DEVENV_API_COMMAND", "node a.js\n    privileged: true"),
])
def test_bad_values_exit_2_naming_the_setting(tmp_path, key, value):
    with pytest.raises(SettingError) as info:
        load(tmp_path, environ={key: value})
    assert key in info.value.message
    assert info.value.hint


def test_same_port_for_two_services_is_refused(tmp_path):
    with pytest.raises(SettingError) as info:
        load(tmp_path, environ={"DEVENV_REDIS_PORT": "5432"})
    assert "DEVENV_POSTGRES_PORT" in info.value.message
    assert "DEVENV_REDIS_PORT" in info.value.message


def test_garbage_line_names_the_line(tmp_path):
    with pytest.raises(UsageError) as info:
        load(tmp_path, "DEVENV_PROJECT=ok\nthis is not a setting\n")
    assert "line 2" in info.value.message


def test_invalid_utf8_is_refused(tmp_path):
    (tmp_path / ".env").write_bytes(b"DEVENV_PROJECT=ok\nDEVENV_POSTGRES_DB=\xff\xfe\n")
    with pytest.raises(UsageError) as info:
        load_settings(tmp_path, {}, {})
    assert "UTF-8" in info.value.message and "line 2" in info.value.message


def test_missing_env_file_named_by_flag(tmp_path):
    with pytest.raises(UsageError) as info:
        load_settings(tmp_path, {}, {}, env_file=tmp_path / "nope.env")
    assert "does not exist" in info.value.message


def test_unknown_keys_are_collected(tmp_path):
    s = load(tmp_path, "DEVENV_POSTGRES_PROT=1\nOTHER=1\n")
    assert s.unknown_keys == ("DEVENV_POSTGRES_PROT",)


def test_settings_table_has_help_for_every_key():
    assert all(spec.help for spec in SETTINGS)
    assert len({spec.key for spec in SETTINGS}) == len(SETTINGS)


@pytest.mark.parametrize("key", ["DEVENV_REDIS_PORT", "DEVENV_RESERVED_PORTS"])
@pytest.mark.parametrize("value", ["8_081", "1_0", "+5", " 5", "5 ", "1e3", "nan", "inf",
                                   "0x50", "\u0665", "05", "5.0"])
def test_ports_are_plain_digits_only(tmp_path, key, value):
    with pytest.raises(SettingError) as info:
        load(tmp_path, environ={key: value})
    assert key in info.value.message and info.value.exit_code == EXIT_USAGE


def test_port_list_is_comma_separated_digits(tmp_path):
    s = load(tmp_path, environ={"DEVENV_RESERVED_PORTS": "3000,8081"})
    assert s.reserved_ports == (3000, 8081)
    assert load(tmp_path, environ={"DEVENV_RESERVED_PORTS": ""}).reserved_ports == ()
    for bad in ("3000,,8081", "3000, 8081", "3000,"):
        with pytest.raises(SettingError):
            load(tmp_path, environ={"DEVENV_RESERVED_PORTS": bad})


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e3", "1_0", "+5", " 5", "-1",
                                   "0", "0.0", "", "86401", "9" * 400, "\u0665"])
def test_seconds_are_a_finite_decimal_above_zero(tmp_path, value):
    with pytest.raises(SettingError) as info:
        load(tmp_path, environ={"DEVENV_WAIT_TIMEOUT": value})
    assert "DEVENV_WAIT_TIMEOUT" in info.value.message
    assert "decimal number of seconds above 0" in info.value.hint


@pytest.mark.parametrize("value, seconds", [("120", 120.0), ("0.5", 0.5), ("2.", 2.0),
                                            (".25", 0.25), ("86400", 86400.0)])
def test_good_seconds(tmp_path, value, seconds):
    assert load(tmp_path, environ={"DEVENV_WAIT_TIMEOUT": value}).wait_timeout == seconds


@pytest.mark.parametrize("value", ["1_0", "+5", " 5", "1e3", "nan", "0", "2.0", "100001", "-3"])
def test_counts_are_whole_numbers(tmp_path, value):
    with pytest.raises(SettingError) as info:
        load(tmp_path, environ={"DEVENV_API_DB_POOL_SIZE": value})
    assert "DEVENV_API_DB_POOL_SIZE" in info.value.message


@pytest.mark.parametrize("image", [
    "postgres:16", "prom/prometheus:v2.53.0", "registry.example.com:5000/team/api:1.2",
    "localhost/api", "localhost:5000/api:dev", "devenv-test/postgres:latest", "a__b/c-d.e:T_1",
    "redis@sha256:" + "a" * 64, "redis:7@sha256:" + "0" * 64, "[::1]:5000/x:y", "REG.IO/x",
])
def test_valid_image_references(tmp_path, image):
    assert load(tmp_path, environ={"DEVENV_REDIS_IMAGE": image}).image("redis") == image


@pytest.mark.parametrize("image, words", [
    ("Bars-redis:local", "lowercase"), ("team/Redis", "lowercase"), ("redis:-x", "tag"),
    ("redis:" + "t" * 129, "tag"), ("redis@sha256:abc", "digest"), ("a..b", "repository"),
    ("redis:7:8", "repository"), ("-redis", "repository"), ("redis/", "repository"),
    ("bad_host.io:x/y", "registry"), ("a" * 256, "255"),
])
def test_image_references_follow_dockers_grammar(tmp_path, image, words):
    with pytest.raises(SettingError) as info:
        load(tmp_path, environ={"DEVENV_REDIS_IMAGE": image})
    assert "DEVENV_REDIS_IMAGE" in info.value.message and words in info.value.message
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("layer", ["flags", "environ", "dotenv"])
def test_empty_project_name_is_refused_from_every_layer(tmp_path, layer):
    kwargs = {"flags": {"flags": {"DEVENV_PROJECT": ""}},
              "environ": {"environ": {"DEVENV_PROJECT": ""}},
              "dotenv": {"env_text": "DEVENV_PROJECT=\n"}}[layer]
    with pytest.raises(SettingError) as info:
        load(tmp_path, **kwargs)
    assert "DEVENV_PROJECT is empty" in info.value.message
    assert "never means the default" in info.value.hint


@given(st.text(max_size=8))
def test_an_accepted_number_is_exactly_its_canonical_digits(text):
    from devenv.config.settings import parse_count, parse_port, parse_seconds

    for parse in (parse_port, parse_count):
        try:
            number = parse(text, "DEVENV_X")
        except SettingError:
            continue
        assert text == str(number)  # nothing but the number reaches Compose
    try:
        seconds = parse_seconds(text, "DEVENV_X")
    except SettingError:
        return
    assert 0 < seconds <= 86400 and text.strip() == text and text.replace(".", "").isascii()


def test_a_listener_of_devenv_itself_has_a_port_setting_outside_the_catalog(tmp_path):
    # the dashboard is planned like a service but is no service of the catalog
    settings = load_settings(tmp_path, {"DEVENV_DASHBOARD_PORT": "7790"}, {})
    assert "dashboard" not in settings.catalog
    assert settings.port("dashboard") == 7790
