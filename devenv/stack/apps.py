"""The host apps devenv runs, as steps of `up`, `restart`, `down` and `logs`.

`up` plans their ports with the containers' (one plan), then, once what they need
answers, starts each under its supervisor (hostapps/runtime.py) with PORT, every variable
of `ports --env` and its own environment table, and waits on its probe. A running app
whose command, port or variables did not change is left alone; one whose did is restarted,
and the reason said.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..config.catalog import HostApp
from ..config.settings import Settings
from ..config.state import Memory, StateFile, known_secrets, project_lock
from ..context import Context
from ..engine import Engine, EngineInfo
from ..errors import NotReadyError, ProjectFileError, UsageError
from ..hostapps.runtime import (
    AppRecord,
    changes,
    read_record,
    read_records,
    start_app,
    stop_app,
    tail,
)
from ..live.running import app_env, app_row, url_host
from ..live.status import live_rows
from ..ports.holders import bind_blocked
from ..ports.plan import PortPlan
from ..ports.planner import PortPlanner
from ..probes import Target, WaitResult, wait_until_ready
from ..render.stackfiles import LanPublish
from ..report import mask
from ..rows import ServiceRow
from ..tunnels.usecases import app_env as tunnel_env

LOG_TAIL = 20
#: seconds between probes of a starting app: a refused connection on loopback costs
#: microseconds, and a dev server's start is what the user waits for
APP_POLL = 0.02


def records(settings: Settings) -> dict[str, AppRecord]:
    return read_records(settings.state_dir, settings.project)


def running_ports(settings: Settings, found: Mapping[str, AppRecord]) -> dict[str, int]:
    """Host apps devenv runs now, with their ports (the planner keeps them where they are)."""
    return {name: r.port for name, r in found.items()
            if r.running and name in settings.catalog.apps}


def check_cwds(settings: Settings, names: Sequence[str]) -> None:
    """Every selected app's cwd is a directory, before anything starts."""
    for name in names:
        app = settings.catalog.apps[name]
        if app.cwd and not (settings.project_dir / app.cwd).is_dir():
            raise ProjectFileError(app.origin, f"host_apps.{name}", "cwd",
                                   f"{app.cwd!r} is not a directory of "
                                   f"{settings.project_dir}",
                                   hint="create it, or fix cwd (relative to the project "
                                   "directory)")


def in_waves(settings: Settings, names: Sequence[str]) -> list[list[str]]:
    """The apps in waves: each app after the apps it needs (services answer before any)."""
    left = list(names)
    done: set[str] = set()
    waves = []
    while left:
        wave = [n for n in left if all(need in done or need not in left
                                       for need in settings.catalog.apps[n].needs
                                       if need in settings.catalog.apps)]
        waves.append(wave)
        done.update(wave)
        left = [n for n in left if n not in done]
    return waves


def app_variables(app: HostApp, port: int, shared: Mapping[str, str],
                  lan_host: str = "") -> dict[str, str]:
    """What devenv gives the app: PORT, `ports --env`'s variables, the packager's LAN
    host for a mobile app named by `up --lan`, then the app's own environment table."""
    values = {"PORT": str(port), **shared}
    if lan_host and app.mobile:
        values["REACT_NATIVE_PACKAGER_HOSTNAME"] = lan_host
    values.update(app.environment)
    return values


@dataclass
class AppStarter:
    """Starts the selected apps in waves; on any failure (Ctrl-C included) the apps this
    run started and that do not answer are stopped again."""

    settings: Settings
    notify: Callable[[str], None]
    host: str
    shared: Mapping[str, str]
    replan: Callable[[str, int], int]
    lan_host: str = ""
    on_wait: Callable[..., None] | None = None
    #: the apps `up --lan` names: a mobile one gets REACT_NATIVE_PACKAGER_HOSTNAME
    lan_names: tuple[str, ...] = ()

    def _lan(self, name: str) -> str:
        return self.lan_host if name in self.lan_names else ""

    def start(self, names: Sequence[str], ports: Mapping[str, int]) -> list[ServiceRow]:
        ports = dict(ports)
        found = records(self.settings)
        rows: list[ServiceRow] = []
        for wave in in_waves(self.settings, names):
            started: dict[str, AppRecord] = {}
            try:
                for name in wave:
                    record = self._start_one(name, ports, found.get(name))
                    if record is not None:
                        started[name] = record
                wait = self._wait(wave, ports, started)
                if not wait.ok:
                    raise self._not_ready(wave, ports, wait)
            except BaseException:
                for record in started.values():
                    fresh = read_record(record.path)
                    stop_app(fresh or record, grace=2.0)
                raise
            rows.extend(replace(app_row(self.settings, n, self.host, ports[n], "ready"),
                                seconds_to_ready=wait.ready.get(n)) for n in wave)
        return rows

    def _start_one(self, name: str, ports: dict[str, int],
                   record: AppRecord | None) -> AppRecord | None:
        app = self.settings.catalog.apps[name]
        values = app_variables(app, ports[name], self.shared, self._lan(name))
        if record is not None and record.running:
            diff = changes(record, app.command, app.cwd, ports[name], values)
            if not diff:
                return None  # running as it would start now: left alone
            self.notify(f"{name}: restarting ({', '.join(diff)} changed)")
            stop_app(record)
        elif record is not None:
            if record.state == "damaged":
                self.notify(f"{name}: its record under .devenv/ was damaged; nothing it "
                            "names is signalled, starting afresh")
            stop_app(record)  # signals only what devenv started: clears the record
        if bind_blocked(ports[name]):
            ports[name] = self.replan(name, ports[name])
            values = app_variables(app, ports[name], self.shared, self._lan(name))
        self.notify(f"starting {name} on port {ports[name]}")
        secrets = known_secrets(self.settings)
        proc, fresh = start_app(name, app.command, self.settings.project_dir / app.cwd,
                                {**os.environ, **values}, values, ports[name],
                                _folder(self.settings), secrets, cwd_text=app.cwd)
        return fresh

    def _wait(self, wave: Sequence[str], ports: Mapping[str, int],
              started: Mapping[str, AppRecord]) -> WaitResult:
        apps = self.settings.catalog.apps
        targets = [Target(n, apps[n].probe, self.host, ports[n]) for n in wave]

        def dead() -> dict[str, str]:
            out = {}
            for name, record in started.items():
                now = read_record(record.path)
                if now is None or not now.running:
                    out[name] = now.describe() if now is not None else "its record is gone"
            return out

        return wait_until_ready(targets, self.settings.values, self.settings.wait_timeout,
                                check_alive=dead, on_event=self.on_wait, poll=APP_POLL,
                                alive_interval=0.1)

    def _not_ready(self, wave: Sequence[str], ports: Mapping[str, int],
                   wait: WaitResult) -> NotReadyError:
        secrets = known_secrets(self.settings)
        parts = []
        for name, why in {**wait.exited, **wait.timed_out}.items():
            elsewhere = _listening_elsewhere(self.settings, name, ports[name])
            if elsewhere:
                why += f"; it listens on {elsewhere}, not on $PORT ({ports[name]})"
            parts.append(f"--- {name}: {why}")
            lines = tail(self.settings.state_dir, self.settings.project, name, LOG_TAIL)
            parts.append(f"last {LOG_TAIL} log lines of {name}:\n" + "\n".join(lines)
                         if lines else f"({name} printed nothing)")
        names = ", ".join({**wait.exited, **wait.timed_out})
        if wait.exited:
            message = f"{names} stopped while devenv waited for it"
            hint = "read its log lines above, fix the command, and run `devenv up` again"
        else:
            message = (f"{names} did not answer on its port within "
                       f"{self.settings.wait_timeout:g} s")
            hint = ("make the command listen on $PORT (e.g. --port $PORT), or raise "
                    "DEVENV_WAIT_TIMEOUT; it was stopped")
        return NotReadyError(mask(message, secrets), hint=hint,
                             detail=mask("\n".join(parts), secrets))


def _folder(settings: Settings) -> Path:
    from ..hostapps.runtime import app_dir

    return app_dir(settings.state_dir, settings.project)


def _listening_elsewhere(settings: Settings, name: str, port: int) -> str:
    """The ports the app's processes listen on, when $PORT is not among them."""
    record = read_record(_folder(settings) / f"{name}.json")
    if record is None or record.pgid <= 1:
        return ""
    from ..hostapps.runtime import listening_ports

    found = sorted(listening_ports(record.pgid) - {port})
    return ", ".join(map(str, found))


def stop_all(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """Stop the project's running host apps (or those named); the names that ran."""
    stopped = []
    for name, record in records(settings).items():
        if names is not None and name not in names:
            continue
        if stop_app(record) != "not running":
            stopped.append(name)
    return stopped


def app_logs(settings: Settings, names: Sequence[str], follow: bool, tail_lines: int | None,
             secrets: Sequence[str]):  # type: ignore[no-untyped-def]
    """The apps' log lines (already masked by the supervisor; masked again for secrets
    set since), then, with `follow`, new lines as they come."""
    from ..hostapps.runtime import log_path

    for name in names:
        prefix = f"{name} | " if len(names) > 1 else ""
        for line in tail(settings.state_dir, settings.project, name, tail_lines):
            yield prefix + mask(line, secrets)
    if not follow:
        return
    handles = {}
    for name in names:
        path = log_path(settings.state_dir, settings.project, name)
        with contextlib.suppress(OSError):
            handle = open(path, "rb")  # noqa: SIM115 - held while following
            handle.seek(0, os.SEEK_END)
            handles[name] = (path, handle)
    try:
        while True:
            for name, (path, handle) in list(handles.items()):
                with contextlib.suppress(OSError):
                    if path.stat().st_size < handle.tell():  # rotated: start the new file
                        handle.close()
                        handle = open(path, "rb")  # noqa: SIM115
                        handles[name] = (path, handle)
                for raw in handle.readlines():
                    prefix = f"{name} | " if len(names) > 1 else ""
                    yield prefix + mask(raw.decode("utf-8", errors="replace").rstrip("\n"),
                                        secrets)
            time.sleep(0.2)
    finally:
        for _path, handle in handles.values():
            handle.close()


def start_selected(ctx: Context, settings: Settings, host: str, planner: PortPlanner,
                   plan: PortPlan, everything: Sequence[str], names: Sequence[str],
                   rows: Sequence[ServiceRow], state_file: StateFile,
                   lan: LanPublish | None) -> tuple[ServiceRow, ...]:
    """Once what they need answers: the selected host apps, with PORT, `ports --env`'s
    variables and their own; their ports remembered as the containers' are."""
    ports = {name: plan.port(name) for name in names}

    def replan(name: str, port: int) -> int:
        planner.mark_taken(port)
        ctx.notify(f"{name}: {port} was taken after planning; moving it")
        choice = planner.plan(everything).by_service()[name]
        ctx.notify(choice.describe())
        return choice.port

    shared = {**app_env(settings, rows), **tunnel_env(ctx, settings)}
    lan_host = lan.address if lan is not None else ""
    starter = AppStarter(settings, ctx.notify, host, shared, replan, lan_host=lan_host,
                         on_wait=ctx.on_wait,
                         lan_names=lan.services if lan is not None else ())
    app_rows = tuple(starter.start(names, ports))
    state = state_file.load(settings.project)
    memory = {r.service: Memory(r.port, r.configured_port) for r in app_rows}
    state_file.save(settings.project, replace(state, ports={**state.ports, **memory}))
    return app_rows


def restart_apps(ctx: Context, settings: Settings, engine: Engine, info: EngineInfo,
                 names: Sequence[str], show_secrets: bool) -> tuple[ServiceRow, ...]:
    """Stop the host apps (when they run) and start them again where they ran (or, when
    that port is taken now, where the planner says), with the stack's URLs as they are."""
    with project_lock(settings.state_dir, settings.project, "restart", settings.wait_timeout,
                      on_wait=ctx.notify):
        live = live_rows(engine, settings, show_secrets, check=False)
        running = {r.service for r in live if r.running}
        for name in names:
            missing = [n for n in settings.catalog.apps[name].needs
                       if n in settings.catalog and n not in running]
            if missing:
                raise UsageError(f"{name} needs {', '.join(missing)}, which "
                                 + ("is" if len(missing) == 1 else "are") + " not running",
                                 hint=f"start everything it needs: devenv up --only {name}")
        found = records(settings)
        for name in names:
            if name in found:
                ctx.notify(f"stopping {name}")
                stop_app(found[name])
        state = StateFile(settings.state_dir, warn=ctx.notify).load(settings.project)
        planner = PortPlanner(engine, settings, state.ports,
                              check_host=info.remote_host is None,
                              apps_running=running_ports(settings, records(settings)))
        plan = planner.plan(names)
        for choice in plan.moved:
            ctx.notify(choice.describe())

        def replan(name: str, port: int) -> int:
            planner.mark_taken(port)
            ctx.notify(f"{name}: {port} was taken after planning; moving it")
            return planner.plan(names).port(name)

        host = url_host(settings, info.remote_host)
        shared = {**app_env(settings, live), **tunnel_env(ctx, settings)}
        starter = AppStarter(settings, ctx.notify, host, shared, replan, on_wait=ctx.on_wait)
        return tuple(starter.start(names, {n: plan.port(n) for n in names}))
