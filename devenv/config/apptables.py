"""[host_apps.*] tables: the apps the team runs on the host, read and checked.

The built-in catalog declares three (frontend 3000, Metro 8081, Expo 19000) as reserved
ports. A project's devenv.toml may give one of them, or a new one, a command; devenv then
runs it on a planned port (devenv/hostapps/):

    [host_apps.frontend]
    command = "npm run web -- --port $PORT"   # run with `sh -c` in cwd
    cwd = "frontend"                          # default: the project directory
    probe = "http:/"                          # http:PATH | tcp (default tcp)
    needs = ["api"]                           # services or host apps, names or aliases
    aliases = ["web"]
    [host_apps.frontend.environment]
    BROWSER = "none"

`port` is a field of new host apps only: a built-in one's comes from the catalog. Every
error names the file, the table and the field (ProjectFileError, exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import ProjectFileError
from .catalog import Catalog, HostApp, ProbeSpec

#: projectfile's typed field reader (passed in: this module sits below projectfile)
_Fields = Any

BUILTIN_FIELDS = ("port", "title", "label", "mobile")
FIELDS = ("port", "title", "label", "command", "cwd", "probe", "needs", "aliases",
          "environment", "mobile")
NAME = r"^[a-z][a-z0-9_]{0,39}$"


def parse_builtin_app(fields: _Fields, label: str, name: str, raw: Any) -> HostApp:
    f = fields(label, f"host_apps.{name}", raw, BUILTIN_FIELDS, trusted=True)
    port = f.port("port", required=True)
    assert port is not None
    return HostApp(name, port, f.text("title", name), f.text("label", name),
                   mobile=f.flag("mobile"))


def parse_project_apps(fields: _Fields, label: str, tables: Mapping[str, Any],
                       base: tuple[HostApp, ...]) -> tuple[HostApp, ...]:
    """The built-in host apps with devenv.toml's tables applied, then the file's new ones."""
    builtin = {app.name: app for app in base}
    own = {name: parse_app(fields, label, name, raw, builtin.get(name))
           for name, raw in tables.items()}
    return (*(own.get(app.name, app) for app in base),
            *(app for name, app in own.items() if name not in builtin))


def parse_app(fields: _Fields, label: str, name: str, raw: Any,
              base: HostApp | None) -> HostApp:
    table = f"host_apps.{name}"
    if re.match(NAME, name) is None:
        raise ProjectFileError(label, table, "", f"{name!r} is not a host app name",
                               hint="lowercase letters, digits and _, starting with a letter")
    f = fields(label, table, raw, FIELDS)
    if base is not None and f.has("port"):
        raise f.fail("port", f"the built-in {name}'s port is {base.port} (the catalog)",
                     hint="devenv plans it from there: a taken port moves the app, and "
                     "$PORT says where it runs; give a new host app its own port")
    port = base.port if base is not None else f.port("port", required=True)
    assert port is not None
    command = f.text("command", "")
    if f.has("command") and not command.strip():
        raise f.fail("command", "is empty", hint="a shell command, e.g. npm run dev")
    cwd = f.text("cwd", "")
    if cwd.startswith("/") or ".." in cwd.split("/"):
        raise f.fail("cwd", f"{cwd!r} must be a directory inside the project")
    probe_text = f.text("probe", "tcp")
    kind, _, path = probe_text.partition(":")
    if kind not in ("http", "tcp"):
        raise f.fail("probe", f"{probe_text!r} is not a host app probe",
                     hint="use http:PATH (a 2xx answer) or tcp (the port accepts)")
    if kind == "http":
        path = path or "/"
        if not path.startswith("/") or " " in path:
            raise f.fail("probe", f"{probe_text!r}: the path must start with / and hold no "
                         "blank")
    elif path:
        raise f.fail("probe", f"{probe_text!r}: only http takes a path")
    aliases = f.strings("aliases", NAME, "an alias (lowercase letters, digits and _)")
    if name in aliases:
        raise f.fail("aliases", f"{name!r} is the host app's own name")
    managed_only = [k for k in ("cwd", "probe", "needs", "aliases", "environment")
                    if f.has(k)]
    if managed_only and not command:
        raise f.fail(managed_only[0], "only a host app with a command takes it",
                     hint="add command = \"...\" (without one the app is a reserved port)")
    defaults = base or HostApp(name, port, name, name)
    return replace(defaults, port=port, title=f.text("title", defaults.title),
                   label=f.text("label", defaults.label), command=command, cwd=cwd,
                   probe=ProbeSpec(kind, path or "/"), needs=f.strings("needs"),
                   aliases=aliases, environment=f.mapping("environment"),
                   mobile=f.flag("mobile") if f.has("mobile") else defaults.mobile,
                   origin=label)


def check_apps(catalog: Catalog, label: str) -> Catalog:
    """Names and aliases against the services', `needs` known (aliases resolved) and
    without a cycle; the catalog with every app's needs written as names."""
    words: dict[str, str] = {name: name for name in catalog.services}
    words.update(catalog.aliases)
    unmanaged = {app.name for app in catalog.host_apps if not app.managed}
    apps = []
    for app in catalog.host_apps:
        table = f"host_apps.{app.name}"
        if app.name in words:
            raise ProjectFileError(label, table, "", f"{app.name!r} is already the name or "
                                   f"an alias of the service {words[app.name]}")
        words[app.name] = app.name
        for alias in app.aliases:
            if alias in words:
                raise ProjectFileError(label, table, "aliases",
                                       f"{alias!r} is already the name or an alias of "
                                       f"{words[alias]}")
            words[alias] = app.name
    for app in catalog.host_apps:
        table = f"host_apps.{app.name}"
        resolved = []
        for need in app.needs:
            target = words.get(need)
            if target is None:
                raise ProjectFileError(label, table, "needs", f"unknown service or host app "
                                       f"{need!r}", hint=f"valid names: {', '.join(words)}")
            if target in unmanaged:
                raise ProjectFileError(label, table, "needs",
                                       f"{target} has no command: devenv does not run it",
                                       hint=f"give [host_apps.{target}] a command, or drop "
                                       "it from needs")
            resolved.append(target)
        apps.append(replace(app, needs=tuple(resolved)))
    checked = Catalog(catalog.services, tuple(apps), catalog.tunnels, catalog.optional,
                      catalog.data)
    for app in apps:
        cycle = _cycle(checked, app.name)
        if cycle:
            raise ProjectFileError(label, f"host_apps.{app.name}", "needs",
                                   f"a cycle: {' -> '.join(cycle)}",
                                   hint="a host app cannot need itself, even through others")
    return checked


def _cycle(catalog: Catalog, start: str) -> list[str]:
    path: list[str] = []

    def walk(name: str) -> list[str]:
        if name in path:
            return [*path[path.index(name):], name]
        if name not in catalog.apps:
            return []  # a service: services never need host apps
        path.append(name)
        for need in catalog.apps[name].needs:
            found = walk(need)
            if found:
                return found
        path.pop()
        return []

    return walk(start)
