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
          features: dict[str, bool] | None = None) -> None:
    """Plan the port, start the hub and the server, call on_ready, run until Ctrl-C or
    SIGTERM."""
    asyncio.run(_serve(ctx, on_ready, features or {}))


async def _serve(ctx: Context, on_ready: Callable[[Served], None],
                 features: dict[str, bool]) -> None:
    from aiohttp import web

    from .hub import Hub
    from .server import broadcaster, make_app

    loop = asyncio.get_running_loop()
    settings = ctx.settings()
    token = secrets.token_urlsafe(24)
    planner = _planner(ctx)
    forward: list[Callable[[str, dict[str, Any]], None]] = []
    hub = Hub(ctx, lambda kind, data: forward[0](kind, data) if forward else None,
              features=features)
    runner: Any = None
    for attempt in range(BIND_RETRIES + 1):
        choice = planner.plan(("dashboard",)).by_service()["dashboard"]
        if choice.moved:
            ctx.notify(choice.describe())
        app = make_app(hub, token, choice.port)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
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
    on_ready(Served(url, choice.port, token, settings.project, choice))
    try:
        await stop.wait()
    finally:
        hub.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), 3)


__all__ = ["Served", "serve", "DevenvError"]
