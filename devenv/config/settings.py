"""Settings: catalog defaults < .env < process environment < command-line flags.

The table SETTINGS is data: .env.example, `devenv config` and the docs test iterate over it.
The .env file is parsed here and never written into os.environ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..certs.paths import ca_dir
from ..errors import ProjectFileError, SettingError, UsageError
from .catalog import PROJECT_FILE, Catalog, SettingSpec
from .core import (  # noqa: F401 - COMPOSE_FILE, core_settings, DEFAULT_PROJECT: from here too
    COMPOSE_FILE,
    DEFAULT_NETWORK,
    DEFAULT_PROJECT,
    core_settings,
)
from .projectfile import builtin_catalog, load_catalog


def all_settings(catalog: Catalog) -> tuple[SettingSpec, ...]:
    return (*core_settings(catalog), *catalog.setting_specs())


def __getattr__(name: str) -> object:
    # SETTINGS and SPECS: the settings of the built-in catalog (docs, .env.example)
    if name == "SETTINGS":
        return all_settings(builtin_catalog())
    if name == "SPECS":
        return {spec.key: spec for spec in all_settings(builtin_catalog())}
    raise AttributeError(name)

#: kinds whose text must be exactly a number: no whitespace is trimmed from them
_NUMBERS = ("port", "ports", "seconds", "count")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DIGITS = re.compile(r"^(0|[1-9][0-9]*)$")  # ASCII digits only: no sign, `_`, space, `1e3`
_DECIMAL = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$")  # no exponent, no nan/inf
MAX_SECONDS = 86400.0
MAX_COUNT = 100000
# Docker's reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest]
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"
_REPOSITORY = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^(?:{_DIGEST})$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, str]
    #: key -> "default", ".env", "environment" or "flag"
    sources: Mapping[str, str]
    project_dir: Path
    env_file: Path | None = None
    #: DEVENV_* keys found in .env that no setting knows (likely typos)
    unknown_keys: tuple[str, ...] = field(default_factory=tuple)
    #: the project's services: the built-in ones and devenv.toml's
    catalog: Catalog = field(default_factory=builtin_catalog)
    #: every setting of this project (devenv's own, then each service's)
    specs: tuple[SettingSpec, ...] = field(default_factory=tuple)
    #: services of the catalog turned off by a setting (the proxy while HTTPS is off):
    #: not in `catalog`; a container of one is removed by `up`
    disabled: tuple[str, ...] = ()
    #: devenv's local CA (per user: $XDG_DATA_HOME/devenv/ca), for the HTTPS proxy
    ca_dir: Path | None = None

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    @property
    def project(self) -> str:
        return self.values["DEVENV_PROJECT"]

    @property
    def network(self) -> str:
        explicit = self.values["DEVENV_NETWORK"]
        if explicit:
            return explicit
        # Two projects on one network resolve each other's service names: only the
        # default project gets the shared name from the spec.
        return DEFAULT_NETWORK if self.project == DEFAULT_PROJECT else self.project

    @property
    def https(self) -> bool:
        return parse_bool(self.values.get("DEVENV_HTTPS", "false"))

    @property
    def bind(self) -> str:
        return self.values["DEVENV_BIND"]

    @property
    def bind_is_loopback(self) -> bool:
        import ipaddress

        return ipaddress.ip_address(self.bind).is_loopback

    @property
    def url_host(self) -> str:
        """The address a host app uses to reach a published port."""
        return url_host_for(self.bind)

    @property
    def db_branches(self) -> bool:
        """Data bound to git branches: DEVENV_DB_BRANCHES, else devenv.toml's [data]
        branches, else off."""
        value = self.values.get("DEVENV_DB_BRANCHES", "").lower()
        if value:
            return _SWITCH[value]
        return bool(self.catalog.data.get("branches", False))

    @property
    def wait_timeout(self) -> float:
        return parse_seconds(self.values["DEVENV_WAIT_TIMEOUT"], "DEVENV_WAIT_TIMEOUT")

    @property
    def reserved_ports(self) -> tuple[int, ...]:
        return parse_port_list(self.values["DEVENV_RESERVED_PORTS"], "DEVENV_RESERVED_PORTS")

    def port(self, service: str) -> int:
        """The wanted host port of a service (or of devenv's own listener, e.g. the
        dashboard, whose DEVENV_<NAME>_PORT is a setting of devenv itself)."""
        spec = self.catalog.get(service)
        key = spec.port_key if spec is not None else f"DEVENV_{service.upper()}_PORT"
        return parse_port(self.values[key], key)

    def image(self, service: str) -> str:
        return self.values[self.catalog[service].image_key]

    @property
    def compose_dir(self) -> Path:
        return self.project_dir / "compose"

    @property
    def compose_file(self) -> Path:
        """The rendered project file every compose call reads."""
        return self.compose_dir / COMPOSE_FILE

    @property
    def state_dir(self) -> Path:
        return self.project_dir / ".devenv"

    def project_path(self, key: str) -> Path:
        """A path setting, relative to the project directory unless absolute."""
        path = Path(self.values[key]).expanduser()
        return path if path.is_absolute() else self.project_dir / path

    @property
    def snapshot_dir(self) -> Path:
        return self.project_path("DEVENV_SNAPSHOT_DIR")

    @property
    def seed_dir(self) -> Path:
        return self.project_path("DEVENV_SEED_DIR")

    @property
    def template_cache(self) -> Path:
        return self.state_dir / "cache" / "templates"


def url_host_for(bind: str) -> str:
    """Where a host app reaches a port published on `bind`, as a URL writes it: the
    loopback of the same family for a wildcard (Docker publishes `::` on IPv6 only, so
    127.0.0.1 would not answer), the address itself otherwise; IPv6 in brackets."""
    import ipaddress

    address = ipaddress.ip_address(bind.strip("[]"))
    if address.is_unspecified:
        return "[::1]" if address.version == 6 else "127.0.0.1"
    return f"[{address.compressed}]" if address.version == 6 else str(address)


def parse_port(text: str, key: str) -> int:
    """A port written as plain ASCII digits: `8_081`, `+5`, ` 5`, `1e3` are refused (int()
    and float() accept them, and the text would reach Compose verbatim)."""
    if not _DIGITS.match(text):
        raise SettingError(f"{key}={text!r} is not a port number",
                           hint="use a whole number from 1 to 65535, digits only")
    port = int(text)
    if not 1 <= port <= 65535:
        raise SettingError(f"{key}={port} is outside 1-65535",
                           hint="use a whole number from 1 to 65535")
    return port


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def parse_bool(text: str, key: str = "DEVENV_HTTPS") -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingError(f"{key}={text!r} is neither true nor false",
                       hint=f"use {key}=true or {key}=false")


def split_paths(text: str) -> list[str]:
    """'src, lib ,' -> ['src', 'lib']"""
    return [w.strip() for w in text.split(",") if w.strip()]


def parse_port_list(text: str, key: str) -> tuple[int, ...]:
    """Comma-separated ports; an empty value is an empty list."""
    if text == "":
        return ()
    return tuple(parse_port(word, key) for word in text.split(","))


def parse_seconds(text: str, key: str, example: str = "120") -> float:
    """A finite decimal number of seconds > 0 (no `nan`, `inf`, exponent, sign or `_`)."""
    hint = f"a decimal number of seconds above 0, at most {MAX_SECONDS:g}, e.g. {key}={example}"
    if not _DECIMAL.match(text):
        raise SettingError(f"{key}={text!r} is not a number of seconds", hint=hint)
    number = float(text)
    if not 0 < number <= MAX_SECONDS:
        raise SettingError(f"{key}={text} must be above 0 and at most {MAX_SECONDS:g}",
                           hint=hint)
    return number


def parse_count(text: str, key: str, example: str = "20") -> int:
    hint = f"a whole number from 1 to {MAX_COUNT}, digits only, e.g. {key}={example}"
    if not _DIGITS.match(text):
        raise SettingError(f"{key}={text!r} is not a whole number", hint=hint)
    if not 1 <= int(text) <= MAX_COUNT:
        raise SettingError(f"{key}={text} must be from 1 to {MAX_COUNT}", hint=hint)
    return int(text)


def image_reference_problem(value: str) -> str | None:
    """Why Docker would refuse `value` as an image reference, or None when it is valid.

    Docker's grammar: an optional registry host[:port] (it has a `.` or `:`, or is
    `localhost`), lowercase path components, an optional tag, an optional digest."""
    rest, _, digest = value.partition("@")
    if "@" in value and not _DIGEST_RE.match(digest):
        return "the digest after @ must be sha256:<64 hex digits>"
    name, tag = rest, ""
    last_slash = rest.rfind("/")
    if rest.rfind(":") > last_slash:
        name, tag = rest[: rest.rfind(":")], rest[rest.rfind(":") + 1:]
        if not _TAG_RE.match(tag):
            return "a tag is letters, digits, '_', '.' and '-' (at most 128, not starting " \
                   "with '.' or '-')"
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"
                  or first != first.lower()):
        if not _DOMAIN_RE.match(first):
            return f"{first!r} is not a registry host[:port]"
        name = remainder
    if len(rest) - (len(tag) + 1 if tag else 0) > 255:
        return "the name is longer than 255 characters"
    if not _REPOSITORY.match(name):
        if name != name.lower():
            return "the repository name must be lowercase"
        return ("the repository name is lowercase letters and digits, separated by '/', "
                "'.', '_', '__' or '-'")
    return None


_SOURCE_NAMES = {"flag": " (given by a command-line flag)", "environment": " (in the environment)",
                 ".env": " (in the .env file)"}


def _from(source: str) -> str:
    return _SOURCE_NAMES.get(source, "")


def _check(spec: SettingSpec, value: str, source: str = "") -> None:
    key, kind = spec.key, spec.kind
    if _CONTROL.search(value):
        raise SettingError(f"{key} contains a control character (newline, tab or similar)",
                           hint="use a single-line value")
    if spec.required and not value.strip():
        raise SettingError(f"{key} is empty{_from(source)}",
                           hint=f"leave it unset for the default {spec.default!r}"
                           if spec.default else "give it a value")
    if kind == "bool":
        parse_bool(value, key)
    elif kind == "port":
        parse_port(value, key)
    elif kind == "ports":
        parse_port_list(value, key)
    elif kind == "seconds":
        parse_seconds(value, key, spec.default)
    elif kind == "count":
        parse_count(value, key, spec.default)
    elif kind == "name" and not value:
        raise SettingError(f"{key} is empty{_from(source)}",
                           hint=f"give a project name, or leave {key} unset for the default "
                           f"{spec.default!r}; an empty name never means the default")
    elif kind == "name" and not _NAME.match(value):
        raise SettingError(f"{key}={value!r} is not a valid Compose project name",
                           hint="use lowercase letters, digits, '-' and '_', starting with a "
                           "letter or digit")
    elif kind == "network" and value and not _NETWORK.match(value):
        raise SettingError(f"{key}={value!r} is not a valid network name",
                           hint="use letters, digits, '.', '-' and '_'")
    elif kind == "address":
        import ipaddress

        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise SettingError(f"{key}={value!r} is not an IP address",
                               hint="e.g. 127.0.0.1 (default), 0.0.0.0 or ::1") from None
    elif kind == "paths":
        for word in split_paths(value):
            if word.startswith("/") or ".." in Path(word).parts:
                raise SettingError(f"{key}: {word!r} must be a path inside the API's build "
                                   "folder", hint=f"e.g. {key}={spec.default}")
    elif kind == "switch" and value.lower() not in _SWITCH:
        raise SettingError(f"{key}={value!r} is not true or false",
                           hint=f"use true or false, or leave {key} empty for the default")
    elif kind == "action" and value not in ("sync", "sync+restart"):
        raise SettingError(f"{key}={value!r} is not a watch action",
                           hint="use sync+restart (default) or sync")
    elif kind == "watch-engine" and value not in ("devenv", "compose"):
        raise SettingError(f"{key}={value!r} is not a watch engine",
                           hint="use devenv (devenv's own sync) or compose (Compose's "
                           "develop.watch)")
    elif kind == "lan" and value:
        import ipaddress

        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise SettingError(f"{key}={value!r} is not an IP address",
                               hint="e.g. 192.168.1.20, or empty to find it") from None
        if address.is_loopback or address.is_unspecified:
            raise SettingError(f"{key}={value} is not reachable from a phone",
                               hint="use this machine's address on the LAN, or leave it empty")
    elif kind == "image" and value and (problem := image_reference_problem(value)):
        raise SettingError(f"{key}={value!r} is not an image reference: {problem}",
                           hint="e.g. postgres:16, registry.example.com:5000/team/api:1.2 "
                           "or redis@sha256:<digest>")
    elif kind == "dir" and not value.strip():
        raise SettingError(f"{key} is empty", hint=f"remove it to use the default "
                           f"{spec.default!r}, or name a directory")
    elif kind == "text" and not value and not spec.secret:
        raise SettingError(f"{key} is empty", hint=f"remove it to use the default "
                           f"{spec.default!r}")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env file with python-dotenv, literally (no ${VAR} expansion)."""
    import io

    from dotenv.parser import parse_stream

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"env file {path} does not exist",
                         hint="check the --env-file path") from None
    except OSError as exc:
        raise UsageError(f"env file {path} cannot be read: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path.name} is not UTF-8 (line {line})",
                         hint="save the file as UTF-8") from None
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        bad_key = binding.key is not None and not _ENV_KEY.match(binding.key)
        if binding.error or bad_key:
            raise UsageError(f"{path.name} line {binding.original.line} cannot be parsed: "
                             f"{binding.original.string.strip()[:60]!r}",
                             hint="write KEY=value, one per line; quote values with spaces")
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


def load_settings(
    project_dir: Path,
    environ: Mapping[str, str],
    flags: Mapping[str, str] | None = None,
    env_file: Path | None = None,
) -> Settings:
    """Merge the four layers and validate every value."""
    return _load(project_dir, environ, flags, env_file, problems=None)


@dataclass(frozen=True)
class SettingProblem:
    key: str  # the setting, or "" for the .env file as a whole
    error: UsageError


def load_settings_leniently(
    project_dir: Path,
    environ: Mapping[str, str],
    flags: Mapping[str, str] | None = None,
    env_file: Path | None = None,
) -> tuple[Settings, list[SettingProblem]]:
    """For `doctor`: every problem at once, and settings with a bad value replaced by its
    default (an unreadable .env file by none), so the other checks can still run."""
    problems: list[SettingProblem] = []
    return _load(project_dir, environ, flags, env_file, problems), problems


def _load(project_dir: Path, environ: Mapping[str, str], flags: Mapping[str, str] | None,
          env_file: Path | None, problems: list[SettingProblem] | None) -> Settings:
    explicit_env_file = env_file is not None
    path = env_file if env_file is not None else project_dir / ".env"
    dotenv: dict[str, str] = {}
    if explicit_env_file or path.is_file():
        try:
            dotenv = read_env_file(path)
        except UsageError as exc:
            if problems is None:
                raise
            problems.append(SettingProblem("", exc))
    try:
        catalog = load_catalog(project_dir)
        declared = _declared_defaults(catalog)
    except ProjectFileError as exc:
        if problems is None:
            raise
        problems.append(SettingProblem(PROJECT_FILE, exc))
        catalog, declared = builtin_catalog(), {}
    specs = all_settings(catalog)
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for spec in specs:
        for layer, source in ((flags or {}, "flag"), (environ, "environment"),
                              (dotenv, ".env")):
            if spec.key in layer and layer[spec.key] is not None:
                values[spec.key], sources[spec.key] = str(layer[spec.key]), source
                break
        else:
            values[spec.key], sources[spec.key] = spec.default, "default"
        value = values[spec.key]
        if value != value.strip() and spec.kind not in ("text", *_NUMBERS):
            value = values[spec.key] = value.strip()
        try:
            try:
                _check(spec, value, sources[spec.key])
            except SettingError as exc:
                if sources[spec.key] == "default" and spec.key in declared:
                    raise _in_project_file(declared[spec.key], exc,
                                           f"give it a default in {PROJECT_FILE}, or set "
                                           f"{spec.key} in .env") from None
                raise
        except UsageError as exc:
            if problems is None:
                raise
            problems.append(SettingProblem(spec.key, exc))
            values[spec.key], sources[spec.key] = spec.default, "default"
    if sources.get("DEVENV_PROJECT") == "default" and _branches_on(values, catalog):
        derived = worktree_project(project_dir, values["DEVENV_PROJECT"])
        if derived:
            values["DEVENV_PROJECT"], sources["DEVENV_PROJECT"] = derived, "git worktree"
    # DEVENV_TUNNEL_<NAME>_* are a declared tunnel's credentials (devenv/tunnels.py).
    unknown = tuple(k for k in dotenv if k.startswith("DEVENV_") and k not in values
                    and not k.startswith("DEVENV_TUNNEL_"))
    # The HTTPS proxy is part of the stack only while DEVENV_HTTPS is on.
    https = parse_bool(values["DEVENV_HTTPS"]) if "DEVENV_HTTPS" in values else False
    disabled = () if https else tuple(catalog.optional)
    settings = Settings(values=values, sources=sources, project_dir=project_dir,
                        env_file=path if (explicit_env_file or dotenv) else None,
                        unknown_keys=unknown,
                        catalog=catalog.with_optional() if https else catalog, specs=specs,
                        disabled=disabled, ca_dir=ca_dir(environ))
    try:
        _check_distinct_ports(settings, skip={p.key for p in problems or ()})
    except SettingError as exc:
        if problems is None:
            raise
        problems.append(SettingProblem("DEVENV_*_PORT", exc))
    return settings


def _branches_on(values: Mapping[str, str], catalog: Catalog) -> bool:
    value = values.get("DEVENV_DB_BRANCHES", "").lower()
    return _SWITCH.get(value, False) if value else bool(catalog.data.get("branches", False))


def worktree_project(project_dir: Path, base: str) -> str | None:
    """With branches on, a linked git worktree is a project of its own: `<base>-<its
    folder>-<hash of its path>`, stable while the worktree stays where it is. None for the
    repository's main checkout (and outside git: `up` says so)."""
    import hashlib
    import re

    from .gitinfo import GitError, place

    try:
        where = place(project_dir)
    except GitError:
        return None
    if not where.linked:
        return None
    words = re.sub(r"[^a-z0-9]+", "-", where.toplevel.name.lower()).strip("-")[:24].strip("-")
    digest = hashlib.sha256(str(where.toplevel).encode("utf-8", "surrogateescape")).hexdigest()
    return f"{base}-{words or 'worktree'}-{digest[:6]}"


def _declared_defaults(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """Setting -> (table, field) of devenv.toml that gives its default. A default that is
    not empty is checked like any value now, whether or not .env overrides it here: a
    teammate without the override would meet it later."""
    declared: dict[str, tuple[str, str]] = {}
    for name, service in catalog.items():
        if service.origin != PROJECT_FILE:
            continue
        table = f"services.{name}"
        declared[service.port_key] = (table, "host_port")
        declared[service.image_key] = (table, "image")
        declared.update({setting.key: (f"{table}.settings.{i}", "default")
                         for i, setting in enumerate(service.settings)})
    for spec in catalog.setting_specs():
        if spec.key in declared and spec.default:
            try:
                _check(spec, spec.default)
            except SettingError as exc:
                raise _in_project_file(declared[spec.key], exc) from None
    return declared


def _in_project_file(where: tuple[str, str], exc: SettingError,
                     hint: str | None = None) -> ProjectFileError:
    table, fieldname = where
    return ProjectFileError(PROJECT_FILE, table, fieldname, exc.message,
                            hint=exc.hint if hint is None else hint)


def _check_distinct_ports(settings: Settings, skip: set[str] | frozenset[str] = frozenset()
                          ) -> None:
    seen: dict[int, str] = {}
    for spec in settings.catalog.values():
        if spec.port_key in skip:
            continue
        port = settings.port(spec.name)
        if port in seen:
            raise SettingError(
                f"{seen[port]} and {spec.port_key} are both {port}",
                hint="give each service its own port (devenv moves taken ports by itself)")
        seen[port] = spec.port_key


#: the words a true/false setting takes ("" is its default)
_SWITCH = {"": False, "true": True, "1": True, "yes": True, "on": True,
           "false": False, "0": False, "no": False, "off": False}
