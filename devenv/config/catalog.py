"""The service catalog: what devenv knows about each service, and selection over it.

The six built-in services are data (config/services.toml); a project adds its own in
devenv.toml, declared the same way (config/projectfile.py reads and checks both). Nothing
outside this module and that data names a service: what is special about one (its URL
form, probe, reload signal, generated secrets, build) is a field of its ServiceSpec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import SelectionError

BUILTIN_FILE = Path(__file__).parent / "services.toml"
PROJECT_FILE = "devenv.toml"
#: the variables `ports --env` writes beside the services' app_env for the one that
#: declares `device_urls` (live/devices.py): the host apps' own conventions
DEVICE_ENV = ("EXPO_PUBLIC_API_URL", "EXPO_PUBLIC_API_URL_ANDROID", "EXPO_PUBLIC_API_URL_LAN",
              "REACT_NATIVE_PACKAGER_HOSTNAME")
#: what a URL may hold as it is (RFC 3986's characters) but the quote `'`, which the
#: single-quoted lines of `ports --env` and .devenv/app.env cannot carry; anything else is
#: percent-encoded, as a setting's value in a URL is
URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                      "-._~:/?#[]@!$&()*+,;=%")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: schemes a browser runs instead of opening: the dashboard links every service's URL
_SCRIPT_SCHEME = re.compile(r"^(javascript|vbscript|data):", re.IGNORECASE)


@dataclass(frozen=True)
class SettingSpec:
    key: str
    default: str
    kind: str  # name | network | address | port | ports | seconds | count | image | path | text
    help: str
    secret: bool = False
    #: empty means: a secret generated once per project, kept in .devenv/secrets.json
    generate: bool = False
    #: an empty value is refused (the image of a service that is not built: Compose would
    #: fail on `image: ""` once other containers started)
    required: bool = False

    @property
    def secret_name(self) -> str:
        """The key a generated secret has in templates (`secrets.NAME`) and secrets.json."""
        return self.key.removeprefix("DEVENV_").lower()


@dataclass(frozen=True)
class ProbeSpec:
    """How devenv decides, from the host, that a service answers.

    kind: "http" (GET path must answer 2xx), "tcp" (a connection the service keeps open),
    "postgres" (the server answers a startup message with an authentication request) or
    "redis" (PING -> +PONG). `args` feed the protocol (postgres: user, database); they may
    name settings as {DEVENV_...}.
    """

    kind: str
    path: str = "/"
    args: Mapping[str, str] = field(default_factory=dict)

    def arg(self, key: str, values: Mapping[str, str], default: str = "") -> str:
        template = self.args.get(key)
        return fill(template, values, encode=False) if template is not None else default


@dataclass(frozen=True)
class BuildSpec:
    """How a service's image is built instead of pulled: from the directory a setting names
    (wins), else, when the image setting is empty, from the bundled `context` under
    compose/, tagged `tag:<content hash>` and shared by every project."""

    source_setting: str = ""
    context: str = ""
    tag: str = ""
    #: build argument -> the setting that gives its value
    args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    container_port: int
    dev_port: int
    aliases: tuple[str, ...]
    needs: tuple[str, ...]
    probe: ProbeSpec
    #: the URL form: {host}, {port} and settings as {DEVENV_...}
    url: str
    default_image: str
    app_env: str  # the variable `devenv ports --env` writes for host apps
    staging_port: int | None = None
    prod_port: int | None = None
    description: str = ""
    #: container paths that hold data; each gets a named volume
    data_dirs: tuple[str, ...] = ()
    #: started in a first wave on a cold start, so that its long initialisation overlaps
    #: the start of everything else
    start_first: bool = False
    #: files under templates/ rendered into compose/ when the service is selected
    #: (a .j2 suffix is rendered with Jinja and dropped; other files are copied)
    files: tuple[str, ...] = ()
    image_help: str = ""
    #: for the generic template: the container's environment and command
    environment: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    #: sent to the running container when one of its files changed (instead of a restart)
    reload_signal: str = ""
    build: BuildSpec | None = None
    #: (user setting, password setting) that `ports --show-secrets` prints
    login: tuple[str, ...] = ()
    #: once it answers, devenv logs in with `login` (and the probe's database): a data
    #: volume made with other credentials keeps them, and the app could not connect
    check_login: bool = False
    #: the service's own settings, beyond DEVENV_<NAME>_PORT and _IMAGE
    settings: tuple[SettingSpec, ...] = ()
    #: `devenv watch` syncs its source into the running container (Compose develop.watch;
    #: the rules come from its build and the DEVENV_<NAME>_WATCH_* settings)
    watch: bool = False
    #: the setting holding a migration command: when set, the service starts after what
    #: it needs answers and the command succeeded in its image (data.migrate)
    migrate_setting: str = ""
    #: its data starts from the project's seed folder (DEVENV_SEED_DIR) when first created
    seed: bool = False
    #: its URL is also given in the host apps' conventions (EXPO_PUBLIC_API_URL, ...) and
    #: as the device URL of `ports --device` / `up --lan`
    device_urls: bool = False
    #: holds the team's data: `devenv up --lan` publishes it on the LAN only when named
    #: explicitly and confirmed a second time
    private: bool = False
    #: the HTTPS proxy: in the stack only with DEVENV_HTTPS=true, then in every selection;
    #: it answers for every routed service at https://NAME.PROJECT.localhost[:PORT]
    https_proxy: bool = False
    #: where it was declared: the built-in catalog or the project's devenv.toml
    origin: str = "built-in"

    @property
    def routed(self) -> bool:
        """Reached through the HTTPS proxy: an HTTP service (its probe and its URL)."""
        return (not self.https_proxy and self.probe.kind == "http"
                and self.url.startswith("http://"))

    @property
    def env_name(self) -> str:
        return self.name.upper()

    @property
    def port_key(self) -> str:
        return f"DEVENV_{self.env_name}_PORT"

    @property
    def image_key(self) -> str:
        return f"DEVENV_{self.env_name}_IMAGE"

    def setting_specs(self) -> list[SettingSpec]:
        return [
            SettingSpec(self.port_key, str(self.dev_port), "port",
                        f"host port for {self.title} (container port {self.container_port})"),
            SettingSpec(self.image_key, self.default_image, "image",
                        self.image_help or f"image for {self.title}",
                        required=self.build is None),
            *self.settings,
        ]


@dataclass(frozen=True)
class HostApp:
    """An app the team runs on the host, whose port no container may take.

    Without a `command` it is only that: a reserved port. With one (devenv.toml), devenv
    runs it: `sh -c COMMAND` in `cwd`, on a planned port ($PORT), after what it `needs`
    answers, until `down` (devenv/hostapps/)."""

    name: str
    port: int
    title: str
    label: str  # how a message names it: "grafana: 3000 is reserved for the frontend"
    command: str = ""
    #: relative to the project directory; empty: the project directory
    cwd: str = ""
    probe: ProbeSpec = field(default_factory=lambda: ProbeSpec("tcp"))
    #: services or host apps, as names (aliases resolved when the file is checked)
    needs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    #: gets REACT_NATIVE_PACKAGER_HOSTNAME and the device URLs with `up --lan NAME`
    mobile: bool = False
    origin: str = "built-in"

    @property
    def managed(self) -> bool:
        """devenv starts and stops it (it has a command)."""
        return bool(self.command)

    @property
    def url(self) -> str:
        return "http://{host}:{port}" if self.probe.kind == "http" else "tcp://{host}:{port}"


@dataclass(frozen=True)
class Selection:
    """Services to run, in catalog order, and the dependencies that were added."""

    services: tuple[str, ...]
    requested: tuple[str, ...]
    #: dependency -> the selected service that needs it
    added: tuple[tuple[str, str], ...] = ()
    #: every service of the catalog (to tell "everything" from a part)
    all: tuple[str, ...] = ()
    #: host apps devenv runs (those with a command), in catalog order
    apps: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return set(self.services) == set(self.all)


class Catalog(Mapping[str, ServiceSpec]):
    """The services of one project (built-in ones first, then devenv.toml's), by name.

    A read-only mapping name -> ServiceSpec, in catalog order, as SERVICES was. (A plain
    class: one dataclass less to build at every start of `devenv ports`.)"""

    def __init__(self, services: Mapping[str, ServiceSpec], host_apps: tuple[HostApp, ...] = (),
                 tunnels: Mapping[str, Any] | None = None,
                 optional: Mapping[str, ServiceSpec] | None = None,
                 data: Mapping[str, Any] | None = None):
        self.services = services
        self.host_apps = host_apps
        #: devenv.toml's [tunnels.*] tables, passed through as read
        self.tunnels: Mapping[str, Any] = tunnels or {}
        #: services a setting turns on (the HTTPS proxy: DEVENV_HTTPS); not in `services`
        #: until `with_optional`, but their settings are settings all the same
        self.optional: Mapping[str, ServiceSpec] = optional or {}
        #: devenv.toml's [data] table, checked (projectfile.py): {"branches": bool}
        self.data: Mapping[str, Any] = data or {}

    def __getitem__(self, name: str) -> ServiceSpec:
        return self.services[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.services)

    def __len__(self) -> int:
        return len(self.services)

    def __repr__(self) -> str:
        return f"Catalog({', '.join(self.services)})"

    def with_optional(self) -> Catalog:
        """The catalog with its optional services turned on (after the others)."""
        return Catalog({**self.services, **self.optional}, self.host_apps, self.tunnels,
                       data=self.data)

    def split_optional(self) -> Catalog:
        """The catalog with the services a setting turns on set apart as optional."""
        return Catalog({n: s for n, s in self.services.items() if not s.https_proxy},
                       self.host_apps, self.tunnels,
                       {**self.optional, **{n: s for n, s in self.services.items()
                                            if s.https_proxy}}, self.data)

    @property
    def proxy(self) -> str:
        """The HTTPS proxy's service name, "" when there is none (DEVENV_HTTPS off)."""
        return next((n for n, s in self.services.items() if s.https_proxy), "")

    @property
    def aliases(self) -> dict[str, str]:
        return {alias: s.name for s in self.services.values() for alias in s.aliases}

    @property
    def apps(self) -> dict[str, HostApp]:
        """The host apps devenv runs (with a command), by name."""
        return {app.name: app for app in self.host_apps if app.managed}

    @property
    def app_aliases(self) -> dict[str, str]:
        return {alias: app.name for app in self.apps.values() for alias in app.aliases}

    def needs_of(self, name: str) -> tuple[str, ...]:
        """What a service or a host app devenv runs needs."""
        return self.services[name].needs if name in self.services else self.apps[name].needs

    def valid_names(self) -> list[str]:
        """Every word --only accepts: service names, aliases, then host apps devenv runs."""
        return [*self.services, *self.aliases, *self.apps, *self.app_aliases]

    def resolve(self, word: str) -> str:
        key = word.strip().lower()
        if key in self.services:
            return key
        if key in self.aliases:
            return self.aliases[key]
        if key in self.apps:
            return key
        if key in self.app_aliases:
            return self.app_aliases[key]
        if not key:
            raise SelectionError(
                "empty service name",
                hint=f"name services with commas and no blanks, e.g. --only db,cache "
                f"(valid: {', '.join(self.valid_names())})",
            )
        raise SelectionError(f"unknown service {word.strip()!r}",
                             hint=f"valid names: {', '.join(self.valid_names())}")

    def in_order(self, names: Iterable[str]) -> list[str]:
        order = {name: i for i, name in enumerate(self.services)}
        return sorted((n for n in names if n in order), key=order.__getitem__)

    def select(self, words: Iterable[str] | None) -> Selection:
        """Resolve names and aliases and add what they need. None or nothing: everything
        (the host apps devenv runs included). Host apps go to `apps`, never `services`."""
        everything = tuple(self.services)
        wanted = [self.resolve(w) for w in words] if words is not None else []
        if not wanted:
            apps = tuple(self.apps)
            return Selection(services=everything, requested=(*everything, *apps),
                             all=everything, apps=apps)
        chosen: list[str] = []
        added: list[tuple[str, str]] = []
        pending = [(name, "") for name in dict.fromkeys(wanted)]
        if self.proxy and self.proxy not in wanted:  # HTTPS on: the proxy joins every stack
            pending.append((self.proxy, "DEVENV_HTTPS=true"))
        while pending:
            name, needed_by = pending.pop(0)
            if name in chosen:
                continue
            chosen.append(name)
            if needed_by:
                added.append((name, needed_by))
            pending.extend((dep, name) for dep in self.needs_of(name))
        apps = tuple(n for n in self.apps if n in chosen)
        return Selection(services=tuple(self.in_order(chosen)),
                         requested=tuple(dict.fromkeys(wanted)), added=tuple(added),
                         all=everything, apps=apps)

    def setting_specs(self) -> list[SettingSpec]:
        return [spec for s in (*self.services.values(), *self.optional.values())
                for spec in s.setting_specs()]

    def secret_keys(self) -> frozenset[str]:
        return frozenset(spec.key for spec in self.setting_specs() if spec.secret)

    def url(self, name: str, host: str, port: int, values: Mapping[str, str],
            show_secrets: bool = False) -> str:
        """The URL a client uses for a service at host:port, in the service's own form.

        Host apps get the published port; containers get service-name:container-port.
        Settings in it are percent-encoded; secret ones are *** unless asked."""
        hidden = frozenset() if show_secrets else self.secret_keys()
        return fill(self.services[name].url, values, host=host, port=port, hidden=hidden)

    def secure_url(self, name: str, project: str, proxy_port: int, values: Mapping[str, str],
                   show_secrets: bool = False) -> str:
        """The service's URL through the HTTPS proxy published on `proxy_port`."""
        hidden = frozenset() if show_secrets else self.secret_keys()
        return https_url(self.services[name], project, proxy_port, values, hidden)


_FIELD = re.compile(r"\{([^{}]*)\}")


def _parts(template: str) -> Iterator[tuple[str, str | None]]:
    """(literal text, the {name} after it or None)."""
    pos = 0
    for match in _FIELD.finditer(template):
        yield template[pos:match.start()], match.group(1)
        pos = match.end()
    yield template[pos:], None


def fill(template: str, values: Mapping[str, str], host: str | None = None,
         port: int | None = None, hidden: frozenset[str] = frozenset(),
         encode: bool = True) -> str:
    """Fill {host}, {port} and {DEVENV_...} into a declared template."""
    out = []
    for literal, name in _parts(template):
        out.append(literal)
        if name is None:
            continue
        if name == "host":
            out.append(str(host))
        elif name == "port":
            out.append(str(port))
        elif name in hidden:
            out.append("***")
        else:
            out.append(quote(values[name], safe="") if encode else values[name])
    return "".join(out)


def https_domain(project: str) -> str:
    """A project's domain for the HTTPS proxy: PROJECT.localhost (a hostname has no `_`)."""
    return f"{project.replace('_', '-')}.localhost"


def https_host(name: str, project: str) -> str:
    """Where the proxy answers for a service: NAME.PROJECT.localhost."""
    return f"{name.replace('_', '-')}.{https_domain(project)}"


def https_url(spec: ServiceSpec, project: str, port: int, values: Mapping[str, str],
              hidden: frozenset[str] = frozenset()) -> str:
    """A routed service's URL through the proxy: its own URL form at
    https://NAME.PROJECT.localhost[:PORT] (no port when it is 443); the proxy's own URL is
    https://PROJECT.localhost[:PORT]."""
    host = https_domain(project) if spec.https_proxy else https_host(spec.name, project)
    url = fill(spec.url, values, host=host, port=port, hidden=hidden)
    scheme, _, rest = url.partition("://")
    if port == 443:
        rest = rest.replace(f"{host}:443", host, 1)
    return f"https://{rest}" if scheme in ("http", "https") else url


def placeholders(template: str) -> list[str]:
    """The {names} of a template; raises ValueError when its braces do not pair."""
    rest = _FIELD.sub("", template)
    if "{" in rest or "}" in rest:
        raise ValueError("a { or } without its pair")
    return [name for _literal, name in _parts(template) if name is not None]


def url_text_problem(text: str) -> str | None:
    """Why `text` cannot stand in a URL as it is written (a character a URL cannot carry
    unencoded), else None."""
    bad = sorted({ch for ch in text if ch not in URL_CHARS})
    if bad:
        return (f"holds {' '.join(repr(ch) for ch in bad)}, which a URL cannot carry as "
                "it is; percent-encode it (%27 for ', %20 for a blank)")
    return None


def url_problem(template: str) -> str | None:
    """Why a declared URL form cannot be a service's address, else None: its literal text
    (what is not a {placeholder}) holds what a URL cannot carry, or it does not start with
    a scheme (or {host}), or its scheme runs a script where the dashboard links it."""
    problem = url_text_problem("".join(text for text, _name in _parts(template)))
    if problem:
        return problem
    if not (_SCHEME.match(template) or template.startswith("{host}")):
        return "must start with its scheme (e.g. http://) or {host}"
    if _SCRIPT_SCHEME.match(template):
        return "is a script, not the address of a service"
    return None


def split_words(values: Iterable[str]) -> list[str]:
    """`--only a,b --only c` -> ["a", "b", "c"]; keeps empty words so they can be refused."""
    return [word for value in values for word in value.split(",")]
