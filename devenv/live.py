"""The running project, as Docker reports it now: containers, URLs, state, uptime.

Nothing here changes anything; `ports` and `status` read fresh from the engine every time.
Their use cases live here rather than in stack.py so that they import nothing that renders,
plans or starts: `devenv ports` must answer as fast as `docker compose ps`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .catalog import SERVICES, service_url
from .context import Context
from .engine import Container, Engine, Published, connect
from .errors import CredentialsError, UsageError
from .report import ServiceRow

if TYPE_CHECKING:
    from .probes import LoginResult
from .settings import Settings, url_host_for


def project_containers(engine: Engine, project: str) -> dict[str, Container]:
    return {c.service: c for c in engine.containers(project) if c.service in SERVICES}


def in_catalog_order(names: Iterable[str]) -> list[str]:
    order = list(SERVICES)
    return sorted(names, key=order.index)


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


def describe_running(engine: Engine, project: str) -> str:
    running = [c.service for c in project_containers(engine, project).values() if c.running]
    if not running:
        return "nothing of the stack is running"
    return "running now: " + ", ".join(in_catalog_order(running))


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
        from .engine_forward import FORWARD_HOST, current

        if current(settings) is not None:  # the remote's loopback, forwarded here
            return FORWARD_HOST
    return settings.url_host


def published_port(settings: Settings, container: Container, name: str) -> Published | None:
    """The container's published port for the service, on DEVENV_BIND when Docker lists
    several addresses (0.0.0.0 and ::), else whichever it bound."""
    ports = [p for p in container.ports if p.container_port == SERVICES[name].container_port]
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
             show_secrets: bool = False) -> ServiceRow:
    return ServiceRow(service=name,
                      url=service_url(name, host, port, settings.values, show_secrets),
                      host=host.strip("[]"), port=port, state=state,
                      container_port=SERVICES[name].container_port,
                      configured_port=settings.port(name))


def expected_services(settings: Settings) -> dict[str, int]:
    """Services the last `up` left running (until `down`), with their remembered ports:
    one whose container exited or vanished since must be mentioned, not left out."""
    from .state import StateFile

    state = StateFile(settings.state_dir).load(settings.project)
    return {name: (state.ports[name].port if name in state.ports else settings.port(name))
            for name in state.containers if name in SERVICES}


def live_rows(engine: Engine, settings: Settings, show_secrets: bool = False,
              check: bool = True, missing: bool = False) -> list[ServiceRow]:
    """One row per running service of the project, ports as Docker publishes them.

    With `check`, every service is probed once, in parallel, at the URL shown: its state
    is "ready" when it answers its own protocol there, else Docker's state and why not.
    With `missing`, a service that is not running (its container exited, or is gone
    though the last `up` started it) gets a row too, at the port it would publish, with
    `running` false and a state that says what happened.
    """
    host = url_host(settings, engine.remote_host)
    rows = []
    containers = project_containers(engine, settings.project)
    expected = expected_services(settings) if missing else {}
    for name in in_catalog_order(set(containers) | set(expected)):
        c = containers.get(name)
        published = published_port(settings, c, name) if c else None
        if published is not None and c is not None:
            rows.append(make_row(settings, name,
                                 published_host(settings, host, engine.remote_host, published),
                                 published.host_port, c.state, show_secrets))
        elif missing:
            port = next(iter(engine.port_bindings(c)), expected.get(name)) if c else \
                expected[name]
            if c is None:
                state = "gone: its container was removed (devenv up starts it again)"
            else:
                state = f"{_not_running(engine, c)} (devenv up starts it again)"
            rows.append(replace(make_row(settings, name, host, port or settings.port(name),
                                         state, show_secrets), running=False))
    if check and rows:
        from .probes import Target, probe_all

        live = [r for r in rows if r.running]
        answers = probe_all([Target(r.service, SERVICES[r.service].probe, r.host, r.port)
                             for r in live], settings.values)
        rows = [r if not r.running else
                replace(r, state="ready" if answers[r.service].ok
                        else f"{r.state}, not answering ({answers[r.service].detail})")
                for r in rows]
        rows = [_with_login(settings, r) for r in rows]
    return rows


def _with_login(settings: Settings, row: ServiceRow) -> ServiceRow:
    """A PostgreSQL that answers is ready for the app only if DATABASE_URL logs in."""
    if row.service != "postgres" or row.state != "ready":
        return row
    result = check_postgres_login(settings, row.host, row.port)
    return replace(row, state=login_refused_state(result)) if result.refused else row


def _not_running(engine: Engine, c: Container) -> str:
    if c.state in ("exited", "dead"):
        code = (engine.inspect(c.id).get("State") or {}).get("ExitCode")
        return f"{c.state} (code {code})" if code is not None else c.state
    return c.state  # created, paused, restarting


LOGIN_REFUSED = "answers, but the configured login is refused"
#: what to change when PostgreSQL refuses the login, by SQLSTATE
#: (PostgreSQL answers an unknown user like a wrong password, so as not to tell which)
_LOGIN_SETTING = {"28P01": "DEVENV_POSTGRES_PASSWORD (or DEVENV_POSTGRES_USER)",
                  "28000": "DEVENV_POSTGRES_USER", "3D000": "DEVENV_POSTGRES_DB"}


def check_postgres_login(settings: Settings, host: str, port: int) -> LoginResult:
    """Log in with the credentials DATABASE_URL carries (once the server answers)."""
    from .probes import postgres_login

    return postgres_login(host, port, settings["DEVENV_POSTGRES_USER"],
                          settings["DEVENV_POSTGRES_PASSWORD"], settings["DEVENV_POSTGRES_DB"])


def login_refused_state(result: LoginResult) -> str:
    return f"{LOGIN_REFUSED}: {result.detail}"


def login_hint(code: str) -> str:
    setting = _LOGIN_SETTING.get(code, "DEVENV_POSTGRES_PASSWORD")
    return (f"PostgreSQL keeps the user, password and database its data volume was created "
            f"with; {setting} changed since. Set it back to the old value, or delete the "
            "data with `devenv down --volumes` (every row is lost) and run `devenv up`")


def login_refused(rows: Sequence[ServiceRow]) -> str:
    """The SQLSTATE of a refused PostgreSQL login among `ports` rows, else ""."""
    import re

    for row in rows:
        if row.service == "postgres" and row.state.startswith(LOGIN_REFUSED):
            found = re.search(r"\((\w{5})\)$", row.state)
            return found.group(1) if found else "28P01"
    return ""


def login_error(result: LoginResult) -> CredentialsError:
    return CredentialsError(f"postgres {login_refused_state(result)}",
                            hint=login_hint(result.code))


def app_env(settings: Settings, rows: Sequence[ServiceRow]) -> dict[str, str]:
    """DATABASE_URL, REDIS_URL, API_URL, ... with the real ports and credentials, and the
    API's URL in the host apps' own conventions (EXPO_PUBLIC_API_URL and friends)."""
    env = {SERVICES[r.service].app_env:
           service_url(r.service, f"[{r.host}]" if ":" in r.host else r.host, r.port,
                       settings.values, show_secrets=True)
           for r in rows if r.running}
    api = next((r for r in rows if r.service == "api" and r.running), None)
    if api is not None:
        from .devices import device_env, device_report

        host = f"[{api.host}]" if ":" in api.host else api.host
        env.update(device_env(device_report(settings, api.port, (), host=host)))
    return env


@dataclass(frozen=True)
class StatusRow:
    service: str
    container: str
    state: str
    health: str
    url: str
    port: int | None
    uptime_seconds: float | None
    restarts: int
    exit_code: int | None


def status_rows(engine: Engine, settings: Settings) -> list[StatusRow]:
    host = url_host(settings, engine.remote_host)
    containers = project_containers(engine, settings.project)
    rows = []
    for name in in_catalog_order(containers):
        c = containers[name]
        detail = engine.inspect(c.id)
        state = detail.get("State") or {}
        published = published_port(settings, c, name)
        uptime = None
        if c.running and state.get("StartedAt"):
            uptime = max(0.0, time.time() - _parse_time(str(state["StartedAt"])))
        url = (service_url(name, published_host(settings, host, engine.remote_host, published),
                           published.host_port, settings.values) if published else "")
        rows.append(StatusRow(
            service=name, container=c.name, state=c.state,
            health=str((state.get("Health") or {}).get("Status", "")) or "none",
            url=url, port=published.host_port if published else None,
            uptime_seconds=round(uptime, 1) if uptime is not None else None,
            restarts=int(detail.get("RestartCount") or 0),
            exit_code=None if c.running else int(state.get("ExitCode") or 0),
        ))
    for name, _port in expected_services(settings).items():
        if name not in containers:  # started by the last `up`, removed since
            rows.append(StatusRow(service=name, container="", state="gone", health="none",
                                  url="", port=None, uptime_seconds=None, restarts=0,
                                  exit_code=None))
    order = list(SERVICES)
    return sorted(rows, key=lambda r: order.index(r.service))


def _parse_time(text: str) -> float:
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds."""
    from datetime import datetime

    main, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(main + "+00:00").timestamp()
    return seconds + (float("0." + frac[:6]) if frac else 0.0)


def ports(ctx: Context, show_secrets: bool = False) -> tuple[Settings, list[ServiceRow]]:
    """The `ports` use case: the project's live URLs."""
    settings = ctx.settings()
    return settings, live_rows(connect(ctx.environ), settings, show_secrets, missing=True)


def status(ctx: Context) -> tuple[Settings, list[StatusRow]]:
    """The `status` use case: state, health, URL, uptime and restarts per service."""
    settings = ctx.settings()
    return settings, status_rows(connect(ctx.environ), settings)
