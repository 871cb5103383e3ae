from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devenv.config.projectfile import builtin_catalog
from devenv.config.settings import load_settings
from devenv.errors import TemplateError
from devenv.render.templates import (
    RenderInput,
    bind_sources,
    fingerprint,
    quote,
    render_stack,
    write_outputs,
    yaml_quote,
)

SERVICES = builtin_catalog().services


def make_input(tmp_path: Path, services=tuple(SERVICES), environ=None, start_interval=False,
               ports=None) -> RenderInput:
    s = load_settings(tmp_path, environ or {}, {})
    return RenderInput(
        project=s.project, network=s.network, network_external=False, bind=s.bind,
        url_host=s.url_host, services=tuple(services),
        ports=ports or {name: s.port(name) for name in services}, values=s.values,
        secrets={"grafana_admin_password": "gen-secret"}, start_interval=start_interval,
        catalog=s.catalog,
        builds={"api": {"context": "./api", "args": {"BASE_IMAGE": "python:3.12-slim"}}},
    )


def compose_doc(files) -> dict:
    text = next(f.text for f in files if f.path == "docker-compose.yml")
    return yaml.safe_load(text)


def test_full_stack_renders_every_service(tmp_path):
    files = render_stack(make_input(tmp_path))
    doc = compose_doc(files)
    assert doc["name"] == "cirkelline"
    assert list(doc["services"]) == list(SERVICES)
    assert doc["networks"]["default"]["name"] == "cirkelline"
    for name, svc in doc["services"].items():
        port = svc["ports"][0]
        assert port["host_ip"] == "127.0.0.1"
        assert port["target"] == SERVICES[name].container_port
        assert "healthcheck" in svc and "start_interval" not in svc["healthcheck"]
    api_env = doc["services"]["api"]["environment"]
    assert api_env["DATABASE_URL"] == \
        "postgresql://postgres:password@postgres:5432/cirkelline_agents"
    assert api_env["REDIS_URL"] == "redis://redis:6379"
    assert api_env["PORT"] == "7777" and api_env["HOSTNAME"] == "0.0.0.0"
    assert api_env["DB_POOL_SIZE"] == "20"


def test_every_data_directory_has_a_named_volume(tmp_path):
    doc = compose_doc(render_stack(make_input(tmp_path)))
    for name, spec in SERVICES.items():
        mounts = doc["services"][name].get("volumes", [])
        targets = {m["target"]: m for m in mounts}
        for path in spec.data_dirs:
            assert targets[path]["type"] == "volume"
            assert targets[path]["source"] in doc["volumes"]


def test_the_seed_folder_is_mounted_read_only_only_when_it_exists(tmp_path):
    from dataclasses import replace

    plain = compose_doc(render_stack(make_input(tmp_path)))["services"]["postgres"]
    assert [m["target"] for m in plain["volumes"]] == ["/var/lib/postgresql/data"]
    seeded = make_input(tmp_path)
    seeded = replace(seeded, seed_dir=str(tmp_path / "db $eed"))
    mounts = compose_doc(render_stack(seeded))["services"]["postgres"]["volumes"]
    seed = next(m for m in mounts if m["target"] == "/docker-entrypoint-initdb.d")
    assert seed == {"type": "bind", "source": str(tmp_path / "db $$eed"),
                    "target": "/docker-entrypoint-initdb.d", "read_only": True}


def test_start_interval_only_when_the_engine_supports_it(tmp_path):
    doc = compose_doc(render_stack(make_input(tmp_path, start_interval=True)))
    assert all(svc["healthcheck"]["start_interval"] == "1s" for svc in doc["services"].values())


def test_subset_renders_no_files_for_services_not_selected(tmp_path):
    files = render_stack(make_input(tmp_path, services=("postgres", "redis")))
    paths = {f.path for f in files}
    assert paths == {"docker-compose.yml"}
    doc = compose_doc(files)
    assert list(doc["services"]) == ["postgres", "redis"]


def test_prometheus_scrapes_the_api_only_when_selected(tmp_path):
    with_api = render_stack(make_input(tmp_path))
    prom = yaml.safe_load(next(f.text for f in with_api if f.path == "prometheus/prometheus.yml"))
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["api"]["static_configs"][0]["targets"] == ["api:7777"]
    without = render_stack(make_input(tmp_path, services=("prometheus", "grafana")))
    prom = yaml.safe_load(next(f.text for f in without if f.path == "prometheus/prometheus.yml"))
    assert [job["job_name"] for job in prom["scrape_configs"]] == ["prometheus"]
    assert "grafana/dashboards/api.json" not in {f.path for f in without}


def test_moved_port_is_published_and_grafana_root_url_follows(tmp_path):
    data = make_input(tmp_path, ports={**{n: SERVICES[n].dev_port for n in SERVICES},
                                       "grafana": 3001})
    doc = compose_doc(render_stack(data))
    grafana = doc["services"]["grafana"]
    assert grafana["ports"][0]["published"] == "3001"
    assert grafana["environment"]["GF_SERVER_ROOT_URL"] == "http://127.0.0.1:3001/"


def test_compose_file_is_private(tmp_path):
    files = render_stack(make_input(tmp_path))
    assert next(f for f in files if f.path == "docker-compose.yml").mode == 0o600


MAIL = """
[services.mail]
image = "mail:1"
port = 1025
url = "smtp://{DEVENV_MAIL_USER}:{DEVENV_MAIL_PASSWORD}@{host}:{port}"
files = ["mail/token.txt.j2", "mail/auth.yml.j2", "mail/peer.env.j2", "mail/greeting.txt.j2"]
[[services.mail.settings]]
key = "DEVENV_MAIL_TOKEN"
generate = true
secret = true
[[services.mail.settings]]
key = "DEVENV_MAIL_USER"
default = "mailer"
[[services.mail.settings]]
key = "DEVENV_MAIL_PASSWORD"
default = "s3cret-default"
secret = true
"""


def test_every_rendered_file_that_holds_a_secret_is_private_whoever_declared_it(tmp_path):
    # a project service's own template with a generated secret was written 0644
    (tmp_path / "devenv.toml").write_text(MAIL)
    own = tmp_path / "templates" / "mail"
    own.mkdir(parents=True)
    (own / "token.txt.j2").write_text("{{ secrets.mail_token }}\n")
    (own / "auth.yml.j2").write_text(
        "{% for k, v in settings.items() %}{% if k.startswith('DEVENV_MAIL') %}{{ k }}={{ v }}\n"
        "{% endif %}{% endfor %}")
    (own / "peer.env.j2").write_text("PEER={{ internal_urls.mail }}\n")
    (own / "greeting.txt.j2").write_text(
        "hello {{ settings.DEVENV_MAIL_USER }}{% if 'DEVENV_MAIL_PASSWORD' in settings %}!"
        "{% endif %}\n")
    data = make_input(tmp_path, services=("redis", "mail"))
    data = RenderInput(**{**data.__dict__, "secrets": {"mail_token": "gen-token"}})
    out = tmp_path / "compose"
    files = render_stack(data, tmp_path / "templates")
    write_outputs(out, files)
    modes = {f.path: (out / f.path).stat().st_mode & 0o777 for f in files}
    assert modes == {"docker-compose.yml": 0o600, "mail/token.txt": 0o600,
                     "mail/auth.yml": 0o600, "mail/peer.env": 0o600,
                     "mail/greeting.txt": 0o644}
    assert (out / "mail" / "token.txt").read_text() == "gen-token\n"
    # a file an earlier devenv wrote 0644 is made private by the next render
    (out / "mail" / "token.txt").chmod(0o644)
    write_outputs(out, files)
    assert (out / "mail" / "token.txt").stat().st_mode & 0o777 == 0o600


def test_built_in_files_without_a_secret_stay_readable(tmp_path):
    modes = {f.path: f.mode for f in render_stack(make_input(tmp_path))}
    assert modes.pop("docker-compose.yml") == 0o600
    assert set(modes.values()) == {0o644}


def test_quote_round_trips_through_yaml():
    for value in ['a"b', "a'b", "x: y", "#c", "{a}", "[b]", "é", "\u2028", "\\n", "- x", "*a"]:
        assert yaml.safe_load(yaml_quote(value)) == value
    assert yaml.safe_load(quote("pa$s")) == "pa$$s"


hostile = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                         blacklist_characters="\x00"), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=hostile, password=hostile, db=hostile)
def test_no_value_changes_the_structure(tmp_path, user, password, db):
    """Property: whatever the credentials, the file parses to the same shape and the
    values come back exactly (after Compose's $$ -> $)."""
    data = make_input(tmp_path)
    values = dict(data.values, DEVENV_POSTGRES_USER=user, DEVENV_POSTGRES_PASSWORD=password,
                  DEVENV_POSTGRES_DB=db)
    data = RenderInput(**{**data.__dict__, "values": values})
    doc = compose_doc(render_stack(data))
    assert list(doc) == ["name", "services", "networks", "volumes"]
    assert list(doc["services"]) == list(SERVICES)
    env = doc["services"]["postgres"]["environment"]
    assert set(env) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    unescape = lambda v: v.replace("$$", "$")  # noqa: E731 - what Compose does
    assert (unescape(env["POSTGRES_USER"]), unescape(env["POSTGRES_PASSWORD"]),
            unescape(env["POSTGRES_DB"])) == (user, password, db)
    # every $ reaching Compose is doubled: nothing is left to interpolate
    for value in env.values():
        assert value.replace("$$", "") .count("$") == 0


def test_write_only_on_change_and_remove_stale(tmp_path):
    out = tmp_path / "compose"
    full = render_stack(make_input(tmp_path))
    assert {r.status for r in write_outputs(out, full)} == {"created"}
    assert {r.status for r in write_outputs(out, full)} == {"identical"}
    subset = render_stack(make_input(tmp_path, services=("postgres",)))
    statuses = {r.path: r.status for r in write_outputs(out, subset)}
    assert statuses["docker-compose.yml"] == "updated"
    assert statuses["prometheus/prometheus.yml"] == "removed"
    assert not (out / "prometheus" / "prometheus.yml").exists()
    assert (out / "docker-compose.yml").stat().st_mode & 0o777 == 0o600


def test_project_template_overrides_builtin(tmp_path):
    templates = tmp_path / "templates" / "services"
    templates.mkdir(parents=True)
    (templates / "redis.yml.j2").write_text(
        "  redis:\n    image: {{ s.redis.image | q }}\n    labels:\n      team: \"ours\"\n")
    doc = compose_doc(render_stack(make_input(tmp_path), tmp_path / "templates"))
    assert doc["services"]["redis"]["labels"] == {"team": "ours"}
    assert "healthcheck" in doc["services"]["postgres"]


@pytest.mark.parametrize("text, words", [
    ("  redis:\n    image: {{ s.redis.image | q }\n", "line 2"),
    ("  redis:\n\n    image: {{ nothing_here }}\n", "nothing_here"),
])
def test_broken_template_names_file_and_line(tmp_path, text, words):
    templates = tmp_path / "templates" / "services"
    templates.mkdir(parents=True)
    (templates / "redis.yml.j2").write_text(text)
    with pytest.raises(TemplateError) as info:
        render_stack(make_input(tmp_path), tmp_path / "templates")
    assert "redis.yml.j2" in info.value.message and words in info.value.message


def test_fingerprint_changes_with_content(tmp_path):
    a = render_stack(make_input(tmp_path))
    b = render_stack(make_input(tmp_path, services=("postgres",)))
    assert fingerprint(a) == fingerprint(render_stack(make_input(tmp_path)))
    assert fingerprint(a) != fingerprint(b)


# --- what write_outputs may touch --------------------------------------------------------
def _manifest(out: Path) -> dict:
    import json

    return json.loads((out / ".devenv-files.json").read_text())


def test_manifest_records_a_digest_per_file_and_is_private(tmp_path):
    import hashlib

    out = tmp_path / "compose"
    files = render_stack(make_input(tmp_path))
    write_outputs(out, files)
    manifest = _manifest(out)
    assert manifest["schema"] == 1
    assert manifest["files"] == {f.path: hashlib.sha256(f.text.encode()).hexdigest()
                                 for f in files}
    assert (out / ".devenv-files.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("listed", [["../outside.txt"], {"schema": 1, "files": {
    "../outside.txt": "0" * 64}}, {"schema": 1, "files": {"/abs/outside.txt": "0" * 64}},
    {"schema": 1, "files": {"a/../../outside.txt": "0" * 64}}])
def test_a_path_outside_compose_in_the_manifest_is_never_removed(tmp_path, listed):
    import hashlib
    import json

    out = tmp_path / "compose"
    out.mkdir()
    victim = tmp_path / "outside.txt"
    victim.write_text("mine")
    if isinstance(listed, dict):  # even with the right digest
        digest = hashlib.sha256(b"mine").hexdigest()
        listed["files"] = {p: digest for p in listed["files"]}
    (out / ".devenv-files.json").write_text(json.dumps(listed))
    said = []
    results = write_outputs(out, render_stack(make_input(tmp_path, services=("redis",))),
                            said.append)
    assert victim.read_text() == "mine"
    assert all(r.status != "removed" for r in results)
    assert "damaged" in said[0] and "set aside" in said[0]
    assert list(out.glob(".devenv-files.json.corrupt-*"))


@pytest.mark.parametrize("garbage", [b"{", b"5", b'{"schema": 1, "files": ["a"]}',
                                     b'{"schema": 1, "files": {"a": "xyz"}}', b"\xff",
                                     b'{"schema": 2, "files": {}}', b'["./a"]', b'["a//b"]'])
def test_a_wrong_shaped_manifest_is_set_aside_and_trusted_for_nothing(tmp_path, garbage):
    out = tmp_path / "compose"
    files = render_stack(make_input(tmp_path, services=("redis",)))
    write_outputs(out, files)
    (out / "docker-compose.yml").write_text("# mine\n")
    (out / ".devenv-files.json").write_bytes(garbage)
    said = []
    write_outputs(out, files, said.append)
    assert "set aside" in said[0]
    assert any("kept as compose/docker-compose.yml.edited-" in m for m in said)
    [kept] = out.glob("docker-compose.yml.edited-*")
    assert kept.read_text() == "# mine\n"


def test_an_edited_compose_file_is_kept_and_named(tmp_path):
    out = tmp_path / "compose"
    files = render_stack(make_input(tmp_path))
    write_outputs(out, files)
    compose = out / "docker-compose.yml"
    edited = compose.read_text() + "# my change\n"
    compose.write_text(edited)
    compose.chmod(0o640)
    said = []
    results = {r.path: r for r in write_outputs(out, files, said.append)}
    [kept] = out.glob("docker-compose.yml.edited-*")
    assert kept.read_text() == edited and kept.stat().st_mode & 0o777 == 0o640
    assert results["docker-compose.yml"].status == "updated"
    assert results["docker-compose.yml"].aside == kept.name
    assert len(said) == 1 and f"kept as compose/{kept.name}" in said[0]
    assert compose.read_text() == next(f.text for f in files if f.path == "docker-compose.yml")
    # the next render finds devenv's own file again: nothing more is set aside
    assert {r.status for r in write_outputs(out, files, said.append)} == {"identical"}
    assert len(list(out.glob("docker-compose.yml.edited-*"))) == 1


def test_a_file_devenv_did_not_write_is_set_aside_not_overwritten(tmp_path):
    out = tmp_path / "compose"
    out.mkdir()
    (out / "docker-compose.yml").write_text("services: {mine: {image: x}}\n")
    said = []
    write_outputs(out, render_stack(make_input(tmp_path, services=("redis",))), said.append)
    [kept] = out.glob("docker-compose.yml.edited-*")
    assert "mine" in kept.read_text() and kept.name in said[0]


def test_identical_content_is_adopted_without_setting_aside(tmp_path):
    out = tmp_path / "compose"
    files = render_stack(make_input(tmp_path, services=("redis",)))
    write_outputs(out, files)
    (out / ".devenv-files.json").unlink()
    said = []
    assert {r.status for r in write_outputs(out, files, said.append)} == {"identical"}
    assert said == [] and "docker-compose.yml" in _manifest(out)["files"]


def test_a_stale_file_is_removed_only_while_it_holds_what_devenv_wrote(tmp_path):
    out = tmp_path / "compose"
    write_outputs(out, render_stack(make_input(tmp_path)))
    rules = out / "prometheus" / "prometheus.yml"
    rules.write_text(rules.read_text() + "# tuned by hand\n")
    said = []
    statuses = {r.path: r.status for r in write_outputs(
        out, render_stack(make_input(tmp_path, services=("postgres",))), said.append)}
    assert statuses["prometheus/prometheus.yml"] == "kept"
    assert rules.read_text().endswith("# tuned by hand\n")
    assert any("prometheus/prometheus.yml" in m and "kept" in m for m in said)
    assert "prometheus/prometheus.yml" not in _manifest(out)["files"]


def test_a_link_in_compose_is_set_aside_and_its_target_untouched(tmp_path):
    out = tmp_path / "compose"
    files = render_stack(make_input(tmp_path, services=("redis",)))
    write_outputs(out, files)
    target = tmp_path / "elsewhere.yml"
    target.write_text("theirs")
    (out / "docker-compose.yml").unlink()
    (out / "docker-compose.yml").symlink_to(target)
    write_outputs(out, files)
    assert target.read_text() == "theirs"
    [kept] = out.glob("docker-compose.yml.edited-*")
    assert kept.is_symlink()
    assert not (out / "docker-compose.yml").is_symlink()


def test_a_directory_leading_out_of_compose_is_refused(tmp_path):
    from devenv.errors import StateError

    out = tmp_path / "compose"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "prometheus").symlink_to(outside)
    with pytest.raises(StateError) as info:
        write_outputs(out, render_stack(make_input(tmp_path)))
    assert "leads outside compose/" in info.value.message
    assert list(outside.iterdir()) == []


def test_a_render_cut_short_leaves_every_file_recognised(tmp_path, monkeypatch):
    import devenv.render.templates as render

    out = tmp_path / "compose"
    write_outputs(out, render_stack(make_input(tmp_path)))
    moved = render_stack(make_input(tmp_path, ports={n: 20000 + i for i, n in
                                                     enumerate(SERVICES)}))
    real = render.write_atomic
    calls = []

    def cut(path, text, mode=0o644):
        calls.append(path)
        if len(calls) == 3:  # the interim manifest and one file are written
            raise KeyboardInterrupt
        real(path, text, mode)

    monkeypatch.setattr(render, "write_atomic", cut)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(out, moved)
    monkeypatch.undo()
    said = []
    write_outputs(out, moved, said.append)
    assert said == [] and not list(out.rglob("*.edited-*"))


def _all_selections() -> list[tuple[str, ...]]:
    from itertools import combinations

    names = list(SERVICES)
    return [combo for size in range(1, len(names) + 1) for combo in combinations(names, size)]


@pytest.mark.parametrize("services", _all_selections(), ids="+".join)
def test_every_selection_mounts_only_what_it_renders(tmp_path, services):
    """All 63 non-empty combinations of the six services, as the compose file may hold
    them (a selection plus whatever already runs): the file parses, and every bind-mount
    source is a file or directory this render writes."""
    files = render_stack(make_input(tmp_path, services=services))
    doc = compose_doc(files)
    assert list(doc["services"]) == list(services)
    written = {f.path for f in files}
    directories = {"/".join(p.split("/")[:i]) for p in written
                   for i in range(1, p.count("/") + 1)}
    binds = [m["source"] for svc in doc["services"].values() for m in svc.get("volumes", [])
             if m["type"] == "bind"]
    for source in binds:
        relative = source.removeprefix("./").rstrip("/")
        assert source.startswith("./") and (relative in written or relative in directories), \
            (services, source, sorted(written))
    if "grafana" in services:
        assert ("./grafana/provisioning" in binds) == bool({"api", "prometheus"} & set(services))
        assert ("./grafana/dashboards" in binds) == ("api" in services)
        provider = "grafana/provisioning/dashboards/devenv.yml"
        assert (provider in written) == ("api" in services)
    for f in files:
        if f.path.endswith((".yml", ".json")):
            yaml.safe_load(f.text)  # JSON is YAML too


def test_a_mount_of_something_not_rendered_is_refused(tmp_path):
    templates = tmp_path / "templates" / "services"
    templates.mkdir(parents=True)
    (templates / "redis.yml.j2").write_text(
        "  redis:\n    image: {{ s.redis.image | q }}\n    volumes:\n"
        "      - type: bind\n        source: ./redis/redis.conf\n"
        "        target: /etc/redis.conf\n")
    with pytest.raises(TemplateError) as info:
        render_stack(make_input(tmp_path, services=("redis",)), tmp_path / "templates")
    assert "compose/redis/redis.conf" in info.value.message


def test_bind_sources_reads_long_and_short_syntax():
    text = ("    volumes:\n      - type: bind\n        source: ./a/b\n        target: /x\n"
            "      - \"./c:/y:ro\"\n      - type: volume\n        source: data\n")
    assert bind_sources(text) == ["a/b", "c"]


def test_watch_rules_and_lan_ports_render_as_compose_reads_them(tmp_path):
    from dataclasses import replace

    data = replace(make_input(tmp_path, services=("api", "postgres", "redis")),
                   watches={"api": ({"action": "sync+restart", "path": "./api",
                                     "target": "/app", "ignore": ["Dockerfile", "$weird"]},
                                    {"action": "rebuild", "path": "/src/team/Dockerfile"})},
                   lan_address="192.168.1.20", lan_services=("api",))
    doc = compose_doc(render_stack(data))
    api = doc["services"]["api"]
    assert api["develop"]["watch"] == [
        {"action": "sync+restart", "path": "./api", "target": "/app",
         "ignore": ["Dockerfile", "$$weird"]},
        {"action": "rebuild", "path": "/src/team/Dockerfile"}]
    assert [(p["host_ip"], p["published"]) for p in api["ports"]] == [
        ("127.0.0.1", "7777"), ("192.168.1.20", "7777")]
    # nothing else goes on the LAN
    assert [p["host_ip"] for p in doc["services"]["postgres"]["ports"]] == ["127.0.0.1"]
    assert "develop" not in compose_doc(render_stack(make_input(tmp_path)))["services"]["api"]


def test_api_command_replaces_the_images_cmd_as_sh_c_and_is_quoted(tmp_path):
    hostile = "tsc -w & node --watch \"$ENTRY\" # x\n    privileged: true"
    data = make_input(tmp_path, services=("api", "postgres", "redis"),
                      environ={"DEVENV_API_COMMAND": hostile.replace("\n", " ")})
    api = compose_doc(render_stack(data))["services"]["api"]
    assert api["command"] == ["sh", "-c", hostile.replace("\n", " ").replace("$", "$$")]
    assert "privileged" not in api
    # unset: the image's own CMD, no command key at all
    plain = compose_doc(render_stack(make_input(tmp_path)))["services"]["api"]
    assert "command" not in plain


def test_a_declared_service_gets_the_generic_template_unless_the_project_has_one(tmp_path):
    (tmp_path / "devenv.toml").write_text(
        '[services.mail]\nimage = "mail:1"\nport = 1025\nhost_port = 8025\n'
        'command = ["serve", "--port", "1025"]\ndata = ["/data", "/spool"]\n'
        '[services.mail.environment]\nGREETING = "it\'s $HOME: \\"q\\""\n')
    doc = compose_doc(render_stack(make_input(tmp_path, services=("redis", "mail"))))
    mail = doc["services"]["mail"]
    assert mail["image"] == "mail:1"
    assert mail["command"] == ["serve", "--port", "1025"]
    assert mail["environment"] == {"GREETING": 'it\'s $$HOME: "q"'}  # Compose reads it as $
    assert mail["ports"] == [{"target": 1025, "published": "8025", "host_ip": "127.0.0.1",
                              "protocol": "tcp"}]
    assert [v["source"] for v in mail["volumes"]] == ["mail-data", "mail-data-1"]
    assert set(doc["volumes"]) == {"redis-data", "mail-data", "mail-data-1"}
    own = tmp_path / "templates" / "services"
    own.mkdir(parents=True)
    (own / "mail.yml.j2").write_text('  mail:\n    image: "ours:2"\n')
    files = render_stack(make_input(tmp_path, services=("redis", "mail")), tmp_path / "templates")
    assert compose_doc(files)["services"]["mail"] == {"image": "ours:2"}
