"""Named SSH tunnels as the project declares them: `[tunnels.NAME]` tables of devenv.toml.

Pure values and validation. Credentials for the far end never live in devenv.toml: they come
from the process environment or .env as DEVENV_TUNNEL_<NAME>_USER / _PASSWORD / _DB.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..config.catalog import DEVICE_ENV, url_text_problem
from ..errors import UsageError

PROJECT_FILE = "devenv.toml"
KINDS = ("postgres", "redis", "http", "tcp")
#: the fields a [tunnels.NAME] table may hold, with what each must be
FIELDS: dict[str, str] = {
    "via": "an ssh destination, e.g. \"user@bastion-host\" or a Host alias of ~/.ssh/config",
    "target": "host:port as seen from the bastion, e.g. \"prod-db.internal:5432\"",
    "kind": "one of " + ", ".join(KINDS),
    "production": "true or false",
    "ssh_options": "a list of strings passed to ssh as they are, e.g. [\"-p\", \"2222\"]",
    "local_port": "the local port wished for (default: the target's port)",
    "path": "the HTTP path that answers (kind http), e.g. \"/health\"",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_HOST = re.compile(r"^[A-Za-z0-9_.-]+$|^\[[0-9A-Fa-f:.]+\]$")
#: a port as the settings take one: ASCII digits, no sign, `_`, space or leading zero
#: (str.isdigit() also says yes to `²` and `٥`, which int() refuses or reads as 5)
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
#: ssh's flags that take a value (OpenSSH's getopt string), so `-p 2222` and `-p2222` are
#: one option and the word after `-p` is not a destination
_VALUE_FLAGS = frozenset("BbcDEeFIiJLlmOoPpQRSWw")
_FOREGROUND = "devenv keeps ssh in the foreground, as its own child"
#: ssh flags that would take the process out of devenv's hands
_FORBIDDEN_FLAGS = {
    "f": "ssh would fork into the background where devenv cannot watch or end it",
    "M": "ssh would become a connection-sharing master, which outlives it and holds the port",
    "S": "ssh would hand the forward to a shared connection devenv did not start",
    "O": "ssh would only send a command to a connection-sharing master",
    "W": "ssh would forward its standard input instead of the tunnel's port",
    "E": "ssh would write its messages to a file devenv does not read",
    "G": "ssh would only print its configuration",
    "V": "ssh would only print its version",
    "Q": "ssh would only print what it supports",
}
#: `-o` keywords (lowercase) with the same effect as one of those flags
_FORBIDDEN_KEYWORDS = {
    "forkafterauthentication": _FORBIDDEN_FLAGS["f"],
    "controlmaster": _FORBIDDEN_FLAGS["M"],
    "controlpersist": _FORBIDDEN_FLAGS["M"],
    "controlpath": _FORBIDDEN_FLAGS["S"],
}


def ssh_option_problem(options: tuple[str, ...] | list[str]) -> str | None:
    """Why ssh_options would take ssh out of devenv's hands, read as ssh reads its
    arguments (combined flags as in `-fN`, values joined as in `-oKey=value` or given
    apart); None when they would not."""
    i = 0
    while i < len(options):
        word = options[i]
        if word in ("-", "--") or not word.startswith("-"):
            return (f"holds {word!r}, which is no option: ssh would take it (and what "
                    "follows) as the destination")
        for j, flag in enumerate(word[1:], start=1):
            if flag in _FORBIDDEN_FLAGS:
                return f"holds {word} (-{flag}): {_FORBIDDEN_FLAGS[flag]}"
            if flag in _VALUE_FLAGS:
                value = word[j + 1:]
                if not value:
                    i += 1
                    if i == len(options):
                        return f"ends with {word}, which needs a value"
                    value = options[i]
                keyword = re.split(r"[\s=]", value.strip(), maxsplit=1)[0].lower()
                if flag == "o" and keyword in _FORBIDDEN_KEYWORDS:
                    return f"holds -o {value}: {_FORBIDDEN_KEYWORDS[keyword]}"
                break
        i += 1
    return None


@dataclass(frozen=True)
class TunnelSpec:
    name: str
    via: str
    target_host: str
    target_port: int
    kind: str = "tcp"
    production: bool = False
    ssh_options: tuple[str, ...] = ()
    local_port: int | None = None
    path: str = "/"

    @property
    def target(self) -> str:
        return f"{self.target_host}:{self.target_port}"

    @property
    def wanted_port(self) -> int:
        """The local port asked for: `local_port`, else the target's own port."""
        return self.local_port or self.target_port

    @property
    def env_key(self) -> str:
        """The name apps read the URL from, e.g. PROD_DB_URL."""
        return f"{key_stem(self.name)}_URL"

    @property
    def request_name(self) -> str:
        """How the port planner and its messages name this tunnel."""
        return f"tunnel {self.name}"


def key_stem(name: str) -> str:
    return name.upper().replace("-", "_")


def read_tunnel_tables(project_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The raw `tunnels` table of <project_dir>/devenv.toml ({} when there is no file).

    The use cases take the tables from the project's catalog (projectfile reads the file
    once); this reader serves shell completion and load_tunnels, which need no settings.
    """
    import tomllib

    path = project_dir / PROJECT_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return path, {}
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8", hint="save the file as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}",
                         hint="fix the line named; https://toml.io shows the syntax") from None
    tables = data.get("tunnels", {})
    if not isinstance(tables, dict):
        raise UsageError(f"{path}: `tunnels` must be a table of tables",
                         hint="declare each tunnel as [tunnels.NAME]")
    return path, tables


def parse_tunnels(path: Path, tables: Mapping[str, Any],
                  services: Mapping[str, Any] | None = None) -> dict[str, TunnelSpec]:
    """Validate every [tunnels.NAME] table; the first bad one is a UsageError naming the
    file, the table and the field. `services` is the project's catalog (the built-in one
    when not given): a tunnel's URL variable must not shadow a service's."""
    if services is None:
        from ..config.projectfile import builtin_catalog

        services = builtin_catalog()
    reserved_keys = {spec.app_env: name for name, spec in services.items()}
    reserved_keys.update({key: f"{name}'s device URLs" for name, spec in services.items()
                          if spec.device_urls for key in DEVICE_ENV})
    specs: dict[str, TunnelSpec] = {}
    keys: dict[str, str] = {}
    for name, table in tables.items():
        where = f"{path}: [tunnels.{name}]"
        if not _NAME.fullmatch(name):
            raise UsageError(f"{where}: the name must be lowercase letters, digits, '-' or '_'",
                             hint="e.g. [tunnels.prod-db]")
        if not isinstance(table, dict):
            raise UsageError(f"{where} must be a table", hint="write [tunnels.NAME] and its "
                             "fields on the lines below")
        spec = _parse_one(where, name, table)
        if spec.env_key in reserved_keys:
            raise UsageError(f"{where}: its URL would be {spec.env_key}, which "
                             f"{reserved_keys[spec.env_key]} uses", hint="rename the tunnel")
        if spec.env_key in keys:
            raise UsageError(f"{where}: its URL {spec.env_key} is also tunnel "
                             f"{keys[spec.env_key]}'s", hint="rename one of them")
        keys[spec.env_key] = name
        specs[name] = spec
    return specs


def _parse_one(where: str, name: str, table: Mapping[str, Any]) -> TunnelSpec:
    for key in table:
        if key not in FIELDS:
            raise UsageError(f"{where}: unknown field `{key}`",
                             hint="fields: " + ", ".join(FIELDS))
    for key in ("via", "target"):
        if key not in table:
            raise UsageError(f"{where}: `{key}` is missing", hint=f"{key} is {FIELDS[key]}")

    def bad(key: str) -> UsageError:
        return UsageError(f"{where}: `{key}` = {table[key]!r} is not {FIELDS[key]}",
                          hint=f"{key} is {FIELDS[key]}")

    via = table["via"]
    if (not isinstance(via, str) or not via or via.startswith("-")
            or re.search(r"[\s\x00-\x1f]", via)):
        raise bad("via")
    host, port = _parse_target(table["target"])
    if host is None:
        raise bad("target")
    kind = table.get("kind", "tcp")
    if kind not in KINDS:
        raise bad("kind")
    production = table.get("production", False)
    if not isinstance(production, bool):
        raise bad("production")
    options = table.get("ssh_options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise bad("ssh_options")
    problem = ssh_option_problem(options)
    if problem:
        raise UsageError(f"{where}: `ssh_options` {problem}",
                         hint=f"remove it: {_FOREGROUND} whatever the ssh config says "
                         "(no connection sharing, no fork), and the destination is `via`")
    local_port = table.get("local_port")
    if local_port is not None and (isinstance(local_port, bool) or not isinstance(local_port, int)
                                   or not 1 <= local_port <= 65535):
        raise bad("local_port")
    path = table.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/") or re.search(r"\s", path):
        raise bad("path")
    problem = url_text_problem(path)
    if problem:  # the URL `ports --env` writes in single quotes
        raise UsageError(f"{where}: `path` = {path!r} {problem}",
                         hint=f"path is {FIELDS['path']}")
    return TunnelSpec(name=name, via=via, target_host=host, target_port=port, kind=kind,
                      production=production, ssh_options=tuple(options),
                      local_port=local_port, path=path)


def _parse_target(value: Any) -> tuple[str | None, int]:
    if not isinstance(value, str):
        return None, 0
    host, sep, port_text = value.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not _PORT.fullmatch(port_text):
        return None, 0
    port = int(port_text)
    return (host, port) if 1 <= port <= 65535 else (None, 0)


def load_tunnels(project_dir: Path,
                 services: Mapping[str, Any] | None = None) -> dict[str, TunnelSpec]:
    return parse_tunnels(*read_tunnel_tables(project_dir), services)


def select_tunnels(specs: Mapping[str, TunnelSpec], names: tuple[str, ...] | list[str],
                   project_dir: Path) -> list[TunnelSpec]:
    """The named tunnels (all when none is named); an undeclared name is a UsageError."""
    where = project_dir / PROJECT_FILE
    if not specs:
        raise UsageError(f"no tunnels are declared in {where}",
                         hint="add a [tunnels.NAME] table with `via` and `target` "
                         "(docs/tunnels.md)")
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise UsageError(f"tunnel {unknown[0]!r} is not declared in {where}",
                         hint="declared: " + ", ".join(specs))
    return [specs[n] for n in names] if names else list(specs.values())


# --- what runs, against what is declared ---------------------------------------------
#: the fields of a declaration a tunnel's record keeps: what its ssh was opened with
RECORDED = ("via", "target", "kind", "production", "ssh_options", "local_port", "path")


def recorded(spec: TunnelSpec, ssh_config: str) -> dict[str, Any]:
    """The declaration a tunnel is opened with, for its record (JSON); `ssh_config` is
    DEVENV_SSH_CONFIG, which decides where `via` leads too."""
    return {"via": spec.via, "target": spec.target, "kind": spec.kind,
            "production": spec.production, "ssh_options": list(spec.ssh_options),
            "local_port": spec.local_port, "path": spec.path, "ssh_config": ssh_config}


def recorded_spec(name: str, meta: Mapping[str, Any]) -> TunnelSpec | None:
    """What a record says its ssh runs, checked as devenv.toml is; None when it does not
    say (a record that does not check is not believed)."""
    table = {key: meta[key] for key in RECORDED if meta.get(key) is not None}
    try:
        return _parse_one(f"the record of tunnel {name}", name, table)
    except UsageError:
        return None


def drift(running: TunnelSpec | None, meta: Mapping[str, Any], declared: TunnelSpec,
          ssh_config: str) -> str:
    """How what runs differs from what devenv.toml declares now, in words ("" when it runs
    the declaration): "target prod-db:5432 -> staging-db:5432; production true -> false"."""
    if running is None:
        return "its record does not say what it runs"
    words = []
    for field in RECORDED:
        was, now = _shown(getattr(running, field)), _shown(getattr(declared, field))
        if was != now:
            words.append(f"{field} {was} -> {now}")
    missing = [key for key in (*RECORDED, "ssh_config") if key not in meta]
    if missing:  # an older devenv opened it: what it ran is not all known
        words.append(f"opened without a record of its {', '.join(missing)}")
    elif meta.get("ssh_config") != ssh_config:
        words.append(f"DEVENV_SSH_CONFIG {_shown(meta.get('ssh_config'))} -> "
                     f"{_shown(ssh_config)}")
    return "; ".join(words)


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)


# --- credentials and URLs ------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    user: str
    password: str
    database: str


def credentials(spec: TunnelSpec, values: Mapping[str, str]) -> Credentials:
    """DEVENV_TUNNEL_<NAME>_USER / _PASSWORD / _DB from `values` (environment over .env)."""
    stem = f"DEVENV_TUNNEL_{key_stem(spec.name)}_"
    default_user = "postgres" if spec.kind == "postgres" else ""
    return Credentials(user=values.get(stem + "USER", default_user),
                       password=values.get(stem + "PASSWORD", ""),
                       database=values.get(stem + "DB", "postgres"))


def tunnel_values(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> dict[str, str]:
    """Every DEVENV_TUNNEL_* value: the process environment wins over .env."""
    return {k: v for layer in (dotenv, environ) for k, v in layer.items()
            if k.startswith("DEVENV_TUNNEL_")}


def tunnel_url(kind: str, port: int, creds: Credentials, path: str = "/",
               production: bool = False, show_secrets: bool = False) -> str:
    """The URL an app on this machine uses, at 127.0.0.1:port. A production PostgreSQL URL
    asks for read-only transactions (libpq `options`), so a slip cannot write to production."""
    password = quote(creds.password, safe="") if show_secrets else "***"
    if kind == "postgres":
        login = quote(creds.user, safe="") + (f":{password}" if creds.password else "")
        url = f"postgresql://{login}@127.0.0.1:{port}/{quote(creds.database, safe='')}"
        if production:
            url += "?options=-c%20default_transaction_read_only%3Don"
        return url
    if kind == "redis":
        login = f":{password}@" if creds.password else ""
        return f"redis://{login}127.0.0.1:{port}/0"
    if kind == "http":
        return f"http://127.0.0.1:{port}{path}"
    return f"tcp://127.0.0.1:{port}"
