"""`ports` and `status`: the running project's URLs, state, health and uptime.

Nothing here changes anything; `ports` and `status` read fresh from the engine every time.
Their use cases live here rather than in stack/ so that they import nothing that renders,
plans or starts: `devenv ports` must answer as fast as `docker compose ps`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ..config.settings import Settings
from ..context import Context
from ..engine import Container, Engine
from ..errors import UsageError
from ..rows import ServiceRow, StatusRow
from .running import (  # noqa: F401 - app_env, login_*, project_containers: from here too
    LOGIN_REFUSED,
    app_env,
    app_row,
    check_login,
    checks_login,
    docker_time,
    expected_services,
    in_catalog_order,
    known_containers,
    login_error,
    login_hint,
    login_refused,
    login_refused_state,
    make_row,
    probe_targets,
    project_containers,
    published_host,
    published_port,
    url_host,
)

if TYPE_CHECKING:
    from .devices import DeviceReport, DeviceURL


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
    containers = known_containers(engine, settings)
    expected = expected_services(settings) if missing else {}
    proxy_port = _proxy_port(settings, containers)
    for name in in_catalog_order(set(containers) | set(expected), settings):
        c = containers.get(name)
        published = published_port(settings, c, name) if c else None
        if published is not None and c is not None:
            rows.append(make_row(settings, name,
                                 published_host(settings, host, engine.remote_host, published),
                                 published.host_port, c.state, show_secrets, proxy_port))
        elif missing:
            port = next(iter(engine.port_bindings(c)), expected.get(name)) if c else \
                expected[name]
            if c is None:
                state = "gone: its container was removed (devenv up starts it again)"
            else:
                state = f"{_not_running(engine, c)} (devenv up starts it again)"
            rows.append(replace(make_row(settings, name, host, port or settings.port(name),
                                         state, show_secrets, proxy_port), running=False))
    if check and rows:
        from ..probes import probe_all

        live = [r for r in rows if r.running]
        answers = probe_all(probe_targets(settings, live, proxy_port), settings.values)
        rows = [r if not r.running else
                replace(r, state="ready" if answers[r.service].ok
                        else f"{r.state}, not answering ({answers[r.service].detail})")
                for r in rows]
        rows = [_with_login(settings, r) for r in rows]
    return rows


def _proxy_port(settings: Settings, containers: dict[str, Container]) -> int | None:
    """The running HTTPS proxy's published port, else None (HTTPS off, or not running)."""
    proxy = settings.catalog.proxy
    c = containers.get(proxy) if proxy else None
    published = published_port(settings, c, proxy) if c is not None and c.running else None
    return published.host_port if published is not None else None


def _with_login(settings: Settings, row: ServiceRow) -> ServiceRow:
    """A service that checks its login is ready for the app only if its URL logs in."""
    if row.state != "ready" or not checks_login(settings, row.service):
        return row
    result = check_login(settings, row.service, row.host, row.port)
    return replace(row, state=login_refused_state(result)) if result.refused else row


def _not_running(engine: Engine, c: Container) -> str:
    if c.state in ("exited", "dead"):
        code = (engine.inspect(c.id).get("State") or {}).get("ExitCode")
        return f"{c.state} (code {code})" if code is not None else c.state
    return c.state  # created, paused, restarting


def status_rows(engine: Engine, settings: Settings) -> list[StatusRow]:
    host = url_host(settings, engine.remote_host)
    containers = known_containers(engine, settings)
    proxy_port = _proxy_port(settings, containers)
    rows = []
    for name in in_catalog_order(containers, settings):
        c = containers[name]
        detail = engine.inspect(c.id)
        state = detail.get("State") or {}
        published = published_port(settings, c, name)
        uptime = None
        if c.running and state.get("StartedAt"):
            uptime = max(0.0, time.time() - docker_time(str(state["StartedAt"])))
        row = (make_row(settings, name,
                        published_host(settings, host, engine.remote_host, published),
                        published.host_port, c.state, proxy_port=proxy_port)
               if published else None)
        rows.append(StatusRow(
            service=name, container=c.name, state=c.state,
            health=str((state.get("Health") or {}).get("Status", "")) or "none",
            url=row.url if row else "", direct_url=row.direct_url if row else "",
            port=published.host_port if published else None,
            uptime_seconds=round(uptime, 1) if uptime is not None else None,
            restarts=int(detail.get("RestartCount") or 0),
            exit_code=None if c.running else int(state.get("ExitCode") or 0),
        ))
    for name, _port in expected_services(settings).items():
        if name not in containers:  # started by the last `up`, removed since
            rows.append(StatusRow(service=name, container="", state="gone", health="none",
                                  url="", port=None, uptime_seconds=None, restarts=0,
                                  exit_code=None))
    order = in_catalog_order((r.service for r in rows), settings)
    return sorted(rows, key=lambda r: order.index(r.service))


def app_rows(settings: Settings, host: str, check: bool = True) -> list[ServiceRow]:
    """`ports` rows of the host apps devenv started and has not stopped since: a running
    one probed at its URL, one that ended with how it ended."""
    from ..hostapps.runtime import read_records

    rows = []
    for name, record in read_records(settings.state_dir, settings.project).items():
        if name not in settings.catalog.apps:
            continue
        state = "running" if record.running else \
            f"{record.describe()} (devenv restart {name} starts it again)"
        rows.append(app_row(settings, name, host, record.port, state, record.running))
    live = [r for r in rows if r.running]
    if check and live:
        from ..probes import Target, probe_all

        answers = probe_all([Target(r.service, settings.catalog.apps[r.service].probe, r.host,
                                    r.port) for r in live], settings.values)
        rows = [r if not r.running else
                replace(r, state="ready" if answers[r.service].ok
                        else f"running, not answering ({answers[r.service].detail})")
                for r in rows]
    return rows


def app_status_rows(settings: Settings, host: str) -> list[StatusRow]:
    """`status` rows of the host apps: pid, state (exited with its code), uptime."""
    from ..hostapps.runtime import read_records

    rows = []
    for name, record in read_records(settings.state_dir, settings.project).items():
        if name not in settings.catalog.apps:
            continue
        app = settings.catalog.apps[name]
        pid = record.meta.get("pid") if record.state != "damaged" else None
        rows.append(StatusRow(
            service=name, container=f"pid {pid}" if pid else "", state=record.state,
            health="none", url=app.url.format(host=host, port=record.port) if record.port
            else "", port=record.port or None,
            uptime_seconds=round(max(0.0, time.time() - record.since), 1)
            if record.running and record.since else None,
            restarts=0, exit_code=record.exit_code if record.state == "exited" else None))
    return rows


def ports(ctx: Context, show_secrets: bool = False) -> tuple[Settings, list[ServiceRow]]:
    """The `ports` use case: the project's live URLs, the host apps' after the services'."""
    settings = ctx.settings()
    engine = ctx.engine()
    rows = live_rows(engine, settings, show_secrets, missing=True)
    return settings, rows + app_rows(settings, url_host(settings, engine.remote_host))


def status(ctx: Context) -> tuple[Settings, list[StatusRow]]:
    """The `status` use case: state, health, URL, uptime and restarts per service and
    host app."""
    settings = ctx.settings()
    engine = ctx.engine()
    return settings, status_rows(engine, settings) + app_status_rows(
        settings, url_host(settings, engine.remote_host))


def devices(ctx: Context) -> DeviceReport:
    """The `ports --device` use case: the API's URL from a simulator, an emulator and a
    phone."""
    from .devices import device_report  # only --device needs it: `ports` stays lighter
    settings = ctx.settings()
    engine = ctx.engine()
    name = next((n for n, spec in settings.catalog.items() if spec.device_urls), "")
    api = project_containers(engine, settings.project).get(name) if name else None
    port = settings.catalog[name].container_port if name else 0
    published = api.host_port(port) if api is not None and api.running else None
    if api is None or published is None:
        what = settings.catalog[name].title if name else "service with a device URL"
        raise UsageError(f"the {what} of project {settings.project} is not running",
                         hint=f"start it: devenv up --only {name} (and --lan {name} for a "
                         "phone)")
    addresses = [p.host_ip for p in api.ports if p.container_port == port]
    host = url_host(settings, engine.remote_host)
    report = device_report(settings, published.host_port, addresses, host=host)
    return replace(report, apps=tuple(_mobile_apps(settings, report.lan_address)))


def _mobile_apps(settings: Settings, lan: str) -> list[DeviceURL]:
    """Where a phone reaches the mobile host apps devenv runs (Metro, Expo): their LAN URL
    (REACT_NATIVE_PACKAGER_HOSTNAME), else this machine's."""
    from ..hostapps.runtime import read_records
    from .devices import DeviceURL

    out = []
    for name, record in read_records(settings.state_dir, settings.project).items():
        app = settings.catalog.apps.get(name)
        if app is None or not app.mobile or not record.running:
            continue
        host = lan or "127.0.0.1"
        out.append(DeviceURL(f"app:{name}", app.title, f"http://{host}:{record.port}",
                             "host app devenv runs; a phone loads its bundle here"
                             if lan else "host app devenv runs (no LAN address)", bool(lan)))
    return out
