"""The dashboard's web server (aiohttp): the page, its JSON, and one Server-Sent Events
stream per browser fed from the hub.

Security, in one middleware every request passes:
- the socket binds 127.0.0.1 only;
- the Host header must be 127.0.0.1:PORT or localhost:PORT (a DNS-rebinding page has its
  own name there);
- the token (random, in the URL the command prints) must come as ?token= or in the
  X-Devenv-Token header; without it: 403;
- a request that carries an Origin (or Sec-Fetch-Site: cross-site) from anywhere but the
  page itself is refused, and no response has CORS headers, so no other site can read or
  drive the dashboard; the one cross-site request let through is the browser opening the
  page itself (a top-level navigation to / with the token), as the launch page of
  `dashboard --open` (a file://) does: it shows the user the page, and gives the site it
  came from nothing to read (X-Frame-Options, no CORS);
- actions are POSTs with the token in the header (a link or a form cannot set it);
- a malformed request (a token that is not ASCII, bytes that are not UTF-8, a request line
  aiohttp cannot parse) gets a 4xx, never a traceback, and each kind is logged once, in
  one line: a page that sends them in a loop cannot fill the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from ..errors import DevenvError, LockedError, SnapshotNameError
from .hub import Hub

TOKEN_HEADER = "X-Devenv-Token"
HEARTBEAT = 15.0
QUEUE_LIMIT = 2000  # a browser that falls this far behind is dropped (it reconnects)
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # the token is in the page's URL: never send it on to a service a link opens
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
}

HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
CONFIG: web.AppKey[dict[str, Any]] = web.AppKey("config", dict)
CLIENTS = web.AppKey("clients", set)  # of asyncio.Queue[tuple[str, Any]], one per browser


def allowed_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


class MalformedRequest(ValueError):
    """A request no client of the dashboard sends: answered 400."""


def refuse(request: web.Request) -> str | None:
    """Why a request is refused, or None. Pure over the request's headers and query.
    Raises MalformedRequest for a token that is not ASCII (the dashboard's never is)."""
    config = request.app[CONFIG]
    port = config["port"]
    if request.headers.get("Host", "") not in allowed_hosts(port):
        return "host not allowed"
    origin = request.headers.get("Origin")
    if origin is not None and origin not in {f"http://{h}" for h in allowed_hosts(port)}:
        return "cross-origin request refused"
    if request.headers.get("Sec-Fetch-Site") == "cross-site" and not _opens_the_page(request):
        return "cross-site request refused"
    token = request.headers.get(TOKEN_HEADER, "")
    if request.method == "GET" and not token:
        token = request.query.get("token", "")
    if not token.isascii():
        raise MalformedRequest("a token that is not ASCII")
    if not token or not hmac.compare_digest(token.encode(), config["token"].encode()):
        return "missing or wrong token"
    return None


def _opens_the_page(request: web.Request) -> bool:
    """A top-level navigation of the browser to the page itself."""
    return (request.method == "GET" and request.path == "/"
            and request.headers.get("Sec-Fetch-Mode") == "navigate"
            and request.headers.get("Sec-Fetch-Dest") == "document")


class RequestLog:
    """What the server says about requests it could not serve: one line for each kind,
    the first time only (a page that repeats one cannot fill the terminal)."""

    def __init__(self, notify: Callable[[str], None]):
        self._notify = notify
        self._told: set[str] = set()

    def once(self, kind: str, text: str) -> None:
        if kind not in self._told:
            self._told.add(kind)
            self._notify(f"dashboard: {text} (more of the kind are not logged)")


class _OneLine(logging.Handler):
    """aiohttp's own error log (a request it cannot parse, answered 400 before the guard
    sees it) as one line of the RequestLog, never a traceback. Only the kind is said: the
    request line it would quote carries the token."""

    def __init__(self, log: RequestLog):
        super().__init__(logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        kind = type(exc).__name__ if exc is not None else "message"
        code = getattr(exc, "code", None)
        self._log.once(f"aiohttp:{kind}", f"refused a request it could not read ({kind})"
                       + (f" with {code}" if isinstance(code, int) else ""))


def server_logger(log: RequestLog) -> logging.Logger:
    """The logger the server's request handlers use (AppRunner(logger=...))."""
    logger = logging.Logger("devenv.dashboard.server", logging.INFO)  # no parent, no root
    logger.addHandler(_OneLine(log))
    return logger


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    log: RequestLog = request.app[CONFIG]["log"]
    try:
        why = refuse(request)
    except (MalformedRequest, UnicodeError) as exc:
        why = None
        log.once("malformed", f"refused a malformed request ({exc}) with 400")
        response: web.StreamResponse = web.Response(status=400,
                                                    text="bad request: malformed\n")
    else:
        if why is not None:
            response = web.Response(status=403, text=f"forbidden: {why}\n")
        else:
            response = await _handle(request, handler, log)
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


async def _handle(request: web.Request, handler: Any, log: RequestLog) -> web.StreamResponse:
    """The handler's response; what it raises, as one line and a status, never a
    traceback: 400 for text that is not what it claims, 500 (logged) for the rest."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return web.Response(status=exc.status, text=exc.text,
                            headers={k: v for k, v in exc.headers.items()
                                     if k.lower() == "allow"})
    except UnicodeError as exc:
        log.once("malformed", f"refused a malformed request ({exc}) with 400")
        return web.Response(status=400, text="bad request: malformed\n")
    except Exception as exc:  # noqa: BLE001 - one line, and the server goes on
        log.once(f"error:{type(exc).__name__}", f"{request.method} {request.path} failed: "
                 f"{type(exc).__name__}: {exc}".splitlines()[0])
        return web.Response(status=500, text="the dashboard failed; see its terminal\n")


def _asset(name: str) -> str:
    return resources.files("devenv.dashboard").joinpath("static", name).read_text("utf-8")


async def index(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    page = _asset("index.html").replace("__TOKEN__", config["token"])
    if config["on_page"] is not None:
        config["on_page"]()
    return web.Response(text=page, content_type="text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(text=_asset(name), content_type=STATIC[name])


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


async def state(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if hub.state is None:
        return _json({"schema": "devenv.dashboard/1", "project": hub.project,
                      "engine": hub.engine_status, "services": None}, status=503)
    return _json(hub.state)


async def logs(request: web.Request) -> web.Response:
    service = request.query.get("service") or None
    if service is not None and service not in request.app[HUB].settings.catalog:
        raise web.HTTPNotFound(text=f"unknown service {service}\n")
    return _json(request.app[HUB].log_document(service))


async def stats(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        document = await asyncio.get_running_loop().run_in_executor(None, hub.stats)
    except DevenvError as exc:
        return _json({"error": exc.message}, status=503)
    return _json(document)


async def secrets(request: web.Request) -> web.Response:
    return _json(request.app[HUB].secrets())


async def _act(action: str, work: Any, *args: Any, **fields: Any) -> web.Response:
    """Run a long action in a thread (the event loop keeps serving every browser) and
    answer with its document, or with one line of error: 409 when another action runs
    (nothing was done), 400 for a bad name, 409 for what the engine or the data refused,
    500 for anything else (still one line, never a traceback)."""
    try:
        result = await asyncio.get_running_loop().run_in_executor(None, work, *args)
    except DevenvError as exc:
        status = 400 if isinstance(exc, SnapshotNameError) else 409
        return _json({"schema": "devenv.dashboard.action/1", "action": action, **fields,
                      "ok": False, "busy": isinstance(exc, LockedError),
                      "error": exc.message, "hint": exc.hint or ""}, status=status)
    except Exception as exc:  # noqa: BLE001 - the page shows one line; the server goes on
        return _json({"schema": "devenv.dashboard.action/1", "action": action, **fields,
                      "ok": False, "busy": False,
                      "error": f"{action} failed: {type(exc).__name__}: {exc}".splitlines()[0],
                      "hint": "see the dashboard's terminal"}, status=500)
    return _json(result)


async def restart(request: web.Request) -> web.Response:
    service = request.match_info["service"]
    if service not in request.app[HUB].settings.catalog:
        raise web.HTTPNotFound(text=f"unknown service {service}\n")
    return await _act("restart", request.app[HUB].restart, service, service=service)


async def snapshot_list(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return _json(await asyncio.get_running_loop().run_in_executor(None, hub.snapshots))


async def snapshot_take(request: web.Request) -> web.Response:
    """POST /api/snapshots with an optional JSON body {"name": "..."}."""
    name: str | None = None
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("name", ""), str):
            raise web.HTTPBadRequest(text='the body is JSON like {"name": "before-upgrade"}\n')
        name = body.get("name") or None
    return await _act("snapshot", request.app[HUB].snapshot, name)


async def snapshot_restore(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return await _act("restore", request.app[HUB].restore, name, snapshot=name)


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """The browser's live feed: a snapshot first, then what the hub publishes."""
    hub = request.app[HUB]
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=QUEUE_LIMIT)
    clients = request.app[CLIENTS]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    await response.prepare(request)
    clients.add(queue)
    try:
        # the state first, so the page shows the services before it parses the log backlog
        await response.write(_sse("snapshot", {"state": hub.state, "engine": hub.engine_status}))
        await response.write(_sse("logs", hub.log_document()))
        while True:
            try:
                kind, data = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if kind == "close":
                break
            await response.write(_sse(kind, data))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        clients.discard(queue)
    return response


def make_app(hub: Hub, token: str, port: int, log: RequestLog | None = None,
             on_page: Callable[[], None] | None = None) -> web.Application:
    """The app; `log` tells the terminal about requests it refused as malformed, `on_page`
    is called when the page itself is served (the --open launch file is then used up)."""
    app = web.Application(middlewares=[guard])
    app[HUB] = hub
    app[CONFIG] = {"token": token, "port": port, "log": log or RequestLog(lambda text: None),
                   "on_page": on_page}
    app[CLIENTS] = set()
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/logs", logs)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/secrets", secrets)
    app.router.add_post("/api/services/{service}/restart", restart)
    app.router.add_get("/api/snapshots", snapshot_list)
    app.router.add_post("/api/snapshots", snapshot_take)
    app.router.add_post("/api/snapshots/{name}/restore", snapshot_restore)
    return app


def broadcaster(app: web.Application, loop: asyncio.AbstractEventLoop) -> Any:
    """A publish function the hub's threads call: hands the event to every browser."""

    def deliver(kind: str, data: Any) -> None:
        clients: set[asyncio.Queue[tuple[str, Any]]] = app[CLIENTS]
        for queue in list(clients):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:
                clients.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(("close", None))

    def publish(kind: str, data: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
            loop.call_soon_threadsafe(deliver, kind, data)

    return publish
