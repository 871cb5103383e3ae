"""`devenv dashboard`: the project's live page, served from 127.0.0.1 with a token.

The page's assets (static/) ship inside the wheel; nothing is fetched from the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..context import Context
from ..errors import DevenvError, DockerUnavailableError, PortConflictError
from ..ports.plan import Holder, PortChoice

LISTEN = "127.0.0.1"
URL_SCHEMA = "devenv.dashboard.url/1"
BIND_RETRIES = 3


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    token: str
    project: str
    choice: PortChoice
    #: with open_page: a file:// URL of a 0600 page that sends the browser on to `url`,
    #: for the browser's command line (which every local user can read); else ""
    open_url: str = ""

    def as_data(self) -> dict[str, Any]:
        return {"schema": URL_SCHEMA, "url": self.url, "port": self.port,
                "project": self.project, "port_rule": self.choice.rule,
                "port_note": self.choice.describe()}


def _planner(ctx: Context) -> Any:
    from ..config.state import StateFile
    from ..ports.planner import PortPlanner

    settings = ctx.settings()
    try:
        engine: Any = ctx.engine()
        remote = engine.info().remote_host
    except DockerUnavailableError as exc:
        ctx.notify(f"warning: {exc.message}; the page will say so and reconnect")
        engine, remote = None, None
    memory = StateFile(settings.state_dir).load(settings.project).ports
    return PortPlanner(engine, settings, memory, check_host=remote is None)


def _remember(ctx: Context, choice: PortChoice) -> None:
    """Sticky like the services: the port goes into .devenv/state.json."""
    from dataclasses import replace

    from ..config.state import Memory, StateFile, project_lock

    settings = ctx.settings()
    with project_lock(settings.state_dir, settings.project, "dashboard",
                      settings.wait_timeout, on_wait=ctx.notify):
        state_file = StateFile(settings.state_dir, warn=ctx.notify)
        state = state_file.load(settings.project)
        state_file.save(settings.project, replace(state, ports={
            **state.ports, "dashboard": Memory(choice.port, choice.configured)}))


def serve(ctx: Context, on_ready: Callable[[Served], None],
          features: dict[str, bool] | None = None, open_page: bool = False) -> None:
    """Plan the port, start the hub and the server, call on_ready, run until Ctrl-C or
    SIGTERM. With open_page, Served.open_url is a launch page for a browser (launch.py)."""
    asyncio.run(_serve(ctx, on_ready, features or {}, open_page))


async def _serve(ctx: Context, on_ready: Callable[[Served], None],
                 features: dict[str, bool], open_page: bool = False) -> None:
    from aiohttp import web

    from .hub import Hub
    from .launch import LaunchPage
    from .server import RequestLog, broadcaster, make_app, server_logger

    loop = asyncio.get_running_loop()
    settings = ctx.settings()
    token = secrets.token_urlsafe(24)
    planner = _planner(ctx)
    forward: list[Callable[[str, dict[str, Any]], None]] = []
    hub = Hub(ctx, lambda kind, data: forward[0](kind, data) if forward else None,
              features=features)
    runner: Any = None
    log = RequestLog(ctx.notify)
    launch: list[LaunchPage] = []  # the page is used up when the dashboard serves itself
    for attempt in range(BIND_RETRIES + 1):
        choice = planner.plan(("dashboard",)).by_service()["dashboard"]
        if choice.moved:
            ctx.notify(choice.describe())
        app = make_app(hub, token, choice.port, log,
                       on_page=lambda: launch[0].remove() if launch else None)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               logger=server_logger(log))
        await runner.setup()
        try:
            await web.TCPSite(runner, LISTEN, choice.port).start()
            break
        except OSError as exc:
            await runner.cleanup()
            if exc.errno != errno.EADDRINUSE or attempt == BIND_RETRIES:
                raise PortConflictError(f"dashboard: cannot listen on {LISTEN}:{choice.port}: "
                                        f"{exc.strerror}",
                                        hint="set DEVENV_DASHBOARD_PORT or --port to a free "
                                        "port") from exc
            planner.marks[choice.port] = Holder("process", "a process that took it just now")
    forward.append(broadcaster(app, loop))
    _remember(ctx, choice)
    hub.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    url = f"http://{LISTEN}:{choice.port}/?token={token}"
    open_url = ""
    if open_page:
        launch.append(LaunchPage(settings.state_dir, choice.port))
        open_url = launch[0].write(url)
    try:
        on_ready(Served(url, choice.port, token, settings.project, choice, open_url))
        await stop.wait()
    finally:
        for page in launch:
            page.remove()
        hub.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), 3)


__all__ = ["Served", "serve", "DevenvError"]
