"""devenv's own settings, and the names no service may take from it.

A service's settings (its DEVENV_<NAME>_PORT and _IMAGE, and those it declares) live in the
same namespace as devenv's own: one that took DEVENV_BIND would replace devenv's default with
its own. config/projectfile.py refuses such a file; config/settings.py merges the layers.
"""

from __future__ import annotations

from collections.abc import Callable

from .catalog import Catalog, SettingSpec

DEFAULT_PROJECT = "cirkelline"
DEFAULT_NETWORK = "cirkelline"
#: the rendered project file's name, inside compose/ (no service's `files` may take it)
COMPOSE_FILE = "docker-compose.yml"

#: read by devenv from the environment itself, outside the settings table
ENVIRONMENT_KEYS = {"DEVENV_DEBUG": "devenv's switch for tracebacks"}
#: whole families of names devenv reads itself
OWN_PREFIXES = {"DEVENV_TUNNEL_": "a tunnel's credentials (DEVENV_TUNNEL_<NAME>_USER, "
                "_PASSWORD, _DB)"}


def core_settings(catalog: Catalog) -> tuple[SettingSpec, ...]:
    """The settings of devenv itself; each service adds its own (catalog.setting_specs)."""
    reserved = ",".join(str(app.port) for app in catalog.host_apps)
    apps = ", ".join(f"{app.name} {app.port}" for app in catalog.host_apps)
    return (
        SettingSpec("DEVENV_PROJECT", DEFAULT_PROJECT, "name",
                    "Compose project name; containers, volumes and state are per project"),
        SettingSpec("DEVENV_NETWORK", "", "network",
                    "Docker network; empty means 'cirkelline' for the default project, "
                    "else the project's own network"),
        SettingSpec("DEVENV_BIND", "127.0.0.1", "address",
                    "host address published ports bind to; anything wider is reachable by "
                    "others"),
        SettingSpec("DEVENV_RESERVED_PORTS", reserved, "ports",
                    f"host ports never given to a container ({apps})"),
        SettingSpec("DEVENV_WAIT_TIMEOUT", "120", "seconds",
                    "seconds `up` waits for every service to answer"),
        SettingSpec("DEVENV_DASHBOARD_PORT", "7780", "port",
                    "wanted host port of `devenv dashboard` (planned like the services, "
                    "loopback only)"),
        SettingSpec("DEVENV_LAN_ADDRESS", "", "lan",
                    "this machine's address on the LAN, for `up --lan` and `ports --device`; "
                    "empty finds it from the default route"),
        SettingSpec("DEVENV_SEED_DIR", "db/seed", "dir",
                    "folder of .sql, .sql.gz and .sh files run once, in name order, when the "
                    "database is created"),
        SettingSpec("DEVENV_SNAPSHOT_DIR", ".devenv/snapshots", "dir",
                    "where `devenv db snapshot` keeps snapshots (mode 0700); relative to the "
                    "project directory"),
        SettingSpec("DEVENV_CLUSTER_CACHE", "", "path",
                    "where prepared PostgreSQL clusters are kept (a fresh volume starts from "
                    "one instead of initdb); empty: $XDG_CACHE_HOME/devenv/clusters; off: "
                    "never"),
        SettingSpec("DEVENV_DB_BRANCHES", "", "switch",
                    "PostgreSQL's and Redis' data per git branch (true/false); empty: "
                    "devenv.toml's [data] branches, else false"),
        SettingSpec("DEVENV_SSH_CONFIG", "", "path",
                    "ssh config file for tunnels (ssh -F); empty: ssh's own (~/.ssh/config)"),
        SettingSpec("DEVENV_HTTPS", "false", "bool",
                    "true: a proxy serves every HTTP service at "
                    "https://NAME.PROJECT.localhost[:PORT] with devenv's local CA "
                    "(docs/https.md)"),
    )


def own_keys(catalog: Catalog) -> Callable[[str], str | None]:
    """key -> what it is to devenv itself, or None when a service may have it."""
    core = frozenset(spec.key for spec in core_settings(catalog))
    return lambda key: _own(key, core)


def _own(key: str, core: frozenset[str]) -> str | None:
    if key in core:
        return "devenv's own setting"
    if key in ENVIRONMENT_KEYS:
        return ENVIRONMENT_KEYS[key]
    for prefix, what in OWN_PREFIXES.items():
        if key.startswith(prefix):
            return f"reserved for {what}"
    return None
