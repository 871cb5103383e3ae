"""devenv.toml: a project's own services (and, for other commands, its tunnels).

Read with tomllib and checked completely before anything starts: an unknown field, a port
out of range, a name or alias that clashes, a `needs` cycle, a probe that does not exist or
invalid TOML is a ProjectFileError (exit 2) naming the file, the table and the field. The
built-in catalog (devenv/config/services.toml) is read by the same code, so the six services and
a project's own are declared the same way.

    [services.mailpit]
    image = "axllent/mailpit:v1.21"
    port = 8025                # container port of its main URL
    host_port = 8025           # wanted host port (DEVENV_MAILPIT_PORT), planned as any
    probe = "http:/livez"      # http:PATH | tcp | postgres | redis
    aliases = ["mail"]
    needs = []
    url = "http://{host}:{port}/"
    data = ["/data"]
    [services.mailpit.environment]
    MP_SMTP_AUTH_ACCEPT_ANY = "1"
"""

from __future__ import annotations

import contextlib
import functools
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ProjectFileError
from ..files import write_atomic
from .apptables import check_apps, parse_builtin_app, parse_project_apps
from .catalog import (
    BUILTIN_FILE,
    DEVICE_ENV,
    PROJECT_FILE,
    BuildSpec,
    Catalog,
    HostApp,
    ProbeSpec,
    ServiceSpec,
    SettingSpec,
    placeholders,
    url_problem,
    url_text_problem,
)
from .core import COMPOSE_FILE, own_keys

#: top-level tables devenv.toml may hold; `tunnels` belongs to `devenv tunnel`
TOP_LEVEL = ("services", "host_apps", "tunnels", "data")
PROBE_KINDS = ("http", "tcp", "postgres", "redis")
SETTING_KINDS = ("name", "network", "address", "port", "ports", "seconds", "count", "image",
                 "path", "paths", "action", "watch-engine", "lan", "dir", "command",
                 "text")
FIELDS = ("image", "port", "host_port", "probe", "probe_args", "aliases", "needs", "url",
          "environment", "command", "data", "title", "description", "app_env",
          "staging_port", "prod_port", "image_help", "files", "reload_signal", "start_first",
          "build", "login", "check_login", "private", "watch", "device_urls",
          "migrate_setting", "seed", "settings", "https_proxy")
BUILD_FIELDS = ("source_setting", "context", "tag", "args")
SETTING_FIELDS = ("key", "default", "kind", "help", "secret", "generate")

# Patterns as text, compiled (and cached by `re`) on first use: the built-in catalog is
# trusted and never matched, so `devenv ports` compiles none of them.
NAME = r"^[a-z][a-z0-9_]{0,39}$"
ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"
SETTING_KEY = r"^DEVENV_[A-Z0-9_]+$"
SIGNAL = r"^SIG[A-Z0-9]+$"
IMAGE = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$"
TAG = r"^[a-z0-9][a-z0-9._/-]*$"


def _matches(pattern: str, value: str) -> bool:
    return re.match(pattern, value) is not None


def read_toml(path: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """The file's tables. With `cache_dir`, what was read last time is reused while the
    file's size and mtime are unchanged: parsing TOML (and importing tomllib) costs a
    few milliseconds that `devenv ports` cannot spare."""
    label = path.name
    try:
        stat = path.stat()
    except OSError as exc:
        raise ProjectFileError(label, "", "", f"cannot be read: {exc.strerror}") from exc
    stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = cache_dir / f"{label}.json" if cache_dir is not None else None
    if cache is not None:
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if cached.get("stamp") == stamp and isinstance(cached.get("data"), dict):
                return dict(cached["data"])
    data = _parse_toml(path)
    if cache is not None:

        with contextlib.suppress(Exception):  # no cache is fine; it never fails a command
            write_atomic(cache, json.dumps({"stamp": stamp, "data": data}))
    return data


def _parse_toml(path: Path) -> dict[str, Any]:
    import tomllib

    label = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProjectFileError(label, "", "", f"cannot be read: {exc.strerror}") from exc
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProjectFileError(label, "", "", "is not UTF-8",
                               hint="save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProjectFileError(label, "", "", f"invalid TOML: {exc}",
                               hint="see https://toml.io for the syntax") from None


def read_catalog_file(path: Path, builtin: bool = False,
                      cache_dir: Path | None = None,
                      base_apps: tuple[HostApp, ...] = ()) -> Catalog:
    """A file of [services.*] (and, built in, [host_apps.*]) tables as a Catalog, each
    service checked on its own and the whole for clashes, unknown needs and cycles."""
    data = read_toml(path, cache_dir)
    label = path.name
    allowed = ("services", "host_apps") if builtin else TOP_LEVEL
    for key in data:
        if key not in allowed:
            raise ProjectFileError(label, key, "", "unknown table",
                                   hint=f"devenv.toml holds only {', '.join(allowed)} tables")
    services = _table(data, "services", label, "services")
    specs = {name: parse_service(label, name, raw, builtin)
             for name, raw in services.items()}
    app_tables = _table(data, "host_apps", label, "host_apps")
    apps = tuple(parse_builtin_app(_Fields, label, name, raw)
                 for name, raw in app_tables.items()) if builtin else \
        parse_project_apps(_Fields, label, app_tables, base_apps)
    catalog = Catalog(services=specs, host_apps=apps,
                      tunnels=_table(data, "tunnels", label, "tunnels"),
                      data=_data_table(_table(data, "data", label, "data"), label))
    if builtin:  # a project's file is checked once merged with the built-in services
        catalog = check_catalog(catalog, label, list(specs)).split_optional()
    return catalog


def merge_project_file(builtin: Catalog, path: Path,
                       cache_dir: Path | None = None) -> Catalog:
    """The built-in catalog with the project's devenv.toml services after it."""
    own = read_catalog_file(path, cache_dir=cache_dir, base_apps=builtin.host_apps)
    label = path.name
    builtin = builtin.with_optional()  # a name or alias of the proxy is taken as well
    for name, spec in own.services.items():
        if name in builtin.services:
            raise ProjectFileError(label, f"services.{name}", "",
                                   f"{name!r} is a built-in service",
                                   hint="give your service another name; to change the "
                                   "built-in one, override templates/services/"
                                   f"{name}.yml.j2 or its DEVENV_{name.upper()}_* settings")
        for alias in spec.aliases:
            if alias in builtin.services or alias in builtin.aliases:
                owner = builtin.aliases.get(alias, alias)
                raise ProjectFileError(label, f"services.{name}", "aliases",
                                       f"{alias!r} is already taken by the built-in {owner}")
    merged = Catalog(services={**builtin.services, **own.services},
                     host_apps=own.host_apps, tunnels=own.tunnels, data=own.data)
    return check_apps(check_catalog(merged, label, list(own.services)), label).split_optional()


def check_catalog(catalog: Catalog, label: str, checked: list[str]) -> Catalog:
    """Names, aliases, needs, settings and URL placeholders across the services in `checked`
    (the file's own), against the whole catalog; the catalog with every `needs` written as
    service names (an alias resolved)."""
    services = dict(catalog.services)
    words: dict[str, str] = {name: name for name in catalog.services}
    for name in catalog.services:
        for alias in catalog.services[name].aliases:
            if alias in words and name in checked:
                raise ProjectFileError(label, f"services.{name}", "aliases",
                                       f"{alias!r} is already the name or an alias of "
                                       f"{words[alias]}")
            words[alias] = name
    keys: dict[str, str] = {}
    own = own_keys(catalog)
    for name, spec in catalog.services.items():
        for setting in spec.setting_specs():
            if name in checked:
                _check_own_key(label, spec, setting.key, own(setting.key))
            if setting.key in keys and name in checked:
                raise ProjectFileError(label, f"services.{name}", "settings",
                                       f"{setting.key} is already a setting of "
                                       f"{keys[setting.key]}")
            keys[setting.key] = name
    _check_app_env(label, catalog, checked)
    _check_files(label, catalog, checked)
    secret_keys = catalog.secret_keys()
    for name in checked:
        spec = catalog.services[name]
        table = f"services.{name}"
        resolved = []
        for need in spec.needs:
            target = words.get(need)
            if target is None:
                raise ProjectFileError(label, table, "needs", f"unknown service {need!r}",
                                       hint=f"valid names: {', '.join(words)}")
            resolved.append(target)
        if tuple(resolved) != spec.needs:
            services[name] = replace(spec, needs=tuple(resolved))
        for fieldname, template in (("url", spec.url), *(
                (f"probe_args.{k}", v) for k, v in spec.probe.args.items())):
            for key in placeholders(template):
                if key not in ("host", "port") and key not in keys:
                    raise ProjectFileError(label, table, fieldname,
                                           f"{{{key}}} is neither host, port nor a setting")
        for fieldname, keylist in (("login", spec.login),
                                   ("migrate_setting", [spec.migrate_setting]
                                    if spec.migrate_setting else []),
                                   ("build", _build_keys(spec.build))):
            for key in keylist:
                if key not in keys:
                    raise ProjectFileError(label, table, fieldname,
                                           f"{key} is not a setting of any service")
        if spec.login and spec.login[1] not in secret_keys:
            raise ProjectFileError(label, table, "login",
                                   f"{spec.login[1]}, the password, is not a secret setting",
                                   hint="declare it with secret = true, so that devenv masks "
                                   "it in what it shows")
    catalog = Catalog(services, catalog.host_apps, catalog.tunnels, catalog.optional,
                      catalog.data)
    for name in checked:
        cycle = _cycle(catalog, name)
        if cycle:
            raise ProjectFileError(label, f"services.{name}", "needs",
                                   f"a cycle: {' -> '.join(cycle)}",
                                   hint="a service cannot need itself, even through others")
    return catalog


def _check_own_key(label: str, spec: ServiceSpec, key: str, why: str | None) -> None:
    """A service's setting must not be one of devenv's own (`why` says what it is to
    devenv): its default would silently replace devenv's (DEVENV_BIND = "0.0.0.0"
    publishing everyone's stack on every interface)."""
    if why is None:
        return
    table = f"services.{spec.name}"
    if any(setting.key == key for setting in spec.settings):
        raise ProjectFileError(label, table, "settings", f"{key} is {why}; a service "
                               "cannot declare it",
                               hint=f"name the service's setting DEVENV_{spec.env_name}_..., "
                               f"and set devenv's own {key} in .env if you must")
    raise ProjectFileError(label, table, "", f"a service named {spec.name!r} would take "
                           f"{key}, which is {why}", hint="give the service another name")


def _check_app_env(label: str, catalog: Catalog, checked: list[str]) -> None:
    """Each variable of `ports --env` has one writer: two services with one app_env leave
    the host apps with one of the two URLs (DATABASE_URL pointing at the wrong database)."""
    owners: dict[str, str] = {}
    for name, spec in catalog.services.items():
        table = f"services.{name}"
        writes = [(spec.app_env, "app_env", name)]
        if spec.device_urls:
            writes += [(key, "device_urls", f"{name}'s device URLs") for key in DEVICE_ENV]
        for key, fieldname, owner in writes:
            if name in checked and key in owners:
                default = " (the default)" if (fieldname == "app_env" and
                                               key == f"{spec.env_name}_URL") else ""
                raise ProjectFileError(label, table, fieldname,
                                       f"{key}{default} is already written for "
                                       f"{owners[key]}",
                                       hint=f"set app_env to another variable, e.g. "
                                       f"{spec.env_name}_DATABASE_URL"
                                       if fieldname == "app_env" else
                                       "one service gives the device URLs")
            if name in checked and key.startswith("DEVENV_"):
                raise ProjectFileError(label, table, fieldname,
                                       f"{key} is in devenv's own namespace (DEVENV_*); "
                                       "sourced, it would change a setting",
                                       hint=f"e.g. {spec.env_name}_URL")
            owners[key] = owner


def _check_files(label: str, catalog: Catalog, checked: list[str]) -> None:
    """Each file of compose/ is rendered for one service: two would overwrite each other."""
    rendered: dict[str, str] = {}
    for name, spec in catalog.services.items():
        for path in spec.files:
            output = _rendered_name(path)
            if output in rendered and name in checked:
                raise ProjectFileError(label, f"services.{name}", "files",
                                       f"compose/{output} is already rendered for "
                                       f"{rendered[output]}",
                                       hint="give the file a path of its own, e.g. under "
                                       f"{name}/")
            rendered[output] = name


def _rendered_name(path: str) -> str:
    """Where a template of `files` lands in compose/ (a .j2 suffix is dropped)."""
    return path.removesuffix(".j2")


def _build_keys(build: BuildSpec | None) -> list[str]:
    if build is None:
        return []
    return [k for k in (build.source_setting, *build.args.values()) if k]


def _cycle(catalog: Catalog, start: str) -> list[str]:
    path: list[str] = []

    def walk(name: str) -> list[str]:
        if name in path:
            return [*path[path.index(name):], name]
        path.append(name)
        for need in catalog.services[name].needs:
            if need in catalog.services:
                found = walk(need)
                if found:
                    return found
        path.pop()
        return []

    return walk(start)


# --- one table ----------------------------------------------------------------------------
class _Fields:
    """Typed reads of one table's fields, each error naming file, table and field."""

    def __init__(self, label: str, table: str, raw: Any, allowed: tuple[str, ...],
                 trusted: bool = False):
        if not isinstance(raw, dict):
            raise ProjectFileError(label, table, "", "must be a table")
        self.label, self.table, self.raw = label, table, raw
        #: the built-in catalog: types are checked, patterns are not (its tests check them)
        self.trusted = trusted
        for key in raw:
            if key not in allowed:
                raise ProjectFileError(label, table, key, "unknown field",
                                       hint=f"the fields are: {', '.join(allowed)}")

    def fail(self, key: str, problem: str, hint: str | None = None) -> ProjectFileError:
        return ProjectFileError(self.label, self.table, key, problem, hint)

    def has(self, key: str) -> bool:
        return key in self.raw

    def text(self, key: str, default: str | None = None, pattern: str | None = None,
            what: str = "") -> str:
        if key not in self.raw:
            if default is None:
                raise self.fail(key, "is required")
            return default
        value = self.raw[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {value!r}")
        if "\n" in value or "\0" in value:
            raise self.fail(key, "must be one line")
        if pattern is not None and not self.trusted and not _matches(pattern, value):
            raise self.fail(key, f"{value!r} is not {what or 'valid'}")
        return value

    def port(self, key: str, default: int | None = None, required: bool = False) -> int | None:
        if key not in self.raw:
            if required and default is None:
                raise self.fail(key, "is required", hint="the container port of its main URL")
            return default
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, not {value!r}")
        if not 1 <= value <= 65535:
            raise self.fail(key, f"{value} is outside 1-65535")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def strings(self, key: str, pattern: str | None = None,
                what: str = "") -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        for v in value:
            if pattern is not None and not self.trusted and not _matches(pattern, v):
                raise self.fail(key, f"{v!r} is not {what or 'valid'}")
        return tuple(value)

    def mapping(self, key: str, key_pattern: str = ENV_KEY) -> dict[str, str]:
        value = self.raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        out = {}
        for k, v in value.items():
            if not self.trusted and not _matches(key_pattern, k):
                raise self.fail(f"{key}.{k}", "is not a valid name")
            if isinstance(v, bool):
                v = "true" if v else "false"
            if not isinstance(v, (str, int, float)):
                raise self.fail(f"{key}.{k}", f"must be a string or a number, not {v!r}")
            out[k] = str(v)
        return out


def parse_service(label: str, name: str, raw: Any, builtin: bool = False) -> ServiceSpec:
    table = f"services.{name}"
    if not builtin and not _matches(NAME, name):
        raise ProjectFileError(label, table, "", f"{name!r} is not a service name",
                               hint="lowercase letters, digits and _, starting with a letter "
                               "(it becomes the Compose service and DEVENV_<NAME>_*)")
    f = _Fields(label, table, raw, FIELDS, trusted=builtin)
    container_port = f.port("port", required=True)
    host_port = f.port("host_port", default=container_port)
    assert container_port is not None and host_port is not None
    probe = _probe(f)
    aliases = f.strings("aliases", NAME, "an alias (lowercase letters, digits and _)")
    if name in aliases:
        raise f.fail("aliases", f"{name!r} is the service's own name")
    url = _url(f, probe.kind, builtin)
    build = _build(label, table, raw.get("build"), builtin) if "build" in raw else None
    image = _image(f, build, builtin)
    data, files = _data_dirs(f), _files(f)
    login, check_login = _login(f, probe.kind)
    return ServiceSpec(
        name=name,
        title=f.text("title", name),
        description=f.text("description", ""),
        container_port=container_port,
        dev_port=host_port,
        staging_port=f.port("staging_port"),
        prod_port=f.port("prod_port"),
        aliases=aliases,
        needs=f.strings("needs"),
        probe=probe,
        url=url,
        default_image=image,
        image_help=f.text("image_help", ""),
        app_env=f.text("app_env", f"{name.upper()}_URL", ENV_KEY, "a variable name"),
        data_dirs=data,
        start_first=f.flag("start_first"),
        files=files,
        environment=f.mapping("environment"),
        command=f.strings("command"),
        reload_signal=f.text("reload_signal", "", SIGNAL, "a signal name such as SIGHUP")
        if f.has("reload_signal") else "",
        build=build,
        login=login,
        check_login=check_login,
        private=f.flag("private"),
        watch=f.flag("watch"),
        device_urls=f.flag("device_urls"),
        migrate_setting=f.text("migrate_setting", "", SETTING_KEY, "a DEVENV_* setting"),
        seed=f.flag("seed"),
        settings=_settings(label, table, raw.get("settings", []), builtin),
        https_proxy=_https_proxy(f, builtin),
        origin="built-in" if builtin else label,
    )


def _url(f: _Fields, probe_kind: str, builtin: bool) -> str:
    """The URL form: placeholders that pair, URL characters only, a scheme or {host} first."""
    default_url = {"http": "http://{host}:{port}", "redis": "redis://{host}:{port}",
                   "postgres": "postgresql://{host}:{port}"}.get(probe_kind,
                                                                "tcp://{host}:{port}")
    url = f.text("url", default_url)
    try:
        placeholders(url)
    except ValueError as exc:
        raise f.fail("url", f"{url!r}: {exc}") from None
    problem = None if builtin else url_problem(url)
    if problem:
        raise f.fail("url", f"{url!r} {problem}",
                     hint="e.g. http://{host}:{port}/ or postgresql://{host}:{port}/app")
    return url


def _image(f: _Fields, build: BuildSpec | None, builtin: bool) -> str:
    """The image reference; empty only for a service devenv builds."""
    image = f.text("image", "" if build else None)
    if not image and not build:
        raise f.fail("image", "is empty: the service has no image to run",
                     hint="name an image, e.g. redis:7, or declare a [build]")
    if image and not builtin and not _matches(IMAGE, image):
        raise f.fail("image", f"{image!r} is not an image reference",
                     hint="e.g. redis:7 or registry.example.com/team/mail:1.2")
    return image


def _data_dirs(f: _Fields) -> tuple[str, ...]:
    """Container paths a volume is mounted on: absolute, normalized, not /, once each."""
    data = f.strings("data")
    for i, path in enumerate(data):
        if not path.startswith("/"):
            raise f.fail("data", f"{path!r} is not an absolute container path")
        # Docker refuses these when it creates the container, after others started
        if path == "/" or posixpath.normpath(path) != path or ":" in path:
            raise f.fail("data", f"{path!r} is not a directory a volume can be mounted on",
                         hint="a normalized absolute path other than /, e.g. /data")
        if path in data[:i]:
            raise f.fail("data", f"{path!r} is listed twice")
    return data


def _files(f: _Fields) -> tuple[str, ...]:
    """Templates rendered into compose/: inside templates/, never the compose file or a
    hidden name."""
    files = f.strings("files")
    for path in files:
        if path.startswith("/") or ".." in path.split("/"):
            raise f.fail("files", f"{path!r} must be a path inside templates/")
        # a hidden name could replace compose/'s manifest; the compose file is devenv's
        if (posixpath.normpath(path) != path or _rendered_name(path) == COMPOSE_FILE
                or any(part.startswith(".") for part in path.split("/"))):
            raise f.fail("files", f"{path!r} is not a file devenv may render into compose/",
                         hint="a normalized path inside templates/, e.g. mailpit/auth.txt.j2")
    return files


def _login(f: _Fields, probe_kind: str) -> tuple[tuple[str, ...], bool]:
    """The user and password settings, and whether devenv logs in once it answers."""
    login = f.strings("login", SETTING_KEY, "a DEVENV_* setting")
    if login and len(login) != 2:
        raise f.fail("login", "must name two settings: the user and the password")
    check_login = f.flag("check_login")
    if check_login and (probe_kind != "postgres" or not login):
        raise f.fail("check_login", "needs probe = \"postgres\" and a login",
                     hint="devenv logs in with the PostgreSQL protocol, as the login says")
    return login, check_login


def _https_proxy(f: _Fields, builtin: bool) -> bool:
    """Only the built-in catalog declares the HTTPS proxy (there is one per stack)."""
    if f.has("https_proxy") and not builtin:
        raise f.fail("https_proxy", "only the built-in proxy service is the HTTPS proxy",
                     hint="turn it on with DEVENV_HTTPS=true; its image is "
                     "DEVENV_PROXY_IMAGE")
    return f.flag("https_proxy")


def _probe(f: _Fields) -> ProbeSpec:
    text = f.text("probe", "tcp")
    kind, _, path = text.partition(":")
    if kind not in PROBE_KINDS:
        raise f.fail("probe", f"{text!r} is not a probe",
                     hint="use http:PATH, tcp, postgres or redis")
    if kind == "http":
        path = path or "/"
        if not path.startswith("/") or " " in path:
            raise f.fail("probe", f"{text!r}: the path must start with / and hold no blank")
        problem = None if f.trusted else url_text_problem(path)
        if problem:
            raise f.fail("probe", f"{text!r}: the path {problem}")
    elif path:
        raise f.fail("probe", f"{text!r}: only http takes a path")
    args = f.mapping("probe_args")
    for key in args:
        if key not in ("user", "database"):
            raise f.fail(f"probe_args.{key}", "unknown probe argument",
                         hint="postgres takes user and database")
    return ProbeSpec(kind, path or "/", args)


def _build(label: str, table: str, raw: Any, trusted: bool = False) -> BuildSpec:
    f = _Fields(label, f"{table}.build", raw, BUILD_FIELDS, trusted)
    source = f.text("source_setting", "", SETTING_KEY, "a DEVENV_* setting")
    context = f.text("context", "")
    if context.startswith("/") or ".." in context.split("/"):
        raise f.fail("context", f"{context!r} must be a directory inside templates/")
    if not source and not context:
        raise f.fail("", "needs source_setting or context")
    args = f.mapping("args")
    for arg, key in args.items():
        if not f.trusted and not _matches(SETTING_KEY, key):
            raise f.fail(f"args.{arg}", f"{key!r} is not a DEVENV_* setting")
    return BuildSpec(source_setting=source, context=context,
                     tag=f.text("tag", "", TAG,
                               "an image name"), args=args)


def _settings(label: str, table: str, raw: Any, trusted: bool = False
              ) -> tuple[SettingSpec, ...]:
    if not isinstance(raw, list):
        raise ProjectFileError(label, table, "settings", "must be an array of tables "
                               "([[services.NAME.settings]])")
    specs = []
    for i, item in enumerate(raw):
        f = _Fields(label, f"{table}.settings.{i}", item, SETTING_FIELDS, trusted)
        kind = f.text("kind", "text")
        if kind not in SETTING_KINDS:
            raise f.fail("kind", f"{kind!r} is not a kind", hint=", ".join(SETTING_KINDS))
        generate = f.flag("generate")
        secret = f.flag("secret") if f.has("secret") else generate
        if generate and not secret:
            raise f.fail("secret", "a generated value is a secret",
                         hint="remove secret = false: it is masked in what devenv shows")
        specs.append(SettingSpec(key=f.text("key", None, SETTING_KEY, "a DEVENV_* name"),
                                 default=f.text("default", ""), kind=kind,
                                 help=f.text("help", ""), secret=secret, generate=generate))
    return tuple(specs)


def _data_table(table: Mapping[str, Any], label: str) -> dict[str, Any]:
    """[data]: `branches = true` binds PostgreSQL's and Redis' data to the git branch."""
    for key, value in table.items():
        if key != "branches":
            raise ProjectFileError(label, "data", key, "unknown field",
                                   hint="[data] holds only `branches = true|false`")
        if not isinstance(value, bool):
            raise ProjectFileError(label, "data", key, f"{value!r} is not true or false",
                                   hint="write branches = true (or false)")
    return dict(table)


def _table(data: Mapping[str, Any], key: str, label: str, table: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProjectFileError(label, table, "", "must be a table")
    return value


@functools.lru_cache(maxsize=4)
def builtin_catalog(cache_dir: Path | None = None) -> Catalog:
    return read_catalog_file(BUILTIN_FILE, builtin=True, cache_dir=cache_dir)


def load_catalog(project_dir: Path | None) -> Catalog:
    """The built-in services plus the project's devenv.toml (when there is one)."""
    if project_dir is None:
        return builtin_catalog()
    cache_dir = project_dir / ".devenv" / "cache" if (project_dir / ".devenv").is_dir() \
        else None
    builtin = builtin_catalog(cache_dir)
    path = project_dir / PROJECT_FILE
    if not path.is_file():
        return builtin
    return merge_project_file(builtin, path, cache_dir)
