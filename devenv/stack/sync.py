"""devenv's own sync engine for `devenv watch` (DEVENV_API_WATCH_ENGINE=devenv).

Compose's develop.watch waits for saves to settle for a fixed half second before it copies;
this engine watches the build folder itself (watchfiles: inotify), waits only
DEVENV_API_WATCH_DEBOUNCE_MS of quiet, and puts each batch into the running container as
one tar, owned by the container's user: with the sync action through an unpacker it keeps
running in the container (_Receiver: a write into a pipe), else (or when the container has
no sh, head and tar) in one Engine API request, as `docker cp` does. Deletes are one `rm`
in the container; with sync+restart the container is then restarted. A change to a
rebuild file (Dockerfile, manifests) is still Compose's: `docker compose up --build`.

The events and their probe are watch.py's, so `--json`, `--logs` and the text read the
same whichever engine runs. What a batch means is syncplan.py.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ..errors import DevenvError
from ..render.watch_rules import watch_key
from .syncplan import Batch, DockerIgnore, SyncRule, archive, owner_of, plan_batch, rules_of
from .watch import (
    ServiceLogs,
    Step,
    WatchEvent,
    WatchPlan,
    _round,
    _Watched,
    _watched,
    describe_rules,
    probe_event,
)

if TYPE_CHECKING:
    from ..context import Context
    from ..engine import Engine

#: the longest a burst of saves (a branch switch) is gathered into one batch
BURST_MS = 1600
#: how often the watcher wakes without changes, to see the folder is still there
WAKE_MS = 500


class WatchFolderGoneError(DevenvError):
    """The watched build folder was deleted or moved while watching."""


@dataclass
class _Sync:
    """The sync engine's state: the rules, the container's user, what is left to delete."""

    watched: _Watched
    syncs: list[SyncRule]
    rebuilds: list[str]
    context: str
    action: str
    owner: tuple[int, int] = (0, 0)
    #: deletes that could not run yet (the container was stopped): tried with the next batch
    deletes: list[str] = field(default_factory=list)
    #: the unpacker running in the container (the sync action only), None: uploads
    receiver: _Receiver | None = None
    #: the container whose unpacker could not start: it gets uploads
    no_receiver: str = ""


#: Runs in the container as root: a batch is its size in bytes on a line, then that many
#: bytes of tar, unpacked at /; "ok" once done. sh, head -c and tar only (a BusyBox image
#: has them too); anything else ends it, and the batch goes as an upload.
RECEIVER = 'while IFS= read -r n; do head -c "$n" | tar -xf - -C / || exit 1; echo ok; done'
#: seconds a batch may take to go through the unpacker (the Engine API upload's own bound)
RECEIVER_TIMEOUT = 120.0


class _Receiver:
    """The unpacker `watch` keeps running in the container for the sync action: a batch
    costs a write into a pipe and one tar process in the container, where an Engine API
    upload costs about 40 ms (the engine starts a chrooted unpacker for each)."""

    def __init__(self, engine: Engine, container_id: str):
        self.container_id = container_id
        self.process = engine.exec_pipe(container_id, ["sh", "-c", RECEIVER])

    def send(self, data: bytes, timeout: float = RECEIVER_TIMEOUT) -> bool:
        """Unpack one tar in the container; False (the unpacker is then done for) when it
        ended, failed or did not answer in time."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        deadline = time.monotonic() + timeout
        try:
            _write_all(stdin, b"%d\n" % len(data) + data, deadline)
            return _read_line(stdout, deadline) == b"ok\n"
        except OSError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(2)
        except Exception:  # noqa: BLE001 - TimeoutExpired, or an interrupt: end it anyway
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _write_all(pipe: IO[bytes], data: bytes, deadline: float) -> None:
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
            raise TimeoutError("the unpacker did not read the batch in time")
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _read_line(pipe: IO[bytes], deadline: float) -> bytes:
    fd, line = pipe.fileno(), b""
    while not line.endswith(b"\n"):
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError("the unpacker did not answer in time")
        chunk = os.read(fd, 64)
        if not chunk:
            return line  # it ended
        line += chunk
    return line


def _receiver(state: _Sync) -> _Receiver | None:
    """The unpacker for the container synced now: kept, started (and tried with an empty
    tar), or None when this container cannot run one."""
    watched = state.watched
    cid = watched.container.id
    if state.action != "sync" or state.no_receiver == cid:
        return None  # sync+restart: each restart would end it
    if state.receiver is not None and state.receiver.container_id == cid:
        return state.receiver
    _drop_receiver(state)
    try:
        receiver = _Receiver(watched.engine, cid)
    except DevenvError:
        receiver = None
    if receiver is None or not receiver.send(archive(Batch(), 0, 0)[0], timeout=20):
        if receiver is not None:
            receiver.close()
        state.no_receiver = cid
        return None
    state.receiver = receiver
    return receiver


def _drop_receiver(state: _Sync) -> None:
    if state.receiver is not None:
        state.receiver.close()
        state.receiver = None


def follow(ctx: Context | None, plan: WatchPlan, service: str = "",
           engine: Engine | None = None, logs: bool = False) -> Iterator[WatchEvent]:
    """As watch.follow, with devenv's own sync: an event per batch of saves, the API probed
    after each. Ends by Ctrl-C (KeyboardInterrupt: every container keeps running) or
    WatchFolderGoneError when the build folder is deleted (nothing is deleted in the
    container then)."""

    watched = _watched(ctx, plan.settings, service, engine)
    settings = watched.settings
    syncs, rebuilds = rules_of(plan.rules, settings.compose_dir)
    context = os.path.normpath(os.path.join(settings.compose_dir, plan.folder))
    state = _Sync(watched, syncs, rebuilds, context,
                  settings[watch_key(settings, "ACTION")])
    state.owner = _owner(watched)
    _receiver(state)  # started before the first save: a batch then costs a write
    debounce = int(settings.values.get(watch_key(settings, "DEBOUNCE_MS")) or 30)
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop, watching = threading.Event(), threading.Event()
    threading.Thread(target=_watch_folder, args=(context, debounce, items, stop, watching),
                     name="watch-files", daemon=True).start()
    # the folder is watched once the watcher first wakes: a save before would be missed
    watching.wait(WAKE_MS / 1000 + 10)
    own_logs = ServiceLogs(watched.engine, settings.project, watched.service,
                           watched.container.id, watched.output) if logs else None
    if own_logs is not None:
        own_logs.start(lambda line: items.put(("log", line)))
    ignore = DockerIgnore.of(context)
    try:
        yield WatchEvent("watching", watched.service, watched.row.url,
                         at=time.strftime("%H:%M:%S"),
                         detail=describe_rules(plan.rules) + f"; devenv's sync, {debounce} ms "
                         "after the last save")
        while True:
            kind, value = items.get()
            if kind == "log":
                yield WatchEvent("log", watched.service, watched.row.url, detail=value,
                                 at=time.strftime("%H:%M:%S"))
                continue
            if kind == "raise":
                raise value
            if kind == "gone":
                raise _gone(context)
            # the batch, and any that came while it was gathered: one copy, one restart
            paths = set(value)
            with contextlib.suppress(queue.Empty):
                while True:
                    more = items.get_nowait()
                    if more[0] == "batch":
                        paths |= set(more[1])
                    else:
                        items.put(more)
                        break
            if not os.path.isdir(context):
                raise _gone(context)
            batch = plan_batch(paths, syncs, rebuilds, context, ignore)
            if any(os.path.basename(p) == ".dockerignore" for p in paths):
                ignore = DockerIgnore.of(context)
            yield from _apply(state, batch)
    finally:
        stop.set()
        _drop_receiver(state)
        if own_logs is not None:
            own_logs.stop()


def _gone(context: str) -> WatchFolderGoneError:
    """The folder's deletes are never applied: the container keeps every file."""
    return WatchFolderGoneError(
        f"the watched folder {context} is gone: watch stopped; nothing was deleted in the "
        "container", hint="put the folder back (or point the build setting at its new "
        "place) and run `devenv watch` again")


def _watch_folder(context: str, debounce: int, items: queue.Queue[tuple[str, Any]],
                  stop: threading.Event, watching: threading.Event) -> None:
    """The watcher thread: ("batch", paths) per batch of changes, ("gone", None) when the
    folder disappears, ("raise", exc) when watching fails."""
    from watchfiles import watch

    try:
        for changes in watch(context, debounce=BURST_MS, step=debounce, stop_event=stop,
                             rust_timeout=WAKE_MS, yield_on_timeout=True,
                             raise_interrupt=False, watch_filter=None,
                             ignore_permission_denied=True):
            watching.set()
            if not os.path.isdir(context):
                items.put(("gone", None))
                return
            if changes:
                items.put(("batch", [path for _change, path in changes]))
    except FileNotFoundError:
        items.put(("gone", None))
    except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
        items.put(("raise", exc))
    finally:
        watching.set()


def _owner(watched: _Watched) -> tuple[int, int]:
    """The uid:gid of the container's user: synced files are its own (root's when its
    name is not in the container's /etc/passwd)."""
    engine, cid = watched.engine, watched.container.id
    user = str(((engine.inspect(cid).get("Config") or {}).get("User")) or "")
    if not user or all(part.isdigit() for part in user.split(":")):
        owner = owner_of(user, engine.read_file(cid, "/etc/passwd") if user else None, None)
    else:
        owner = owner_of(user, engine.read_file(cid, "/etc/passwd"),
                         engine.read_file(cid, "/etc/group"))
    return owner or (0, 0)


def _apply(state: _Sync, batch: Batch) -> Iterator[WatchEvent]:
    """Copy, delete, restart (or rebuild), then probe: the events of one batch."""
    watched = state.watched
    notes = list(batch.skipped)
    if batch.rebuild:
        yield _rebuild(state, batch.rebuild, notes)
        return
    deletes = state.deletes + batch.delete
    state.deletes = []
    if not (batch.copy or deletes):
        if notes:
            yield WatchEvent("skipped", watched.service, watched.row.url,
                             detail="\n".join(notes), at=time.strftime("%H:%M:%S"))
        return
    began = time.monotonic()
    copied_at: float | None = None
    try:
        if batch.copy:
            notes += _copy(state, batch)
            copied_at = time.time()
        failed = _delete(state, deletes)
        if state.action == "sync+restart":
            watched.engine.restart([watched.container])
    except DevenvError as exc:
        yield WatchEvent("error", watched.service, watched.row.url,
                         _round(time.monotonic() - began), detail="\n".join(
                             [exc.message, *notes, "save again to retry"]),
                         at=time.strftime("%H:%M:%S"))
        return
    kind = "restarted" if state.action == "sync+restart" else "synced"
    if failed:
        kind, notes = "delete-failed", [failed, *notes]
    since_save = (copied_at - batch.saved_at if copied_at is not None
                  and batch.saved_at is not None else None)
    yield _probe(state, Step(kind, time.monotonic() - began, "\n".join(notes)),
                 files=len([c for c in batch.copy if not c[2]]) + len(deletes),
                 copied_seconds=since_save)


def _copy(state: _Sync, batch: Batch) -> list[str]:
    """One PUT of the batch's tar; a container replaced meanwhile (a restart or a
    recreate mid-copy) is looked up again and the tar sent once more."""
    from ..engine import ContainerGoneError

    watched = state.watched
    data, lost = archive(batch, *state.owner)
    notes = [f"{x}: vanished or unreadable while copying; not synced" for x in lost]
    receiver = _receiver(state)
    if receiver is not None:
        if receiver.send(data):
            return notes
        _drop_receiver(state)  # it ended (a restart, a stop): this batch is uploaded
    try:
        watched.engine.put_archive(watched.container.id, "/", data)
    except ContainerGoneError:
        watched.container = watched.compose.running_container(watched.service)
        state.owner = _owner(watched)
        data, _lost = archive(batch, *state.owner)
        watched.engine.put_archive(watched.container.id, "/", data)
        notes.append(f"{watched.service}'s container was replaced during the copy; copied "
                     "into the new one")
    return notes


def _delete(state: _Sync, deletes: list[str]) -> str:
    """`rm -rf` of the deleted paths in the container, as root (who wrote them); only
    paths under a sync rule's target ever get here. The error line, or ""."""
    if not deletes:
        return ""
    watched = state.watched
    for path in deletes:
        assert any(path.startswith(r.target.rstrip("/") + "/") for r in state.syncs), path
    try:
        result = watched.engine.exec_run(watched.container.id, ["rm", "-rf", "--", *deletes],
                                         user="0")
    except DevenvError as exc:
        if "is not running" in exc.message:
            state.deletes = deletes  # a stopped container: deleted with the next batch
            return (f"{len(deletes)} deleted file(s) stay in the stopped container until "
                    "the next save")
        return f"deleting in {watched.service} failed: {exc.message}"
    if result.returncode:
        return (f"deleting paths in {watched.service}: exit code {result.returncode}: "
                f"{result.stdout.strip()[:300]}")
    return ""


def _rebuild(state: _Sync, names: list[str], notes: list[str]) -> WatchEvent:
    """A rebuild file changed: Compose builds the image and recreates the container (the
    old one keeps serving when the build fails)."""
    from ..errors import ComposeError

    watched = state.watched
    began = time.monotonic()
    try:
        watched.compose.up([watched.service], build=True)
    except ComposeError as exc:
        detail = "\n".join(x for x in (exc.message, exc.detail or "", *notes) if x)
        return _probe(state, Step("rebuild-failed", time.monotonic() - began, detail))
    watched.container = watched.compose.running_container(watched.service)
    state.owner = _owner(watched)
    return _probe(state, Step("rebuilt", time.monotonic() - began,
                              "\n".join([f"after {', '.join(names)} changed", *notes])))


def _probe(state: _Sync, step: Step, files: int | None = None,
           copied_seconds: float | None = None) -> WatchEvent:
    """The API probed on its own protocol after the step: the event."""
    return probe_event(state.watched, step, step.seconds, files, copied_seconds)
