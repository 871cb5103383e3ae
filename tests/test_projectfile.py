"""devenv.toml: a project's own services, declared like the built-in ones, checked whole."""

from __future__ import annotations

import pytest

from devenv.config.projectfile import load_catalog
from devenv.config.settings import load_settings
from devenv.errors import EXIT_USAGE, ProjectFileError

MAILPIT = """
[services.mailpit]
image = "axllent/mailpit:v1.21"
port = 8025
host_port = 8025
probe = "http:/livez"
aliases = ["mail"]
needs = ["db"]
url = "http://{host}:{port}/"
data = ["/data"]
[services.mailpit.environment]
MP_SMTP_AUTH_ACCEPT_ANY = "1"

[tunnels.staging-db]
host = "bastion"
"""


def write(tmp_path, text):
    (tmp_path / "devenv.toml").write_text(text)
    return tmp_path


def test_a_declared_service_joins_the_catalog_after_the_built_in_ones(tmp_path):
    catalog = load_catalog(write(tmp_path, MAILPIT))
    assert list(catalog)[-1] == "mailpit" and len(catalog) == 7
    spec = catalog["mailpit"]
    assert (spec.container_port, spec.dev_port, spec.probe.kind, spec.probe.path) == \
        (8025, 8025, "http", "/livez")
    assert spec.needs == ("postgres",)  # an alias resolved to the name
    assert spec.app_env == "MAILPIT_URL" and spec.data_dirs == ("/data",)
    assert catalog.select(["mail"]).services == ("postgres", "mailpit")
    assert catalog.url("mailpit", "127.0.0.1", 8026, {}) == "http://127.0.0.1:8026/"
    assert catalog.tunnels == {"staging-db": {"host": "bastion"}}


def test_its_settings_come_with_it(tmp_path):
    settings = load_settings(write(tmp_path, MAILPIT), {"DEVENV_MAILPIT_PORT": "9025"}, {})
    assert settings.port("mailpit") == 9025
    assert settings.image("mailpit") == "axllent/mailpit:v1.21"
    assert "DEVENV_MAILPIT_IMAGE" in {spec.key for spec in settings.specs}


def test_no_file_is_the_built_in_catalog(tmp_path):
    assert list(load_catalog(tmp_path)) == ["api", "postgres", "redis", "adminer",
                                            "prometheus", "grafana"]


BASE = '[services.m]\nimage = "x:1"\nport = 1025\n'


@pytest.mark.parametrize("text, message", [
    (BASE + "colour = 'red'\n", "devenv.toml: [services.m] colour: unknown field"),
    (BASE.replace("1025", "70000"), "devenv.toml: [services.m] port: 70000 is outside 1-65535"),
    (BASE + "host_port = 0\n", "devenv.toml: [services.m] host_port: 0 is outside 1-65535"),
    (BASE + "port = 'x'\n", "invalid TOML"),
    ('[services.m]\nimage = "x:1"\nport = "80"\n', "[services.m] port: must be a whole number"),
    ('[services.m]\nimage = "x:1"\n', "devenv.toml: [services.m] port: is required"),
    (BASE + "aliases = ['db']\n",
     "devenv.toml: [services.m] aliases: 'db' is already taken by the built-in postgres"),
    (BASE + "aliases = ['n']\n" + BASE.replace("[services.m]", "[services.n]")
     .replace("1025", "1026"), "[services.m] aliases: 'n' is already the name or an alias of n"),
    ('[services.redis]\nimage = "x:1"\nport = 1\n',
     "devenv.toml: [services.redis]: 'redis' is a built-in service"),
    (BASE + "needs = ['n']\n" + BASE.replace("[services.m]", "[services.n]")
     .replace("1025", "1026") + "needs = ['m']\n",
     "devenv.toml: [services.m] needs: a cycle: m -> n -> m"),
    (BASE + "needs = ['m']\n", "[services.m] needs: a cycle: m -> m"),
    (BASE + "aliases = ['mm']\nneeds = ['n']\n" + BASE.replace("[services.m]", "[services.n]")
     .replace("1025", "1026") + "needs = ['mm']\n",
     "[services.m] needs: a cycle: m -> n -> m"),  # through an alias
    (BASE + "needs = ['mysql']\n", "[services.m] needs: unknown service 'mysql'"),
    (BASE + "probe = 'smtp'\n", "devenv.toml: [services.m] probe: 'smtp' is not a probe"),
    (BASE + "probe = 'tcp:/x'\n", "[services.m] probe: 'tcp:/x': only http takes a path"),
    (BASE + "url = 'http://{host}:{port}/{NOPE}'\n",
     "[services.m] url: {NOPE} is neither host, port nor a setting"),
    (BASE + "data = ['data']\n", "[services.m] data: 'data' is not an absolute container path"),
    (BASE + "[services.m.environment]\n'A B' = '1'\n", "[services.m] environment.A B:"),
    ('[services.Mail]\nimage = "x:1"\nport = 1\n', "[services.Mail]: 'Mail' is not a service"),
    (BASE + "image = 'bad image'\n", "invalid TOML"),
    ('[services.m]\nimage = "bad image"\nport = 1\n', "[services.m] image: 'bad image' is not"),
    ("[services.m\n", "devenv.toml: invalid TOML: "),
    ("[databases.x]\n", "devenv.toml: [databases]: unknown table"),
    ("services = 1\n", "devenv.toml: [services]: must be a table"),
])
def test_bad_input_names_file_table_and_field(tmp_path, text, message):
    with pytest.raises(ProjectFileError) as info:
        load_settings(write(tmp_path, text), {}, {})
    assert message in info.value.message
    assert info.value.exit_code == EXIT_USAGE


def test_not_utf8_is_named(tmp_path):
    (tmp_path / "devenv.toml").write_bytes(b"[services.m]\nimage = '\xff'\n")
    with pytest.raises(ProjectFileError, match="devenv.toml: is not UTF-8"):
        load_catalog(tmp_path)


def test_a_port_equal_to_a_built_in_one_names_both_settings(tmp_path):
    from devenv.errors import SettingError

    with pytest.raises(SettingError, match="DEVENV_REDIS_PORT and DEVENV_M_PORT are both"):
        load_settings(write(tmp_path, BASE.replace("1025", "6379")), {}, {})


def test_what_was_read_is_reused_until_the_file_changes(tmp_path):
    (tmp_path / ".devenv").mkdir()
    write(tmp_path, MAILPIT)
    assert load_catalog(tmp_path)["mailpit"].dev_port == 8025
    assert (tmp_path / ".devenv" / "cache" / "devenv.toml.json").is_file()
    assert (tmp_path / ".devenv" / "cache" / "services.toml.json").is_file()
    write(tmp_path, MAILPIT.replace("host_port = 8025", "host_port = 18025"))
    assert load_catalog(tmp_path)["mailpit"].dev_port == 18025
    write(tmp_path, MAILPIT.replace("port = 8025", "port = 0"))
    with pytest.raises(ProjectFileError, match="port: 0 is outside"):
        load_catalog(tmp_path)


def own_setting(key, default):
    return BASE + f'[[services.m.settings]]\nkey = "{key}"\ndefault = "{default}"\n'


@pytest.mark.parametrize("text, message", [
    (own_setting("DEVENV_BIND", "0.0.0.0"),
     "devenv.toml: [services.m] settings: DEVENV_BIND is devenv's own setting"),
    (own_setting("DEVENV_PROJECT", "theirs"), "[services.m] settings: DEVENV_PROJECT is"),
    (own_setting("DEVENV_SNAPSHOT_DIR", "/tmp"), "[services.m] settings: DEVENV_SNAPSHOT_DIR"),
    (own_setting("DEVENV_DASHBOARD_PORT", "80"), "settings: DEVENV_DASHBOARD_PORT is devenv's"),
    (own_setting("DEVENV_DEBUG", "1"), "settings: DEVENV_DEBUG is devenv's switch"),
    (own_setting("DEVENV_TUNNEL_PROD_PASSWORD", ""),
     "settings: DEVENV_TUNNEL_PROD_PASSWORD is reserved for a tunnel's credentials"),
    (BASE.replace("[services.m]", "[services.dashboard]"),
     "devenv.toml: [services.dashboard]: a service named 'dashboard' would take "
     "DEVENV_DASHBOARD_PORT, which is devenv's own setting"),
    (BASE.replace("[services.m]", "[services.tunnel_prod]"),
     "[services.tunnel_prod]: a service named 'tunnel_prod' would take DEVENV_TUNNEL_PROD_PORT"),
])
def test_a_service_cannot_take_one_of_devenvs_own_settings(tmp_path, text, message):
    # the declared default silently replaced devenv's: DEVENV_BIND = "0.0.0.0" published
    # everyone's stack on every interface
    with pytest.raises(ProjectFileError) as info:
        load_settings(write(tmp_path, text), {}, {})
    assert message in info.value.message
    assert info.value.exit_code == EXIT_USAGE


def test_devenvs_own_settings_keep_their_defaults_beside_a_projects_settings(tmp_path):
    settings = load_settings(write(tmp_path, own_setting("DEVENV_M_BIND", "0.0.0.0")), {}, {})
    assert settings.bind == "127.0.0.1" and settings["DEVENV_M_BIND"] == "0.0.0.0"


@pytest.mark.parametrize("text, message", [
    (BASE + "app_env = 'DATABASE_URL'\n",
     "devenv.toml: [services.m] app_env: DATABASE_URL is already written for postgres"),
    (BASE.replace("[services.m]", "[services.database]"),  # its default, DATABASE_URL
     "[services.database] app_env: DATABASE_URL (the default) is already written for postgres"),
    (BASE + "app_env = 'N_URL'\n" + BASE.replace("[services.m]", "[services.n]")
     .replace("1025", "1026"), "[services.n] app_env: N_URL (the default) is already written "
     "for m"),
    (BASE + "app_env = 'EXPO_PUBLIC_API_URL'\n",
     "[services.m] app_env: EXPO_PUBLIC_API_URL is already written for api's device URLs"),
    (BASE + "device_urls = true\n",
     "[services.m] device_urls: EXPO_PUBLIC_API_URL is already written for api's device URLs"),
    (BASE + "app_env = 'DEVENV_BIND'\n",
     "[services.m] app_env: DEVENV_BIND is in devenv's own namespace"),
])
def test_two_writers_of_one_app_variable_are_refused(tmp_path, text, message):
    # `ports --env` and .devenv/app.env carried one of the two: host apps reached the wrong
    # database
    with pytest.raises(ProjectFileError) as info:
        load_settings(write(tmp_path, text), {}, {})
    assert message in info.value.message
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("text, message", [
    (BASE + "url = \"http://{host}:{port}/it's\"\n",
     "devenv.toml: [services.m] url: \"http://{host}:{port}/it's\" holds \"'\", which a URL "
     "cannot carry"),
    (BASE + "url = 'http://{host}:{port}/a b'\n", "[services.m] url: 'http://{host}:{port}/a b'"
     " holds ' '"),
    (BASE + "url = 'http://{host}:{port}/<x>'\n", "holds '<' '>'"),
    (BASE + "url = 'http://{host}:{port}/é'\n", "holds 'é'"),
    (BASE + "url = 'javascript:alert(1)//{host}:{port}'\n",
     "[services.m] url: 'javascript:alert(1)//{host}:{port}' is a script"),
    (BASE + "url = '{DEVENV_POSTGRES_USER}:{host}'\n", "[services.m] url: "
     "'{DEVENV_POSTGRES_USER}:{host}' must start with its scheme"),
    (BASE + "probe = \"http:/it's\"\n",
     "devenv.toml: [services.m] probe: \"http:/it's\": the path holds \"'\""),
    ('[services.m]\nimage = ""\nport = 1025\n',
     "devenv.toml: [services.m] image: is empty: the service has no image to run"),
    ('[services.m]\nimage = "Mail:1"\nport = 1025\n',
     "devenv.toml: [services.m] image: DEVENV_M_IMAGE='Mail:1' is not an image reference: "
     "the repository name must be lowercase"),
    (BASE + '[[services.m.settings]]\nkey = "DEVENV_M_SMTP_PORT"\nkind = "port"\n'
     'default = "smtp"\n', "devenv.toml: [services.m.settings.0] default: "
     "DEVENV_M_SMTP_PORT='smtp' is not a port number"),
    (BASE + '[[services.m.settings]]\nkey = "DEVENV_M_TOKEN"\ngenerate = true\n'
     'secret = false\n', "[services.m.settings.0] secret: a generated value is a secret"),
    (BASE + "data = ['/']\n", "[services.m] data: '/' is not a directory a volume can be"),
    (BASE + "data = ['/data/']\n", "[services.m] data: '/data/' is not a directory"),
    (BASE + "data = ['/data', '/data']\n", "[services.m] data: '/data' is listed twice"),
    (BASE + "files = ['docker-compose.yml.j2']\n",
     "[services.m] files: 'docker-compose.yml.j2' is not a file devenv may render"),
    (BASE + "files = ['.devenv-files.json']\n", "files: '.devenv-files.json' is not a file"),
    (BASE + "files = ['m//x.j2']\n", "files: 'm//x.j2' is not a file"),
    (BASE + "files = ['api/app.py']\n",
     "[services.m] files: compose/api/app.py is already rendered for api"),
    (BASE + 'login = ["DEVENV_M_USER", "DEVENV_M_PASSWORD"]\n'
     '[[services.m.settings]]\nkey = "DEVENV_M_USER"\ndefault = "u"\n'
     '[[services.m.settings]]\nkey = "DEVENV_M_PASSWORD"\ndefault = "p"\n',
     "[services.m] login: DEVENV_M_PASSWORD, the password, is not a secret setting"),
])
def test_what_would_fail_later_is_refused_when_the_file_is_read(tmp_path, text, message):
    # a quote in url was an internal error after containers started (and in every
    # `ports --env`); image = "" reached Compose (exit 1)
    with pytest.raises(ProjectFileError) as info:
        load_settings(write(tmp_path, text), {}, {})
    assert message in info.value.message
    assert info.value.exit_code == EXIT_USAGE


def test_a_bad_default_is_refused_even_where_env_overrides_it(tmp_path):
    text = (BASE + '[[services.m.settings]]\nkey = "DEVENV_M_SMTP_PORT"\nkind = "port"\n'
            'default = "smtp"\n')
    with pytest.raises(ProjectFileError, match=r"\[services.m.settings.0\] default"):
        load_settings(write(tmp_path, text), {"DEVENV_M_SMTP_PORT": "2525"}, {})


def test_an_empty_default_is_named_only_when_nothing_sets_it(tmp_path):
    text = BASE + '[[services.m.settings]]\nkey = "DEVENV_M_REALM"\n'
    assert load_settings(write(tmp_path, text), {"DEVENV_M_REALM": "x"}, {})["DEVENV_M_REALM"] \
        == "x"
    with pytest.raises(ProjectFileError) as info:
        load_settings(tmp_path, {}, {})
    assert info.value.message == ("devenv.toml: [services.m.settings.0] default: "
                                  "DEVENV_M_REALM is empty")
    assert "set DEVENV_M_REALM in .env" in info.value.hint


def test_an_empty_image_from_env_is_refused_unless_the_service_is_built(tmp_path):
    from devenv.errors import SettingError

    with pytest.raises(SettingError, match="DEVENV_REDIS_IMAGE is empty"):
        load_settings(tmp_path, {"DEVENV_REDIS_IMAGE": ""}, {})
    assert load_settings(tmp_path, {"DEVENV_API_IMAGE": ""}, {})["DEVENV_API_IMAGE"] == ""


def test_a_generated_setting_is_secret_and_urls_may_encode_anything(tmp_path):
    text = (BASE + "url = \"smtp://{DEVENV_M_TOKEN}@{host}:{port}/%27x%27?a=1&b=(2)\"\n"
            '[[services.m.settings]]\nkey = "DEVENV_M_TOKEN"\ngenerate = true\n')
    settings = load_settings(write(tmp_path, text), {}, {})
    assert "DEVENV_M_TOKEN" in settings.catalog.secret_keys()
    assert settings.catalog.url("m", "h", 1, {"DEVENV_M_TOKEN": "it's"}, show_secrets=True) \
        == "smtp://it%27s@h:1/%27x%27?a=1&b=(2)"
