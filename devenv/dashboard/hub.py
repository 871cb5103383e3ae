"""The dashboard's one view of the engine, shared by every browser.

One thread reads Docker's event stream for the project; each event marks the state dirty,
and one refresher thread rebuilds the state document (a few Engine API calls, devenv's own
probes, the port plan) and publishes it. One thread per running container follows its log.
Browsers never cause engine calls by watching: they get what the hub publishes. When the
engine goes away the hub says so and reconnects with backoff; on return it refreshes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..context import Context
from ..errors import DevenvError, LockedError
from . import model

LOG_LINES = 200  # kept per service for a browser that connects later
#: bytes of one log line the page gets; a longer line comes cut there and says so, so the
#: hub holds at most LOG_LINES x LOG_LINE_BYTES of a service's output, however it writes
LOG_LINE_BYTES = 8 * 1024
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 5.0
DEBOUNCE = 0.05  # events that come together make one refresh
REPROBE = 1.0  # while a running service does not answer yet
STATS_CACHE = 2.0

Publish = Callable[[str, dict[str, Any]], None]


class Hub:
    def __init__(self, ctx: Context, publish: Publish,
                 connect: Callable[[Mapping[str, str]], Any] | None = None,
                 features: Mapping[str, bool] | None = None):
        from ..live.output import ContainerOutput

        self.ctx = ctx
        self.settings = ctx.settings()
        self.project = self.settings.project
        self._publish = publish
        self._connect = connect or ctx.engine_factory
        self._output = ContainerOutput(self.settings)
        self.features = dict(features or {})
        self.engine: Any = None
        self.engine_status: dict[str, Any] = {"connected": False, "since": time.time(),
                                              "error": "connecting"}
        self.state: dict[str, Any] | None = None
        self.logs: dict[str, deque[dict[str, Any]]] = {n: deque(maxlen=LOG_LINES)
                                                       for n in self.settings.catalog}
        self._followers: dict[str, tuple[str, str, Any, threading.Thread]] = {}
        self._last_line_at: dict[str, float] = {}
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._events: Any = None
        self._threads: list[threading.Thread] = []
        self._stats: tuple[float, dict[str, Any]] | None = None
        self._probes: dict[str, tuple[tuple[str, str], tuple[bool, str]]] = {}
        # one action (restart, snapshot, restore) at a time; a second is refused, not queued
        self._action = threading.Lock()
        self.busy: str | None = None

    # --- life -------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in ((self._watch, "events"), (self._refresher, "refresh")):
            thread = threading.Thread(target=target, name=f"dashboard-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._events is not None:
            self._events.close()
        for _key, _cid, stream, _thread in list(self._followers.values()):
            stream.close()

    # --- the event stream, with reconnects -----------------------------------------
    def _watch(self) -> None:
        delay = RECONNECT_FIRST
        while not self._stop.is_set():
            try:
                engine = self._connect(self.ctx.environ)
                events = engine.events(self.project)
                self.engine, self._events = engine, events
                self._set_engine(True, "")
                delay = RECONNECT_FIRST
                self._dirty.set()
                for event in events:
                    # a healthcheck is an exec every few seconds: its own events change
                    # nothing on the page (its result comes as health_status)
                    if not str(event.get("Action", "")).startswith("exec_"):
                        self._dirty.set()
                    if self._stop.is_set():
                        return
                raise DevenvError("the engine ended the event stream")
            except DevenvError as exc:
                if self._stop.is_set():
                    return
                self._set_engine(False, exc.message)
            except OSError as exc:  # a transport error the seam did not translate
                self._set_engine(False, str(exc))
            self._stop.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _set_engine(self, connected: bool, error: str) -> None:
        with self._lock:
            changed = self.engine_status["connected"] != connected or (
                not connected and self.engine_status["error"] != error)
            if changed:
                self.engine_status = {"connected": connected, "since": time.time(),
                                      "error": error}
                if self.state is not None:
                    self.state = {**self.state, "engine": dict(self.engine_status)}
            status = dict(self.engine_status)
        if changed:
            self._publish("engine", status)

    # --- the state document ---------------------------------------------------------
    def _refresher(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            time.sleep(DEBOUNCE)
            self._dirty.clear()
            if not self.engine_status["connected"]:
                continue
            try:
                # What Docker says goes out at once; devenv's own probes (up to a second
                # for a service that hangs) follow in a second document.
                snapshot = self._snapshot()
                self._emit(self._document(snapshot, self._cached_probes(snapshot)))
                state = self._document(snapshot, self._probe(snapshot))
            except DevenvError as exc:
                self._set_engine(False, exc.message)
                continue
            self._emit(state)
            waiting = any(s["state"] == "running" and s["probe"] is not None
                          and not s["probe"]["ok"] for s in state["services"])
            if waiting:
                timer = threading.Timer(REPROBE, self._dirty.set)
                timer.daemon = True
                timer.start()

    def _emit(self, state: dict[str, Any]) -> None:
        """Publish the document unless only its time changed."""
        with self._lock:
            same = self.state is not None and all(
                self.state.get(k) == state.get(k) for k in state if k != "generated_at")
            self.state = state
        if not same:
            self._publish("state", state)

    def build_state(self) -> dict[str, Any]:
        snapshot = self._snapshot()
        return self._document(snapshot, self._probe(snapshot))

    def _snapshot(self) -> dict[str, Any]:
        """What the engine says now: containers, their inspect documents, published ports."""
        from ..live.running import known_containers, url_host

        engine, settings = self.engine, self.settings
        self._output.refresh()  # a secret generated since is masked too
        containers = known_containers(engine, settings)
        with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
            details = dict(zip(containers, pool.map(lambda c: engine.inspect(c.id),
                                                    containers.values()), strict=True))
        live: dict[str, int] = {}
        for name, c in containers.items():
            published = c.host_port(settings.catalog[name].container_port)
            if published is not None and c.running:
                live[name] = published.host_port
        ports, memory = self._port_plan(engine, live)
        self._follow_logs(containers, details)
        keys = {name: (c.id, str((details.get(name) or {}).get("State", {}).get("StartedAt")))
                for name, c in containers.items()}
        return {"details": details, "live": live, "ports": ports, "memory": memory,
                "keys": keys, "host": url_host(settings, engine.remote_host)}

    def _cached_probes(self, snapshot: Mapping[str, Any]) -> dict[str, tuple[bool, str]]:
        """The last probe of each container that has not restarted since."""
        return {name: result for name, (key, result) in self._probes.items()
                if snapshot["keys"].get(name) == key and name in snapshot["live"]}

    def _probe(self, snapshot: Mapping[str, Any]) -> dict[str, tuple[bool, str]]:
        from ..probes import Target, probe_all

        live = snapshot["live"]
        catalog = self.settings.catalog
        answers = probe_all([Target(n, catalog[n].probe, snapshot["host"], p)
                             for n, p in live.items()], self.settings.values) if live else {}
        results = {n: (a.ok, a.detail) for n, a in answers.items()}
        self._probes = {n: (snapshot["keys"][n], r) for n, r in results.items()}
        return results

    def _document(self, snapshot: Mapping[str, Any],
                  probes: Mapping[str, tuple[bool, str]]) -> dict[str, Any]:
        settings, live, ports = self.settings, snapshot["live"], snapshot["ports"]
        catalog = settings.catalog
        services = []
        proxy_port = live.get(catalog.proxy) if catalog.proxy else None
        for name in catalog:
            port = live.get(name) or ports.get(name, {}).get("port") or settings.port(name)
            spec = catalog[name]
            # with the HTTPS proxy running, its URL (https://NAME.PROJECT.localhost:PORT)
            url = (catalog.secure_url(name, settings.project, proxy_port, settings.values)
                   if proxy_port and (spec.routed or spec.https_proxy)
                   else catalog.url(name, snapshot["host"], port, settings.values))
            services.append(model.service_entry(
                name, snapshot["details"].get(name) or None, probes.get(name), url, catalog))
        return model.state_document(
            self.project, self.engine_status, services,
            model.port_entries(ports, live, snapshot["memory"], catalog, self._apps()),
            self._timing(),
            self.features, time.time(), catalog)

    def _apps(self) -> dict[str, tuple[int, bool]]:
        """The host apps devenv started: their ports and whether they run."""
        from ..hostapps.runtime import read_records

        return {name: (r.port, r.running) for name, r in
                read_records(self.settings.state_dir, self.project).items()}

    def _port_plan(self, engine: Any, live: Mapping[str, int]) -> tuple[
            dict[str, dict[str, Any]], dict[str, int]]:
        from ..config.state import StateFile
        from ..ports.planner import PortPlanner

        memory = StateFile(self.settings.state_dir).load(self.project).ports
        remote = engine.remote_host
        plan = PortPlanner(engine, self.settings, memory, check_host=remote is None).plan(
            tuple(self.settings.catalog))
        return ({c.service: c.as_data() for c in plan.choices},
                {name: m.port for name, m in memory.items()})

    def _timing(self) -> dict[str, Any] | None:
        from ..config.state import load_timing

        return load_timing(self.settings.state_dir, self.project)

    # --- logs -------------------------------------------------------------------------
    def _follow_logs(self, containers: Mapping[str, Any],
                     details: Mapping[str, Mapping[str, Any]]) -> None:
        for name, c in containers.items():
            started = str((details.get(name) or {}).get("State", {}).get("StartedAt", ""))
            current = self._followers.get(name)
            if current is not None:
                key, cid, stream, thread = current
                if thread.is_alive() and (key == started and cid == c.id):
                    continue
                stream.close()
            if not c.running:
                continue
            since = self._last_line_at.get(name) if current and current[1] == c.id else None
            stream = self._output.follow(self.engine, c.id, tail=100 if since is None else 0,
                                         since=since, limit=LOG_LINE_BYTES)
            thread = threading.Thread(target=self._read_log, args=(name, stream),
                                      name=f"dashboard-log-{name}", daemon=True)
            self._followers[name] = (started, c.id, stream, thread)
            thread.start()
        for name in set(self._followers) - set(containers):
            self._followers.pop(name)[2].close()

    def _read_log(self, name: str, stream: Any) -> None:
        with contextlib.suppress(DevenvError):
            for line in stream:  # masked
                at = time.time()
                entry = {"service": name, "line": line, "at": at}
                self._last_line_at[name] = at
                self.logs[name].append(entry)
                self._publish("log", entry)

    def log_document(self, service: str | None = None) -> dict[str, Any]:
        names = [service] if service else list(self.settings.catalog)
        lines = sorted((e for n in names for e in list(self.logs[n])), key=lambda e: e["at"])
        return {"schema": model.LOGS_SCHEMA, "project": self.project, "lines": lines}

    # --- on request ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """CPU and memory per running container: one sample each, in parallel, shared by
        browsers asking within STATS_CACHE seconds."""
        from ..live.running import known_containers

        cached = self._stats
        if cached is not None and time.monotonic() - cached[0] < STATS_CACHE:
            return cached[1]
        engine = self.engine
        if engine is None or not self.engine_status["connected"]:
            raise DevenvError("the Docker engine is not reachable")
        running = {n: c for n, c in known_containers(engine, self.settings).items()
                   if c.running}
        with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            raw = dict(zip(running, pool.map(lambda c: engine.stats(c.id), running.values()),
                           strict=True))
        document = {"schema": model.STATS_SCHEMA, "project": self.project,
                    "at": time.time(),
                    "services": [model.stats_entry(n, r) for n, r in raw.items() if r]}
        self._stats = (time.monotonic(), document)
        return document

    def secrets(self) -> dict[str, Any]:
        from ..config.state import setting_or_secret
        from ..live.running import url_host

        settings = self.settings
        host = url_host(settings, self.engine.remote_host if self.engine else None)
        ports = {s["service"]: s["here"] for s in (self.state or {}).get("ports", [])
                 if s["kind"] == "container" and s["here"]}
        catalog = settings.catalog
        urls = {name: catalog.url(name, host, ports.get(name) or settings.port(name),
                                  settings.values, show_secrets=True) for name in catalog}
        # every service that declares a login, as `ports --show-secrets` shows them
        logins = {spec.name: {"user": settings[spec.login[0]],
                              "password": setting_or_secret(settings, spec.login[1])}
                  for spec in catalog.values() if spec.login}
        return {"schema": model.SECRETS_SCHEMA, "project": self.project, "urls": urls,
                "logins": logins}

    @contextlib.contextmanager
    def _one_action(self, what: str) -> Any:
        if not self._action.acquire(blocking=False):
            raise LockedError(f"{self.busy or 'another action'} is running; {what} was not "
                              "started", hint="wait until it ends, then try again")
        self.busy = what
        try:
            yield
        finally:
            self.busy = None
            self._action.release()

    def restart(self, service: str) -> dict[str, Any]:
        from ..stack import usecases as stack

        with self._one_action(f"the restart of {service}"):
            rows = stack.restart(self.ctx, [service])
        self._dirty.set()
        row = rows[0] if rows else None
        return {"schema": model.ACTION_SCHEMA, "action": "restart", "service": service,
                "ok": True, "state": row.state if row else "",
                "seconds_to_ready": row.seconds_to_ready if row else None}

    # --- snapshots (data/ops.py does the work) -----------------------------------------
    def snapshots(self) -> dict[str, Any]:
        from ..data import ops as data

        return model.snapshots_document(self.project, str(self.settings.snapshot_dir),
                                        [s.as_json() for s in data.list_snapshots(self.ctx)],
                                        self.busy)

    def snapshot(self, name: str | None) -> dict[str, Any]:
        from ..data import ops as data

        taken = self._data_action("a snapshot", lambda: data.snapshot(self.ctx, name))
        return {"schema": model.ACTION_SCHEMA, "action": "snapshot", "ok": True,
                "snapshot": taken.as_json()}

    def restore(self, name: str) -> dict[str, Any]:
        from ..data import ops as data

        result = self._data_action(f"the restore of {name}",
                                   # the page names the automatic snapshot: written
                                   # before the answer, not after it as `db restore` does
                                   lambda: data.restore(self.ctx, name, background=False))
        before = result.before
        return {"schema": model.ACTION_SCHEMA, "action": "restore", "ok": True,
                "snapshot": result.snapshot.as_json(),
                "before": before.as_json() if before is not None else None,
                "closed_connections": result.closed,
                "back": (f"devenv db restore {before.name}" if before is not None else "")}

    def _data_action(self, what: str, work: Callable[[], Any]) -> Any:
        """One data action at a time; every browser sees it start and end."""
        try:
            with self._one_action(what):
                self._data_changed()
                return work()
        finally:
            self._dirty.set()  # the services stopped and started: refresh their state
            self._data_changed()

    def _data_changed(self) -> None:
        """Every browser gets the list and whether an action runs."""
        with contextlib.suppress(DevenvError, OSError):
            self._publish("snapshots", self.snapshots())
