"""[host_apps.*] in devenv.toml: a command turns a reserved port into an app devenv runs;
every table checked before anything starts (exit 2, naming file, table and field)."""

from __future__ import annotations

import pytest

from devenv.config.projectfile import load_catalog
from devenv.config.settings import load_settings
from devenv.errors import EXIT_USAGE, ProjectFileError
from devenv.ports.planner import PortPlanner

FRONTEND = """
[host_apps.frontend]
command = "npm run web -- --port $PORT"
cwd = "frontend"
probe = "http:/"
needs = ["api", "cache"]
aliases = ["web"]
[host_apps.frontend.environment]
BROWSER = "none"

[host_apps.docs]
command = "python3 -m http.server $PORT"
port = 4000
needs = ["web"]
"""


def write(tmp_path, text):
    (tmp_path / "devenv.toml").write_text(text)
    return tmp_path


def test_a_command_makes_the_built_in_frontend_an_app_devenv_runs(tmp_path):
    catalog = load_catalog(write(tmp_path, FRONTEND))
    app = catalog.apps["frontend"]
    assert (app.port, app.command, app.cwd, app.probe.kind, app.probe.path) == \
        (3000, "npm run web -- --port $PORT", "frontend", "http", "/")
    assert app.needs == ("api", "redis")  # aliases resolved
    assert app.environment == {"BROWSER": "none"}
    assert catalog.apps["docs"].port == 4000 and catalog.apps["docs"].needs == ("frontend",)
    assert "metro" not in catalog.apps  # no command: a reserved port, as before
    assert [a.name for a in catalog.host_apps] == ["frontend", "metro", "expo", "docs"]


def test_selection_brings_an_apps_needs_services_and_apps_apart(tmp_path):
    catalog = load_catalog(write(tmp_path, FRONTEND))
    chosen = catalog.select(["cache", "docs"])
    assert chosen.services == ("api", "postgres", "redis")
    assert chosen.apps == ("frontend", "docs")
    assert catalog.select(["web"]).apps == ("frontend",)
    everything = catalog.select(None)
    assert everything.apps == ("frontend", "docs") and "frontend" not in everything.services


def test_without_a_command_nothing_changes(tmp_path):
    catalog = load_catalog(write(tmp_path, '[host_apps.frontend]\ntitle = "Web"\n'))
    assert catalog.apps == {} and catalog.host_apps[0].title == "Web"
    assert catalog.select(None).apps == ()
    settings = load_settings(tmp_path, {}, {})
    assert settings.reserved_ports == (3000, 8081, 19000)


@pytest.mark.parametrize(("text", "where"), [
    ('[host_apps.frontend]\ncommand = "x"\nport_typo = 1\n', "[host_apps.frontend] port_typo"),
    ('[host_apps.frontend]\ncommand = "x"\nprobe = "redis"\n', "[host_apps.frontend] probe"),
    ('[host_apps.frontend]\ncommand = "x"\nprobe = "tcp:/x"\n', "[host_apps.frontend] probe"),
    ('[host_apps.frontend]\ncommand = "x"\nneeds = ["nope"]\n', "[host_apps.frontend] needs"),
    ('[host_apps.frontend]\ncommand = "x"\nneeds = ["metro"]\n', "[host_apps.frontend] needs"),
    ('[host_apps.frontend]\ncommand = "x"\nport = 3100\n', "[host_apps.frontend] port"),
    ('[host_apps.frontend]\ncommand = "  "\n', "[host_apps.frontend] command"),
    ('[host_apps.frontend]\ncwd = "web"\n', "[host_apps.frontend] cwd"),
    ('[host_apps.frontend]\ncommand = "x"\ncwd = "../elsewhere"\n',
     "[host_apps.frontend] cwd"),
    ('[host_apps.frontend]\ncommand = "x"\naliases = ["db"]\n',
     "[host_apps.frontend] aliases"),
    ('[host_apps.docs]\ncommand = "x"\n', "[host_apps.docs] port"),
    ('[host_apps.redis]\ncommand = "x"\nport = 4000\n', "[host_apps.redis]"),
    ('[host_apps.Docs]\ncommand = "x"\nport = 4000\n', "[host_apps.Docs]"),
    ('[host_apps.a]\ncommand = "x"\nport = 4000\nneeds = ["b"]\n'
     '[host_apps.b]\ncommand = "x"\nport = 4001\nneeds = ["a"]\n', "[host_apps.a] needs"),
])
def test_a_bad_table_is_exit_2_naming_file_table_and_field(tmp_path, text, where):
    with pytest.raises(ProjectFileError) as caught:
        load_catalog(write(tmp_path, text))
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value.message).startswith(f"devenv.toml: {where}")


def test_an_app_devenv_runs_may_take_its_own_reserved_port_and_no_one_else(tmp_path):
    settings = load_settings(write(tmp_path, FRONTEND), {}, {})
    plan = PortPlanner(None, settings, {}, check_host=False).plan(
        ["grafana", "frontend", "metro" if "metro" in settings.catalog.apps else "redis"])
    assert plan.port("frontend") == 3000
    assert plan.port("grafana") != 3000
    assert "reserved for the frontend" in plan.by_service()["grafana"].describe()


def test_a_running_app_keeps_its_port(tmp_path):
    settings = load_settings(write(tmp_path, FRONTEND), {}, {})
    plan = PortPlanner(None, settings, {}, check_host=False,
                       apps_running={"frontend": 3005}).plan(["frontend"])
    assert plan.port("frontend") == 3005 and plan.by_service()["frontend"].rule == "running"


def test_up_lan_names_a_mobile_app_it_starts_and_only_that_one_gets_the_packager_host(
        tmp_path):
    from devenv.live.devices import plan_lan
    from devenv.stack.apps import app_variables

    settings = load_settings(write(tmp_path, '[host_apps.metro]\ncommand = "metro serve"\n'
                                   '[host_apps.frontend]\ncommand = "vite"\n'), {}, {})
    request = plan_lan(settings, ["metro"], ["metro"], find=lambda: "192.168.1.20")
    assert request.services == ("metro",) and request.private == ()
    metro, frontend = settings.catalog.apps["metro"], settings.catalog.apps["frontend"]
    shared = {"API_URL": "http://127.0.0.1:7777"}
    assert app_variables(metro, 8082, shared, "192.168.1.20") == {
        "PORT": "8082", "API_URL": "http://127.0.0.1:7777",
        "REACT_NATIVE_PACKAGER_HOSTNAME": "192.168.1.20"}
    assert "REACT_NATIVE_PACKAGER_HOSTNAME" not in app_variables(frontend, 3000, shared,
                                                                 "192.168.1.20")
    assert "REACT_NATIVE_PACKAGER_HOSTNAME" not in app_variables(metro, 8081, shared, "")
