"""`devenv watch` / `up --watch`: the API's source live in its running container.

Compose's own `develop.watch` does the work (sync, sync+restart, rebuild): devenv renders
the rules into the API's compose entry (always, for a built API, so `up` and `up --watch`
render the same file and nothing is recreated when switching), runs `docker compose watch
--no-up api` through the engine seam, turns its lines into events, and probes the API after
each one. Compose only prints that a sync or build started; how long it took and whether
the API answers again is what devenv adds.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.settings import Settings
from ..errors import DockerUnavailableError, UsageError
from ..live.output import ContainerOutput
from ..render.watch_rules import WatchPathError, watch_key, watch_rules, watched_service

if TYPE_CHECKING:  # annotations only: compose's client is loaded when watch runs
    from ..context import Context
    from ..engine import Compose, Container, Engine
    from ..probes import WaitResult
    from ..rows import ServiceRow

WATCH_SCHEMA = "devenv.watch/1"
#: sync+restart arrived in Compose 2.23 (watch itself in 2.22)
MIN_COMPOSE = {"sync+restart": (2, 23, 0), "sync": (2, 22, 0)}
#: how long a rebuilt image may take to replace the container before devenv says so
RECREATE_TIMEOUT = 60.0
#: --logs: the most lines caught up after a restart (written while the log was not followed),
#: and how often a stopped service's container is looked for again
LOG_CATCH_UP = 1000
LOG_POLL = 0.3


# --- compose watch's lines -> signals ----------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SIGNALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("enabled", re.compile(r"^Watch enabled")),
    ("sync", re.compile(r'^Syncing "?(?P<svc>[\w.-]+)"? after changes were detected')),
    ("restarting", re.compile(r"Container (?P<svc>\S+)\s+Restarting")),
    ("started", re.compile(r"Container (?P<svc>\S+)\s+Started")),
    ("rebuild", re.compile(r'^Rebuilding service "?(?P<svc>[\w.-]+)"? after changes')),
    ("built", re.compile(r'^service "?(?P<svc>[\w.-]+)"? successfully built')),
    ("build-failed", re.compile(r"^Build failed\.? (?:Error: )?(?P<msg>.*)")),
    ("error", re.compile(r'level=(?:warning|error|fatal) msg="(?P<msg>.*)"')),
    ("fatal", re.compile(r"(?P<msg>none of the selected services is configured for watch.*"
                         r"|unknown (?:docker )?command.*watch.*|.*is not a docker command.*)")),
)


#: compose deletes a deleted source file by `rm` in the container, as the container's user
_DELETE_FAILED = re.compile(r"deleting paths in \S+: exit code \d+")


def _unescape(text: str) -> str:
    """Compose's logfmt message keeps its newlines and tabs escaped."""
    lines = text.replace("\\t", " ").replace("\\n", "\n").splitlines()
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


@dataclass(frozen=True)
class Signal:
    kind: str  # enabled | sync | restarting | started | rebuild | built | build-failed |
    #            error | fatal | output
    text: str = ""


def parse_line(line: str) -> Signal:
    clean = _ANSI.sub("", line).strip()
    for kind, pattern in _SIGNALS:
        match = pattern.search(clean)
        if match:
            groups = match.groupdict()
            return Signal(kind, groups.get("msg") or groups.get("svc") or "")
    return Signal("output", clean)


@dataclass(frozen=True)
class Step:
    """One thing compose did, with how long it took: what devenv probes after."""

    kind: str  # watching | synced | restarted | rebuilt | rebuild-failed | delete-failed |
    #            error
    seconds: float | None = None
    detail: str = ""


@dataclass
class Tracker:
    """Pairs compose's start and end lines into steps with durations. Pure: `now` is given."""

    action: str = "sync+restart"
    pending: str = ""
    began: float = 0.0
    output: list[str] = field(default_factory=list)
    last_error: str = ""

    def feed(self, signal: Signal, now: float) -> Step | None:
        kind = signal.kind
        if kind == "enabled":
            return Step("watching")
        if kind == "sync":
            if self.action == "sync":
                return Step("synced", 0.0)
            self.pending, self.began = "sync", now
            return None
        if kind == "started" and self.pending == "sync":
            self.pending = ""
            return Step("restarted", now - self.began)
        if kind == "rebuild":
            self.pending, self.began, self.output = "rebuild", now, []
            return None
        if kind == "built":
            seconds = now - self.began if self.pending == "rebuild" else None
            self.pending = ""
            return Step("rebuilt", seconds)
        if kind == "build-failed":
            seconds = now - self.began if self.pending == "rebuild" else None
            self.pending, self.last_error = "", signal.text
            tail = "\n".join(self.output[-6:])
            return Step("rebuild-failed", seconds, signal.text + ("\n" + tail if tail else ""))
        if kind == "error":
            # Compose logs a failed build twice: as "Build failed" and as a warning.
            if self.last_error and self.last_error in signal.text:
                return None
            self.pending = ""
            text = _unescape(signal.text)
            if _DELETE_FAILED.search(text):
                return Step("delete-failed", None, text)
            return Step("error", None, text)
        if kind == "output" and self.pending == "rebuild" and signal.text:
            self.output.append(signal.text)
            del self.output[:-40]
        return None


# --- the events devenv reports -----------------------------------------------------------
@dataclass(frozen=True)
class WatchEvent:
    kind: str  # watching | synced | restarted | rebuilt | rebuild-failed | delete-failed |
    #            error | log (a line the service wrote, with --logs)
    service: str
    url: str
    #: how long compose's action took (sync+restart, build + recreate)
    seconds: float | None = None
    #: the API's state after it: ready | exited | not answering | "" (watching)
    state: str = ""
    #: seconds from the action's end until the API answered
    ready_seconds: float | None = None
    detail: str = ""
    at: str = ""
    #: devenv's own sync: the files a batch copied or deleted
    files: int | None = None
    #: devenv's own sync: seconds from the save (the file's time) until it was in the
    #: container; ready_seconds then is the API's own time to answer
    copied_seconds: float | None = None


@dataclass(frozen=True)
class WatchPlan:
    settings: Settings
    rules: tuple[dict[str, Any], ...]
    folder: str
    #: the API runs already: `devenv watch` then starts nothing (and so keeps what the
    #: last `up` chose, e.g. --lan)
    running: bool = False
    #: who syncs: "devenv" (stack/sync.py) or "compose" (develop.watch)
    engine: str = "compose"


def prepare(ctx: Context) -> WatchPlan:
    """Check everything watch needs before anything starts: a built API, its watch paths,
    a Compose with watch. Raises WatchPathError (2), UsageError (2), DockerUnavailable (4)."""
    from ..render.builds import service_build

    settings = ctx.settings()
    spec = settings.catalog[watched_service(settings)]
    build = service_build(settings, spec)
    if build is None:
        source = spec.build.source_setting if spec.build else ""
        raise UsageError(f"the {spec.title} runs the image {settings.image(spec.name)}: "
                         "there is no source to watch",
                         hint=f"set {source or spec.image_key} to the folder with its "
                         f"Dockerfile (or unset {spec.image_key} for the bundled one)")
    rules = watch_rules(settings, build, settings.compose_dir, strict=True)
    if not rules:
        sync = watch_key(settings, "SYNC")
        raise WatchPathError(f"nothing to watch: {sync} is empty and no rebuild file exists",
                             hint=f"set {sync}=.")
    from ..engine import ServiceNotRunningError

    compose = ctx.engine().compose(settings.project)
    check_compose_version(compose.version_tuple(), settings[watch_key(settings, "ACTION")])
    try:
        running = compose.running_container(spec.name) is not None
    except ServiceNotRunningError:
        running = False
    # the dev command (DEVENV_<NAME>_COMMAND) must be the one running too
    command = settings.values.get(f"DEVENV_{spec.name.upper()}_COMMAND")
    return WatchPlan(settings, rules, str(build["context"]),
                     running and rules_rendered(settings.compose_dir, rules, spec.name,
                                                command),
                     sync_engine(settings, ctx.engine().local))


def sync_engine(settings: Settings, local: bool) -> str:
    """DEVENV_API_WATCH_ENGINE: devenv's own sync needs the local engine's socket (a tar
    upload); a remote engine is watched by Compose."""
    wanted = settings.values.get(watch_key(settings, "ENGINE")) or "devenv"
    return wanted if wanted == "compose" or local else "compose"


def rules_rendered(compose_dir: Path, rules: tuple[dict[str, Any], ...], service: str = "",
                   command: str | None = None) -> bool:
    """True when the rendered file holds these rules and, when `command` is given, runs
    that command (`""`: the image's own) for `service`; else `up` renders them first."""
    from ..config.settings import COMPOSE_FILE
    from ..render.templates import quote, quote_list

    try:
        text = (compose_dir / COMPOSE_FILE).read_text(encoding="utf-8")
    except OSError:
        return False
    if command is not None:
        section = _service_section(text, service)
        found = [line.strip() for line in section.splitlines()
                 if line.startswith("    command: ")]
        wanted = [f"command: {quote_list(['sh', '-c', command])}"] if command else []
        if found != wanted:
            return False
    return "    develop:\n" in text and all(
        f"action: {quote(r['action'])}\n          path: {quote(r['path'])}" in text
        for r in rules)


def _service_section(text: str, service: str) -> str:
    """The lines of one service's entry in the rendered file (two-space indented keys)."""
    lines = text.splitlines()
    try:
        start = lines.index(f"  {service}:")
    except ValueError:
        return ""
    end = next((i for i in range(start + 1, len(lines))
                if re.match(r"^ {0,2}\S", lines[i])), len(lines))
    return "\n".join(lines[start + 1:end])


def check_compose_version(version: tuple[int, int, int] | None, action: str) -> None:
    needed = MIN_COMPOSE.get(action, MIN_COMPOSE["sync+restart"])
    if version is not None and version < needed:
        have = ".".join(map(str, version))
        need = ".".join(map(str, needed))
        raise DockerUnavailableError(
            f"Docker Compose {have} cannot watch with {action}: devenv watch needs "
            f"Compose {need} or newer",
            hint="update the docker-compose-plugin package (or Docker Desktop); "
            "everything else in devenv works with this Compose")


@dataclass
class _Watched:
    """The service `follow` watches, where it answers, and its container (a rebuild
    replaces it)."""

    settings: Settings
    service: str
    engine: Engine
    compose: Compose
    container: Container
    row: ServiceRow
    output: ContainerOutput  # what the service and compose write, shown through the one mask


def follow(ctx: Context | None, plan: WatchPlan, service: str = "",
           engine: Engine | None = None, logs: bool = False) -> Iterator[WatchEvent]:
    """Run `docker compose watch` on the running API and yield an event per action, the
    API probed after each; with `logs`, also a `log` event per line the API writes (a dev
    server's compile errors among them). Ends only by Ctrl-C (KeyboardInterrupt), which stops
    watch and leaves every container running, or when compose watch itself stops
    (ComposeError). The loop is here; what a line means is Tracker, and what follows an
    action (the probe, and what its outcome says) is _after_step."""
    from ..errors import ComposeError

    watched = _watched(ctx, plan.settings, service, engine)
    settings, service = watched.settings, watched.service
    tracker = Tracker(action=settings[watch_key(settings, "ACTION")])
    process = watched.compose.watch([service])
    own_logs = ServiceLogs(watched.engine, settings.project, service, watched.container.id,
                           watched.output) if logs else None
    recent: list[str] = []
    try:
        for source, line in _lines(process, own_logs, watched.output):
            if source == "log":
                yield WatchEvent("log", service, watched.row.url, detail=line,
                                 at=time.strftime("%H:%M:%S"))
                continue
            recent.append(line)
            del recent[:-20]
            signal = parse_line(line)
            if signal.kind == "fatal":
                raise ComposeError(f"docker compose watch refused: {signal.text}",
                                   hint="run `devenv up --watch` to render the watch rules")
            step = tracker.feed(signal, time.monotonic())
            if step is None:
                continue
            if step.kind == "watching":
                yield WatchEvent("watching", service, watched.row.url,
                                 at=time.strftime("%H:%M:%S"),
                                 detail=describe_rules(plan.rules))
                continue
            yield _after_step(watched, step)
        code = process.returncode()
        raise ComposeError(f"docker compose watch stopped (exit {code})",
                           detail="\n".join(_ANSI.sub("", x) for x in recent),
                           hint="run `devenv watch` again; `devenv status` shows the stack")
    finally:
        process.stop()


def _watched(ctx: Context | None, settings: Settings, service: str,
             engine: Engine | None) -> _Watched:
    from ..live.status import live_rows
    service = service or watched_service(settings)
    if engine is None:
        assert ctx is not None, "follow needs a context or an engine"
        engine = ctx.engine()
    compose = engine.compose(settings.project, settings.compose_file)
    container = compose.running_container(service)
    row = next((r for r in live_rows(engine, settings, check=False)
                if r.service == service), None)
    if row is None:
        raise UsageError(f"{service} publishes no port to probe",
                         hint="run `devenv up --only api` to recreate it as rendered")
    return _Watched(settings, service, engine, compose, container, row,
                    ContainerOutput(settings))


def _after_step(watched: _Watched, step: Step) -> WatchEvent:
    """Probe the service after a sync, restart or rebuild: the event, with how long the
    action took and how long the service then took to answer."""
    seconds = step.seconds
    if step.kind == "rebuilt":
        # Compose recreates the container after the build and says nothing: wait
        # for the new one, or the probe would ask the old one.
        watched.container, waited = _await_new_container(watched.compose, watched.service,
                                                         watched.container.id)
        seconds = (seconds or 0.0) + waited
    return probe_event(watched, step, seconds)


def probe_event(watched: _Watched, step: Step, seconds: float | None,
                files: int | None = None, copied_seconds: float | None = None) -> WatchEvent:
    """The watched service probed on its own protocol after `step` (both watch engines):
    the event, with the action's seconds and how long the service then took to answer."""
    from ..live.running import dead_services
    from ..probes import Target, wait_until_ready

    settings, service, engine = watched.settings, watched.service, watched.engine
    started = time.monotonic()
    wait = wait_until_ready(
        [Target(service, settings.catalog[service].probe, watched.row.host, watched.row.port)],
        settings.values, min(settings.wait_timeout, 60.0),
        check_alive=lambda: dead_services(engine, settings.project, [service]))
    ready = wait.ready.get(service)
    state, detail = _outcome(watched, step, wait)
    return WatchEvent(step.kind, service, watched.row.url, _round(seconds), state,
                      _round(time.monotonic() - started) if ready is not None else None,
                      detail, time.strftime("%H:%M:%S"), files=files,
                      copied_seconds=_round(copied_seconds))


def _outcome(watched: _Watched, step: Step, wait: WaitResult) -> tuple[str, str]:
    """ready; exited (with its last log lines); or not answering (with the last probe's
    words)."""
    service = watched.service
    if service in wait.ready:
        return "ready", step.detail
    if service in wait.exited:
        logs = watched.output.last_lines(watched.engine, watched.container.id, 10).rstrip()
        return "exited", "\n".join(x for x in (
            step.detail, f"last log lines of {service}:\n{logs}" if logs else "") if x)
    return "not answering", "\n".join(
        x for x in (step.detail, wait.timed_out.get(service, "")) if x)


def _lines(process: Any, own_logs: ServiceLogs | None,
           output: ContainerOutput) -> Iterator[tuple[str, str]]:
    """("compose", line) for each line of compose watch (a build's output among them) and,
    when the service's own log is followed, ("log", line) for each line it writes, in the
    order they come; all masked."""
    if own_logs is None:
        for line in process.lines():
            yield "compose", output.mask(line)
        return
    import queue
    import threading

    items: queue.Queue[tuple[str, Any]] = queue.Queue()

    def read() -> None:
        try:
            for line in process.lines():
                items.put(("compose", output.mask(line)))
            items.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            items.put(("raise", exc))

    threading.Thread(target=read, name="watch-compose", daemon=True).start()
    own_logs.start(lambda line: items.put(("log", line)))
    try:
        while True:
            source, value = items.get()
            if source == "end":
                return
            if source == "raise":
                raise value
            yield source, value
    finally:
        own_logs.stop()


class ServiceLogs:
    """The watched service's own log lines from now on, secrets masked, followed across its
    restarts (sync+restart) and recreations (rebuild), a crash at start included: what a dev
    server prints, e.g. tsc's errors, shows where the developer looks."""

    def __init__(self, engine: Any, project: str, service: str, container_id: str,
                 output: ContainerOutput):
        import threading

        self._engine, self._project, self._service = engine, project, service
        self._container_id, self._output = container_id, output
        self._stopped = threading.Event()
        self._stream: Any = None

    def start(self, put: Any) -> None:
        import threading

        threading.Thread(target=self._run, args=(put,), name="watch-logs", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def _run(self, put: Any) -> None:
        import contextlib

        from ..errors import DevenvError

        current = self._container_id
        since: float | None = None  # the first stream: only what is written from now on
        while not self._stopped.is_set():
            # A stream ends when the container stops. The next one, of the same container
            # restarted or of its replacement, starts where it ended: the lines written
            # meanwhile come too (up to LOG_CATCH_UP), and a container that crashed at once
            # still gives its last words (a stopped container's log is read, not followed).
            with contextlib.suppress(DevenvError, OSError):  # the engine away: try again
                stream = self._output.follow(self._engine, current, tail=0 if since is None
                                             else LOG_CATCH_UP, since=since)
                self._stream = stream
                if self._stopped.is_set():
                    stream.close()
                    return
                for line in stream:
                    put(line)
            since = time.time()
            self._stopped.wait(LOG_POLL)
            current = self._service_container() or current

    def _service_container(self) -> str | None:
        """The service's container now: the running one, else the newest."""
        from ..errors import DevenvError

        try:
            found = [c for c in self._engine.containers(self._project)
                     if c.service == self._service]
        except DevenvError:
            return None
        running = [c for c in found if c.running]
        return (running or found)[0].id if found else None


def _await_new_container(compose: Any, service: str, old_id: str) -> tuple[Any, float]:
    began = time.monotonic()
    while time.monotonic() - began < RECREATE_TIMEOUT:
        try:
            current = compose.running_container(service)
        except UsageError:
            current = None
        if current is not None and current.id != old_id:
            return current, time.monotonic() - began
        time.sleep(0.1)
    return compose.running_container(service), time.monotonic() - began


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# --- formatting --------------------------------------------------------------------------
def describe_rules(rules: tuple[dict[str, Any], ...]) -> str:
    syncs = [f"{r['path']} -> {r['target']} ({r['action']})" for r in rules
             if r["action"] != "rebuild"]
    rebuilds = [posixpath.basename(r["path"]) for r in rules if r["action"] == "rebuild"]
    parts = [f"sync {', '.join(syncs)}"] if syncs else []
    if rebuilds:
        parts.append(f"rebuild on {', '.join(rebuilds)}")
    return "; ".join(parts)


_WHAT = {"synced": "synced", "restarted": "synced and restarted",
         "rebuilt": "rebuilt and recreated", "rebuild-failed": "rebuild FAILED",
         "delete-failed": "a deleted file is still in the container", "error": "error",
         "skipped": "not synced"}


def format_event(event: WatchEvent) -> str:
    if event.kind == "watching":
        return (f"watching {event.service}: {event.detail}\n"
                "Ctrl-C stops watching; the stack keeps running")
    if event.kind == "log":
        return f"{event.service} | {event.detail}"
    took = f" in {event.seconds:.2f} s" if event.seconds is not None else ""
    files = f" {event.files} file{'s' if event.files != 1 else ''}" if event.files else ""
    line = f"{event.at} {event.service}: {_WHAT.get(event.kind, event.kind)}{files}{took}"
    if event.copied_seconds is not None:
        # what is whose: devenv's part ends with the copy, the rest is the API's
        line += f" (in the container {event.copied_seconds:.2f} s after the save)"
    if event.kind == "skipped":
        line = line.rstrip()
    elif event.state == "ready":
        line += f"; ready after {event.ready_seconds:.2f} s at {event.url}"
    else:
        line += f"; {event.state}"
    if event.kind == "rebuild-failed":
        line += " (the running container keeps serving; save again to retry)"
    elif event.kind == "delete-failed":
        line += (" (the container's user may not delete it there, so the old copy keeps "
                 "serving; restore the file, or let the image's user own its folder, e.g. "
                 "COPY --chown)")
    elif event.state == "exited":
        line += " (fix or restore the file; the next save syncs and restarts it)"
    if event.detail:
        line += "\n" + "\n".join("  " + x for x in event.detail.splitlines())
    return line


def format_event_json(event: WatchEvent) -> str:
    import json

    return json.dumps({"schema": WATCH_SCHEMA, **asdict(event)})
