"""The project as it runs now, as Docker reports it: its containers by service, whether
they run from this checkout, which died, where a host app reaches them, their rows, and
whether a service that checks its login accepts the configured one.

`up`, `restart`, `down` (stack/usecases.py), the read-only `ports` and `status`
(live/status.py) and `ls` (live/projects.py) share these; nothing here changes anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..config.settings import Settings, url_host_for
from ..engine import Container, Engine, Published
from ..errors import CredentialsError, UsageError
from ..rows import ServiceRow

if TYPE_CHECKING:
    from ..config.catalog import ServiceSpec
    from ..probes import LoginResult, Target


def project_containers(engine: Engine, project: str) -> dict[str, Container]:
    """The project's containers by Compose service (what devenv did not render included:
    a service removed from devenv.toml still shows, to be stopped)."""
    return {c.service: c for c in engine.containers(project) if c.service}


def docker_time(text: str) -> float:
    """Docker's RFC 3339 UTC time with nanoseconds (`StartedAt`) -> epoch seconds; a
    ValueError when it is not one."""
    from datetime import datetime

    main, _, frac = text.rstrip("Z").partition(".")
    if not (frac == "" or frac.isdigit()):
        raise ValueError(f"not a Docker time: {text[:40]!r}")
    seconds = datetime.fromisoformat(main + "+00:00").timestamp()
    return seconds + (float("0." + frac[:6]) if frac else 0.0)


def known_containers(engine: Engine, settings: Settings) -> dict[str, Container]:
    """The project's containers of services the catalog knows (rows need a spec)."""
    return {name: c for name, c in project_containers(engine, settings.project).items()
            if name in settings.catalog}


def in_catalog_order(names: Iterable[str], settings: Settings) -> list[str]:
    """The project's catalog order (devenv.toml's services too); names it does not know go
    last, sorted."""
    catalog = settings.catalog
    names = list(names)
    return catalog.in_order(names) + sorted(n for n in names if n not in catalog)


def check_same_directory(settings: Settings, containers: Iterable[Container]) -> None:
    """Refuse to take over (or stop) a project that runs from another checkout."""
    mine = os.path.realpath(settings.compose_dir)
    for c in containers:
        if c.running and c.working_dir and os.path.realpath(c.working_dir) != mine:
            raise UsageError(
                f"project {settings.project} is already running from {c.working_dir}",
                hint="give this checkout its own name, e.g. DEVENV_PROJECT="
                f"{settings.project}-{settings.project_dir.name.lower()[:20]} in .env, "
                "or run devenv there",
            )


def describe_running(engine: Engine, settings: Settings) -> str:
    running = [c.service for c in project_containers(engine, settings.project).values()
               if c.running]
    if not running:
        return "nothing of the stack is running"
    return "running now: " + ", ".join(in_catalog_order(running, settings))


def dead_services(engine: Engine, project: str, services: Sequence[str]) -> dict[str, str]:
    """Services whose container stopped, vanished or restarts: the wait fails at once."""
    found = project_containers(engine, project)
    dead = {}
    for name in services:
        c = found.get(name)
        if c is None:
            dead[name] = "its container is gone"
        elif c.state in ("exited", "dead"):
            dead[name] = f"its container stopped ({c.status})"
        elif c.state == "restarting":
            dead[name] = f"its container is restarting ({c.status})"
    return dead


def url_host(settings: Settings, engine_remote: str | None) -> str:
    """Where a host app reaches the published ports."""
    if engine_remote and not settings.bind_is_loopback:
        return engine_remote
    if engine_remote:
        from ..tunnels.forward import FORWARD_HOST, current

        if current(settings) is not None:  # the remote's loopback, forwarded here
            return FORWARD_HOST
    return settings.url_host


def published_port(settings: Settings, container: Container, name: str) -> Published | None:
    """The container's published port for the service, on DEVENV_BIND when Docker lists
    several addresses (0.0.0.0 and ::), else whichever it bound."""
    target = settings.catalog[name].container_port
    ports = [p for p in container.ports if p.container_port == target]
    return next((p for p in ports if p.host_ip == settings.bind), ports[0] if ports else None)


def published_host(settings: Settings, host: str, engine_remote: str | None,
                   published: Published) -> str:
    """The address to reach a port at, from what Docker really bound: a stack started with
    another DEVENV_BIND (e.g. `::`) is reached where it listens, not where .env says now."""
    if engine_remote or not published.host_ip or published.host_ip == settings.bind:
        return host
    try:
        return url_host_for(published.host_ip)
    except ValueError:
        return host


def make_row(settings: Settings, name: str, host: str, port: int, state: str,
             show_secrets: bool = False, proxy_port: int | None = None) -> ServiceRow:
    """A service's row; with the HTTPS proxy on `proxy_port`, an HTTP service's URL is the
    proxy's (https://NAME.PROJECT.localhost[:PORT]) and `direct_url` keeps the port's."""
    direct = settings.catalog.url(name, host, port, settings.values, show_secrets)
    url = direct
    if proxy_port is not None and _served(settings, name):
        url = settings.catalog.secure_url(name, settings.project, proxy_port, settings.values,
                                          show_secrets)
    return ServiceRow(service=name, url=url, host=host.strip("[]"), port=port, state=state,
                      container_port=settings.catalog[name].container_port,
                      configured_port=settings.port(name), direct_url=direct)


def _served(settings: Settings, name: str) -> bool:
    spec = settings.catalog[name]
    return spec.routed or spec.https_proxy


def proxy_port_of(rows: Iterable[ServiceRow], settings: Settings) -> int | None:
    """The HTTPS proxy's published port among rows of running services, else None."""
    proxy = settings.catalog.proxy
    return next((r.port for r in rows if proxy and r.service == proxy and r.running), None)


def probe_targets(settings: Settings, rows: Iterable[ServiceRow],
                  proxy_port: int | None) -> list[Target]:
    """What to probe for each row: an HTTP service through the HTTPS proxy when it runs
    (TLS with the service's name, devenv's CA the only root), else its published port."""
    from ..certs.paths import CA_CERT
    from ..config.catalog import https_domain, https_host
    from ..probes import Target, TlsRoute

    targets = []
    for row in rows:
        spec = settings.catalog[row.service]
        tls = None
        if proxy_port is not None and settings.ca_dir is not None and _served(settings,
                                                                              row.service):
            name = (https_domain(settings.project) if spec.https_proxy
                    else https_host(row.service, settings.project))
            tls = TlsRoute(name, proxy_port, str(settings.ca_dir / CA_CERT))
        targets.append(Target(row.service, spec.probe, row.host, row.port, tls))
    return targets


def expected_services(settings: Settings) -> dict[str, int]:
    """Services the last `up` left running (until `down`), with their remembered ports:
    one whose container exited or vanished since must be mentioned, not left out."""
    from ..config.state import StateFile

    state = StateFile(settings.state_dir).load(settings.project)
    return {name: (state.ports[name].port if name in state.ports else settings.port(name))
            for name in state.containers if name in settings.catalog}


def app_env(settings: Settings, rows: Sequence[ServiceRow]) -> dict[str, str]:
    """DATABASE_URL, REDIS_URL, API_URL, ... with the real ports and credentials, and the
    URL of the service that declares `device_urls` in the host apps' own conventions
    (EXPO_PUBLIC_API_URL and friends)."""
    rows = [r for r in rows if r.service in settings.catalog]  # host apps have no app_env
    proxy_port = proxy_port_of(rows, settings)
    secure = {r.service: settings.catalog.secure_url(r.service, settings.project, proxy_port,
                                                     settings.values, show_secrets=True)
              for r in rows if r.running and proxy_port is not None
              and _served(settings, r.service)}
    env = {settings.catalog[r.service].app_env: secure.get(r.service) or
           settings.catalog.url(r.service, f"[{r.host}]" if ":" in r.host else r.host,
                                r.port, settings.values, show_secrets=True)
           for r in rows if r.running}
    device = next((r for r in rows if r.running and settings.catalog[r.service].device_urls),
                  None)
    if device is not None:
        from .devices import device_env, device_report

        host = f"[{device.host}]" if ":" in device.host else device.host
        env.update(device_env(device_report(settings, device.port, (), host=host)))
        if device.service in secure:  # the simulator shares this machine's loopback
            env["EXPO_PUBLIC_API_URL"] = secure[device.service]
    return env


def app_row(settings: Settings, name: str, host: str, port: int, state: str,
            running: bool = True) -> ServiceRow:
    app = settings.catalog.apps[name]
    shown = f"[{host}]" if ":" in host else host
    return ServiceRow(service=name, url=app.url.format(host=shown, port=port),
                      host=host.strip("[]"), port=port, state=state, container_port=port,
                      configured_port=app.port, running=running)


# --- the login a service checks once it answers (declared: check_login) -----------------
LOGIN_REFUSED = "answers, but the configured login is refused"


def checks_login(settings: Settings, name: str) -> bool:
    return settings.catalog[name].check_login


def check_login(settings: Settings, name: str, host: str, port: int) -> LoginResult:
    """Log in with the credentials the service's URL carries (once the server answers):
    its declared login settings, and the database of its probe."""
    from ..probes import run_login

    spec = settings.catalog[name]
    user_key, password_key = spec.login
    return run_login(spec.probe, host, port, settings[user_key], settings[password_key],
                     settings.values)


def login_refused_state(result: LoginResult) -> str:
    return f"{LOGIN_REFUSED}: {result.detail}"


def _login_setting(spec: ServiceSpec, code: str) -> str:
    """What to change when the login is refused, by SQLSTATE (PostgreSQL answers an
    unknown user like a wrong password, so as not to tell which)."""
    from ..config.catalog import placeholders

    user_key, password_key = spec.login
    database = next(iter(placeholders(spec.probe.args.get("database", ""))), "the database")
    return {"28P01": f"{password_key} (or {user_key})", "28000": user_key,
            "3D000": database}.get(code, password_key)


def login_hint(settings: Settings, name: str, code: str) -> str:
    spec = settings.catalog[name]
    return (f"{spec.title} keeps the user, password and database its data volume was "
            f"created with; {_login_setting(spec, code)} changed since. Set it back to the "
            "old value, or delete the data with `devenv down --volumes` (every row is lost) "
            "and run `devenv up`")


def login_refused(rows: Sequence[ServiceRow]) -> tuple[str, str]:
    """(service, SQLSTATE) of a refused login among `ports` rows, else ("", "")."""
    import re

    for row in rows:
        if row.state.startswith(LOGIN_REFUSED):
            found = re.search(r"\((\w{5})\)$", row.state)
            return row.service, found.group(1) if found else "28P01"
    return "", ""


def login_error(settings: Settings, name: str, result: LoginResult) -> CredentialsError:
    return CredentialsError(f"{name} {login_refused_state(result)}",
                            hint=login_hint(settings, name, result.code))
