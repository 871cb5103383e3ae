"""The Engine API as devenv needs it: reads (containers, ports, health, logs, stats, the
event stream), and the few writes that need no compose file (signals, restarts; stopping
and removing a project for `down`). 404 and Docker's errors become devenv's here."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import (
    ComposeError,
    DockerUnavailableError,
)
from .dockercontext import EngineTarget, resolve_engine
from .lines import LINE_LIMIT, LineSplitter
from .models import (
    PROJECT_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
    CommandResult,
    Container,
    EngineInfo,
    Published,
    Removed,
)
from .transport import (
    _docker_cli,
    _DockerSDK,
    _last_line,
    _Stream,
    _text,
    _Transport,
    _UnixSocket,
    _unreachable,
    remote_host_of,
    unreachable_hint,
)

if TYPE_CHECKING:
    import subprocess

    from .compose import Compose

#: a container's last log lines (not followed) come within this
LOGS_TIMEOUT = 30.0

class _NotFound(Exception):
    pass


class ContainerGoneError(ComposeError):
    """The container is no longer there (removed or recreated meanwhile)."""


class _API:
    """Engine API calls over a transport; 404 becomes _NotFound, other errors ours."""

    def __init__(self, transport: _Transport, target: EngineTarget):
        self._transport = transport
        self.target = target

    def call(self, method: str, path: str, query: Mapping[str, str] | None = None,
             timeout: float = 10.0, ok: tuple[int, ...] = ()) -> bytes:
        try:
            status, body = self._transport.request(method, path, query, timeout)
        except OSError as exc:
            raise _unreachable(self.target, exc) from exc
        if status == 404:
            raise _NotFound(path)
        if status >= 400 and status not in ok:
            raise ComposeError(f"Docker engine answered {status} to {method} {path}: "
                               f"{_engine_message(body)}")
        return body

    def stream(self, path: str, query: Mapping[str, str] | None = None,
               timeout: float | None = None) -> _Stream:
        try:
            stream = self._transport.stream(path, query, timeout)
        except OSError as exc:
            raise _unreachable(self.target, exc) from exc
        if stream.status == 404:
            raise _NotFound(path)
        if stream.status >= 400:
            raise ComposeError(f"Docker engine answered {stream.status} to GET {path}")
        return stream

    def get_bytes(self, path: str, query: Mapping[str, str] | None = None) -> bytes:
        return self.call("GET", path, query)

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        return json.loads(self.get_bytes(path, query) or b"null")


def _engine_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "")).strip()
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:200]


class Engine:
    """Docker, as devenv needs it. Build with `connect(environ)`."""

    def __init__(self, api: _API, environ: Mapping[str, str]):
        self._api = api
        self._environ = dict(environ)
        #: the engine and how it was chosen (DOCKER_HOST, a Docker context, the default)
        self.target = api.target
        self.docker_host = api.target.host
        self.remote_host = remote_host_of(self.docker_host)

    # --- reads ------------------------------------------------------------------------
    def info(self) -> EngineInfo:
        data = self._api.get("/version")
        return EngineInfo(
            version=str(data.get("Version", "?")),
            api_version=str(data.get("ApiVersion", "0.0")),
            remote_host=self.remote_host,
        )

    def system_info(self) -> dict[str, Any]:
        return dict(self._api.get("/info") or {})

    def containers(self, project: str | None = None, all: bool = True) -> list[Container]:
        """Containers of one Compose project (or every container), from one list call."""
        query: dict[str, str] = {"all": "1" if all else "0"}
        if project is not None:
            query["filters"] = json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})
        return [_container(item) for item in self._api.get("/containers/json", query)]

    def inspect(self, container_id: str) -> dict[str, Any]:
        try:
            return dict(self._api.get(f"/containers/{container_id}/json"))
        except _NotFound:
            return {}

    def port_bindings(self, container: Container) -> list[int]:
        """Host ports a stopped or created container will publish when it starts."""
        if container.running:
            return [p.host_port for p in container.ports]
        bindings = (self.inspect(container.id).get("HostConfig") or {}).get("PortBindings") or {}
        ports = []
        for entries in bindings.values():
            for entry in entries or []:
                text = str(entry.get("HostPort", ""))
                if text.isascii() and text.isdigit():
                    ports.append(int(text))
        return ports

    def network(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._api.get(f"/networks/{urllib.parse.quote(name)}"))
        except _NotFound:
            return None

    def image_present(self, reference: str) -> bool:
        try:
            self._api.get(f"/images/{urllib.parse.quote(reference, safe='')}/json")
            return True
        except _NotFound:
            return False

    def volumes(self, project: str) -> list[str]:
        query = {"filters": json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})}
        data = self._api.get("/volumes", query) or {}
        return sorted(v["Name"] for v in data.get("Volumes") or [])

    def volume_sizes(self, project: str) -> dict[str, int]:
        """Volume name -> bytes, for the project's volumes (the engine's disk usage
        report; a volume it has not measured is left out)."""
        names = set(self.volumes(project))
        data = self._api.get("/system/df", {"type": "volume"}) or {}
        return {v["Name"]: int((v.get("UsageData") or {}).get("Size", -1))
                for v in data.get("Volumes") or []
                if v.get("Name") in names and int((v.get("UsageData") or {}).get("Size", -1)) >= 0}

    def logs(self, container_id: str, tail: int = 20) -> str:
        """A container's last `tail` log lines, read as a stream: however long its lines,
        no more than `tail` of them, each cut at LINE_LIMIT, are held."""
        try:
            stream = self._api.stream(f"/containers/{container_id}/logs",
                                      {"stdout": "1", "stderr": "1", "tail": str(tail)},
                                      timeout=LOGS_TIMEOUT)
        except _NotFound:
            return ""
        last = collections.deque(LogStream(stream, self._api.target), maxlen=max(tail, 0))
        return "".join(line + "\n" for line in last)

    def stats(self, container_id: str) -> dict[str, Any]:
        """One sample of a container's CPU and memory (the engine waits ~1 s for the CPU
        delta); {} when the container is gone."""
        try:
            return dict(self._api.get(f"/containers/{container_id}/stats", {"stream": "0"})
                        or {})
        except _NotFound:
            return {}

    def events(self, project: str | None = None) -> EventStream:
        """Docker's event stream of container events (of one project), as it happens.
        Iterating raises DockerUnavailableError when the engine goes away."""
        filters: dict[str, list[str]] = {"type": ["container"]}
        if project is not None:
            filters["label"] = [f"{PROJECT_LABEL}={project}"]
        stream = self._api.stream("/events", {"filters": json.dumps(filters)})
        return EventStream(stream, self._api.target)

    def follow_logs(self, container_id: str, tail: int = 100, since: float | None = None,
                    limit: int = LINE_LIMIT) -> LogStream:
        """A container's log lines as they are written, until it stops or close(); a line
        longer than `limit` bytes comes cut (engine/lines.py)."""
        query = {"stdout": "1", "stderr": "1", "follow": "1", "tail": str(tail)}
        if since is not None:
            query["since"] = f"{since:.3f}"
        try:
            stream = self._api.stream(f"/containers/{container_id}/logs", query)
        except _NotFound:
            stream = _Stream(404, iter(()), lambda: None)
        return LogStream(stream, self._api.target, limit)

    # --- writes that need no compose file -------------------------------------------
    def signal(self, container_id: str, signal: str) -> None:
        """Send a signal; a container that is gone (recreated meanwhile) is no error."""
        with contextlib.suppress(_NotFound):
            self._api.call("POST", f"/containers/{container_id}/kill", {"signal": signal})

    def restart(self, containers: Sequence[Container], stop_timeout: int = 10) -> None:
        """Restart containers at once on the Engine API (what `docker compose restart`
        does, without needing the compose file to still hold them)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(c: Container) -> None:
            try:
                self._api.call("POST", f"/containers/{c.id}/restart", {"t": str(stop_timeout)},
                               timeout=stop_timeout + 30)
            except _NotFound:
                raise ComposeError(f"{c.service}'s container {c.name} is gone",
                                   hint="start it again with `devenv up`") from None
            except ComposeError as exc:
                exc.hint = exc.hint or (f"read `devenv logs {c.service}`; `devenv up` "
                                        "recreates it")
                raise

        with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
            list(pool.map(one, containers))

    def remove_containers(self, containers: Sequence[Container]) -> None:
        """Remove stopped containers (e.g. ones whose network was pruned: they can never
        start again, and compose recreates them; their volumes stay)."""
        for c in containers:
            with contextlib.suppress(_NotFound):
                self._api.call("DELETE", f"/containers/{c.id}")

    def remove_project(self, project: str, volumes: bool = False,
                       stop_timeout: int = 10) -> Removed:
        """What `docker compose down [-v] --remove-orphans` does, straight on the Engine API:
        stop every container of the project at once (each with its own stop signal and
        grace period), remove them, then the project's networks (never an external one)
        and, if asked, its volumes: the named ones of the project and the anonymous ones
        of its containers (an image's `VOLUME` that no named volume covers holds data too;
        the engine removes them with the container, as `compose down -v` does). No compose
        process.

        A network that another project still uses is kept (the engine refuses with 403),
        as `docker compose down` keeps it with a warning: the rest is removed all the same
        and the result says which network was kept and who uses it."""
        from concurrent.futures import ThreadPoolExecutor

        containers = self.containers(project)

        def stop_and_remove(c: Container) -> None:
            if c.running or c.state in ("restarting", "paused"):
                self._api.call("POST", f"/containers/{c.id}/stop", {"t": str(stop_timeout)},
                               timeout=stop_timeout + 30, ok=(304,))
            with contextlib.suppress(_NotFound):  # already gone: another down, auto-remove
                self._api.call("DELETE", f"/containers/{c.id}",
                               {"force": "1", **({"v": "1"} if volumes else {})})

        with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
            list(pool.map(stop_and_remove, containers))
        label = json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})
        kept: dict[str, list[str]] = {}
        for network in self._api.get("/networks", {"filters": label}) or []:
            try:
                self._api.call("DELETE", f"/networks/{network['Id']}")
            except _NotFound:
                pass
            except ComposeError:  # 403: active endpoints, another project's containers
                users = (self.network(str(network["Id"])) or {}).get("Containers") or {}
                kept[str(network.get("Name", network["Id"]))] = sorted(
                    str(info.get("Name", "?")) for info in users.values())
        if volumes:
            for name in self.volumes(project):
                with contextlib.suppress(_NotFound):
                    self._api.call("DELETE", f"/volumes/{urllib.parse.quote(name)}")
        return Removed(containers, kept)

    # --- data: containers stopped and started, volumes, one-off helpers, exec ----------
    def stop(self, container_id: str, timeout: int = 30) -> None:
        with contextlib.suppress(_NotFound):
            self._api.call("POST", f"/containers/{container_id}/stop", {"t": str(timeout)},
                           timeout=timeout + 30, ok=(304,))

    def start(self, container_id: str) -> None:
        self._api.call("POST", f"/containers/{container_id}/start", timeout=60, ok=(304,))

    def start_created(self, container_id: str) -> None:
        """Start a container `compose create` made; a port taken meanwhile is PortRaceError,
        as from `compose up`."""
        from .compose import compose_error

        try:
            self.start(container_id)
        except ComposeError as exc:
            raise compose_error("start", exc.message, self.target) from None

    def volume_exists(self, name: str) -> bool:
        try:
            self._api.get(f"/volumes/{urllib.parse.quote(name)}")
            return True
        except _NotFound:
            return False

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """A named volume with labels (Compose's own, so that it adopts the volume)."""
        argv = ["volume", "create"]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        result = self._cli([*argv, name])
        if result.returncode:
            raise ComposeError(f"cannot create volume {name}: {_last_line(result.stderr)}")

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(_NotFound):
            self._api.call("DELETE", f"/volumes/{urllib.parse.quote(name)}")

    def image_env(self, reference: str) -> dict[str, str]:
        """The environment an image sets (e.g. PG_MAJOR), {} when the image is missing."""
        try:
            data = self._api.get(f"/images/{urllib.parse.quote(reference, safe='')}/json")
        except _NotFound:
            return {}
        pairs = ((data.get("Config") or {}).get("Env") or [])
        return dict(item.partition("=")[::2] for item in pairs)

    def image_id(self, reference: str) -> str | None:
        """The image's ID (sha256:...), None when it is not on this engine."""
        try:
            data = self._api.get(f"/images/{urllib.parse.quote(reference, safe='')}/json")
        except _NotFound:
            return None
        return str(data.get("Id") or "") or None

    def _send(self, method: str, path: str, query: Mapping[str, str] | None = None,
              body: Any = b"", content_type: str = "application/json",
              timeout: float = 30.0) -> bytes:
        """An Engine API call with a body (JSON, or (file, size)), local socket only."""
        transport = self._api._transport
        assert isinstance(transport, _UnixSocket)
        try:
            status, answer = transport.request(method, path, query, timeout, body,
                                               content_type)
        except OSError as exc:
            raise _unreachable(self.target, exc) from exc
        if status >= 400:
            raise ComposeError(f"Docker engine answered {status} to {method} {path}: "
                               f"{_engine_message(answer)}")
        return answer

    def fill_new_volume(self, name: str, labels: Mapping[str, str], image: str, target: str,
                        archive: BinaryIO, size: int) -> bool:
        """Create the volume `name` and unpack a tar into it without starting a container:
        a container of `image` with the volume at `target` is created (never started), the
        archive goes in over the Engine API as `docker cp` does, and the container is
        removed. False (nothing done) when the engine is not reached over the local socket;
        ComposeError when a step failed (the volume may then hold part of the archive)."""
        if not isinstance(self._api._transport, _UnixSocket):
            return False
        self._send("POST", "/volumes/create", body=json.dumps(
            {"Name": name, "Labels": dict(labels)}).encode())
        created = json.loads(self._send("POST", "/containers/create", body=json.dumps({
            "Image": image, "Entrypoint": ["true"], "Cmd": [], "NetworkDisabled": True,
            "HostConfig": {"Mounts": [{"Type": "volume", "Source": name, "Target": target}],
                           "LogConfig": {"Type": "none"}}}).encode()))
        try:
            self._send("PUT", f"/containers/{created['Id']}/archive", {"path": target},
                       (archive, size), "application/x-tar", timeout=300.0)
        finally:
            with contextlib.suppress(ComposeError, DockerUnavailableError):
                self._send("DELETE", f"/containers/{created['Id']}", {"v": "1", "force": "1"})
        return True

    def run_detached(self, image: str, script: str, mounts: Sequence[tuple[str, str, bool]],
                     args: Sequence[str] = (), *, name: str,
                     env: Mapping[str, str] | None = None,
                     labels: Mapping[str, str] | None = None,
                     cpu_shares: int = 0) -> CommandResult:
        """Like run_helper, but started in the background and removed when it ends, under
        a fixed name (a second one of that name is refused: 409, "Conflict"); returns at
        once. Over the local socket only (else 125, not started); env values go in the
        request body, never on a command line."""
        if not isinstance(self._api._transport, _UnixSocket):
            return CommandResult(125, "", "not a local engine")
        body = {"Image": image, "Entrypoint": ["sh"], "Cmd": ["-c", script, "sh", *args],
                "User": "0:0", "Env": [f"{k}={v}" for k, v in (env or {}).items()],
                "Labels": dict(labels or {}),
                "HostConfig": {"AutoRemove": True, "NetworkMode": "none",
                               "LogConfig": {"Type": "none"}, "CpuShares": cpu_shares,
                               "Mounts": [{"Type": "bind" if s.startswith("/") else "volume",
                                           "Source": s, "Target": t, "ReadOnly": ro}
                                          for s, t, ro in mounts]}}
        for attempt in (1, 2):
            try:
                created = json.loads(self._send("POST", "/containers/create", {"name": name},
                                                json.dumps(body).encode()))
                break
            except ComposeError as exc:
                # One of that name that is not running (a daemon restart stopped it before
                # it could remove itself) is removed; one that runs is left to finish.
                if attempt == 2 or " 409 " not in exc.message or self._running_named(name):
                    return CommandResult(125, "", exc.message)
                with contextlib.suppress(ComposeError, DockerUnavailableError):
                    self._send("DELETE", f"/containers/{name}", {"force": "1"})
        try:
            self._send("POST", f"/containers/{created['Id']}/start")
        except ComposeError as exc:
            with contextlib.suppress(ComposeError, DockerUnavailableError):
                self._send("DELETE", f"/containers/{created['Id']}", {"v": "1", "force": "1"})
            return CommandResult(125, "", exc.message)
        return CommandResult(0, created["Id"], "")

    # --- devenv watch's own sync: files into a running container, as `docker cp` ------
    @property
    def local(self) -> bool:
        """The engine is reached over the local unix socket (the calls with a body work)."""
        return isinstance(self._api._transport, _UnixSocket)

    def put_archive(self, container_id: str, path: str, archive: bytes) -> None:
        """Unpack a tar into a container's filesystem at `path` (PUT .../archive, what
        `docker cp` does; the container may be running or stopped). The entries keep the
        uid/gid the tar gives them (copyUIDGID would instead ask the engine to look the
        container's user up, which it refuses for a `uid:gid` user). Local socket only.
        Raises ContainerGoneError (404) or ComposeError."""
        try:
            self._send("PUT", f"/containers/{container_id}/archive", {"path": path},
                       archive, "application/x-tar", timeout=120.0)
        except ComposeError as exc:
            if " 404 " in exc.message and "No such container" in exc.message:
                raise ContainerGoneError(exc.message) from None
            raise

    def read_file(self, container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
        """One small file of a container (GET .../archive), None when it is not there."""
        import io
        import tarfile

        try:
            raw = self._api.call("GET", f"/containers/{container_id}/archive", {"path": path})
        except (_NotFound, ComposeError):
            return None
        with contextlib.suppress(tarfile.TarError), tarfile.open(
                fileobj=io.BytesIO(raw)) as tar:
            member = tar.next()
            if member is not None and member.isfile() and member.size <= limit:
                handle = tar.extractfile(member)
                return handle.read() if handle is not None else None
        return None

    def exec_run(self, container_id: str, argv: Sequence[str], user: str = "",
                 timeout: float = 60.0) -> CommandResult:
        """Run a short command in a running container over the Engine API (no docker CLI
        process: about 30 ms) as `user` ("" the container's); its exit code and output.
        Local socket only. Raises ContainerGoneError or ComposeError (e.g. not running)."""
        try:
            created = json.loads(self._send("POST", f"/containers/{container_id}/exec",
                                            body=json.dumps({
                                                "Cmd": list(argv), "User": user,
                                                "AttachStdout": True,
                                                "AttachStderr": True}).encode()))
        except ComposeError as exc:
            if " 404 " in exc.message:
                raise ContainerGoneError(exc.message) from None
            raise
        raw = self._send("POST", f"/exec/{created['Id']}/start",
                         body=json.dumps({"Detach": False, "Tty": False}).encode(),
                         timeout=timeout)
        state = self._api.get(f"/exec/{created['Id']}/json") or {}
        demux = LogDemuxer()
        output = "\n".join([*demux.feed(raw), *demux.end()])
        code = state.get("ExitCode")
        return CommandResult(int(code) if code is not None else 125, output, "")

    def exec_pipe(self, container_id: str, argv: Sequence[str],
                  user: str = "0") -> subprocess.Popen[bytes]:
        """A long-lived command in a running container (`docker exec -i`), its stdin and
        stdout pipes the caller's and its stderr dropped; the caller ends it (closing
        stdin, or Popen.terminate). Raises ComposeError when the docker CLI cannot run."""
        import subprocess

        try:
            return subprocess.Popen([_docker_cli(), "exec", "-i", "-u", user, container_id,
                                     *argv], env=self.target.environ(self._environ),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise ComposeError(f"cannot run docker exec: {exc}") from exc

    def _running_named(self, name: str) -> bool:
        try:
            data = self._api.get(f"/containers/{urllib.parse.quote(name)}/json")
        except _NotFound:
            return False
        return bool((data.get("State") or {}).get("Running"))

    def run_helper(self, image: str, script: str, mounts: Sequence[tuple[str, str, bool]],
                   args: Sequence[str] = ()) -> CommandResult:
        """Run a shell script in a short-lived container of `image` as root, with volumes or
        host directories mounted ((source, target, read_only) each); no network, no logs
        (a log driver would copy every byte the script prints)."""
        return self._cli(_helper_argv(image, script, mounts, args))

    def start_helper(self, image: str, script: str, mounts: Sequence[tuple[str, str, bool]],
                     args: Sequence[str] = ()) -> HelperRun:
        """run_helper started in the background with its stdin open: the script reads the
        lines that HelperRun.send writes (EOF when HelperRun.close or this process ends)."""
        import subprocess

        argv = _helper_argv(image, script, mounts, args, interactive=True)
        proc = subprocess.Popen([_docker_cli(), *argv],
                                env=self.target.environ(self._environ),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        return HelperRun(proc)

    def exec_stream(self, container_id: str, argv: Sequence[str], *,
                    env: Mapping[str, str] | None = None, stdin: BinaryIO | None = None,
                    stdout: BinaryIO | None = None,
                    progress: Callable[[int], None] | None = None) -> CommandResult:
        """`docker exec` with stdin streamed from a file and/or stdout written to one, for
        dumps too big to hold in memory (Compose.exec serves the interactive and small
        cases); `progress(bytes)` along the way. env values reach the container through the
        docker CLI's own environment (`-e NAME`), never on a command line."""
        command = [_docker_cli(), "exec", *(["-i"] if stdin is not None else [])]
        for name in env or {}:
            command += ["-e", name]
        command += [container_id, *argv]
        return _stream(command, {**self.target.environ(self._environ), **(env or {})}, stdin,
                       stdout, progress)

    def _cli(self, argv: Sequence[str]) -> CommandResult:
        import subprocess

        result = subprocess.run([_docker_cli(), *argv], env=self.target.environ(self._environ),
                                capture_output=True)
        return CommandResult(result.returncode, _text(result.stdout), _text(result.stderr))

    # --- compose ----------------------------------------------------------------------
    def compose(self, project: str, compose_file: Path | None = None) -> Compose:
        from .compose import Compose

        return Compose(project, compose_file, self._environ, self.target, engine=self)

    def remove_container(self, name_or_id: str) -> bool:
        """Force-remove one container (a one-off `run` left by an interrupt). False: gone."""
        try:
            self._api.call("DELETE", f"/containers/{urllib.parse.quote(name_or_id)}",
                           {"force": "1", "v": "1"})
        except _NotFound:
            return False
        return True


def _container(item: Mapping[str, Any]) -> Container:
    labels = item.get("Labels") or {}
    status = str(item.get("Status", ""))
    health = ""
    if "(healthy)" in status:
        health = "healthy"
    elif "(unhealthy)" in status:
        health = "unhealthy"
    elif "(health: starting)" in status:
        health = "starting"
    ports = tuple(
        Published(str(p.get("IP", "")), int(p["PublicPort"]), int(p["PrivatePort"]))
        for p in item.get("Ports") or []
        if p.get("PublicPort") and p.get("Type", "tcp") == "tcp"
    )
    names = item.get("Names") or ["?"]
    return Container(
        id=str(item.get("Id", "")),
        name=str(names[0]).lstrip("/"),
        project=str(labels.get(PROJECT_LABEL, "")),
        service=str(labels.get(SERVICE_LABEL, "")),
        state=str(item.get("State", "")),
        health=health,
        status=status,
        ports=ports,
        working_dir=str(labels.get(WORKDIR_LABEL, "")),
        labels=dict(labels),
    )


class EventStream:
    """Iterate Docker events (dicts); close() from another thread ends the iteration."""

    def __init__(self, stream: _Stream, target: EngineTarget):
        self._stream = stream
        self._target = target

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        decoder = json.JSONDecoder()
        buffer = ""
        try:
            for chunk in self._stream.chunks:
                buffer += chunk.decode(errors="replace")
                while True:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                    try:
                        event, end = decoder.raw_decode(buffer)
                    except ValueError:
                        break  # an event cut in two: wait for the rest
                    buffer = buffer[end:]
                    if isinstance(event, dict):
                        yield event
        except OSError as exc:
            raise _unreachable(self._target, exc) from exc
        raise DockerUnavailableError(f"the Docker engine at {self._target.where} ended the "
                                     "event stream", hint=unreachable_hint(self._target))


class LogDemuxer:
    """Incremental reader of a log stream: the 8-byte frame headers of a non-TTY container
    (possibly split across chunks) are removed, a TTY container's raw bytes pass through,
    and the bytes become lines in a LineSplitter. A frame's payload is passed on as it
    comes, never gathered whole: what is held is at most 8 header bytes and one line's
    limit, whatever a frame header claims."""

    def __init__(self, limit: int = LINE_LIMIT) -> None:
        self._header = b""  # of the next frame, or the first bytes while the kind is unknown
        self._framed: bool | None = None
        self._left = 0  # payload bytes of the current frame still to come
        self._lines = LineSplitter(limit)

    def feed(self, data: bytes) -> list[str]:
        if self._framed is None:
            self._header += data
            if len(self._header) < 8:
                return []
            data, self._header = self._header, b""
            self._framed = data[0] in (0, 1, 2) and data[1:4] == b"\0\0\0"
        if not self._framed:
            return self._lines.feed(data)
        lines: list[str] = []
        view, at = memoryview(data), 0
        while at < len(view):
            if self._left == 0:
                need = 8 - len(self._header)
                self._header += bytes(view[at:at + need])
                at += need
                if len(self._header) == 8:
                    self._left = int.from_bytes(self._header[4:8], "big")
                    self._header = b""
                continue
            take = min(self._left, len(view) - at)
            lines += self._lines.feed(bytes(view[at:at + take]))
            at += take
            self._left -= take
        return lines

    def end(self) -> list[str]:
        """The last line, when the log ends without a newline."""
        return self._lines.end()


class LogStream:
    """Iterate a container's log line by line (a line longer than `limit` bytes comes cut);
    close() ends it."""

    def __init__(self, stream: _Stream, target: EngineTarget, limit: int = LINE_LIMIT):
        self._stream = stream
        self._target = target
        self._limit = limit

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[str]:
        demux = LogDemuxer(self._limit)
        try:
            for chunk in self._stream.chunks:
                yield from demux.feed(chunk)
        except OSError as exc:
            raise _unreachable(self._target, exc) from exc
        yield from demux.end()


def _helper_argv(image: str, script: str, mounts: Sequence[tuple[str, str, bool]],
                 args: Sequence[str], interactive: bool = False) -> list[str]:
    """`docker run` of a helper: root, no network, no log driver, the mounts given as
    (source, target, read_only): a source starting with / is a host path, else a volume."""
    argv = ["run", "--rm", *(["-i"] if interactive else []), "--log-driver", "none",
            "--network", "none", "--entrypoint", "sh", "--user", "0:0"]
    for source, target, read_only in mounts:
        argv += ["--mount", f"type={'bind' if source.startswith('/') else 'volume'},"
                 f"source={source},target={target}" + (",readonly" if read_only else "")]
    return [*argv, image, "-c", script, "sh", *args]


class HelperRun:
    """A helper container started by Engine.start_helper: its stderr is read as it comes,
    so that a caller can go on as soon as the script prints a given line."""

    def __init__(self, proc: Any) -> None:
        self._proc = proc
        self._lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self._proc.stderr:
            with self._seen:
                self._lines.append(_text(raw))
                self._seen.notify_all()
        with self._seen:
            self._lines.append("")  # end of output
            self._seen.notify_all()

    def send(self, line: str) -> bool:
        """Write a line to the script's stdin; False when it no longer reads."""
        try:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()
            return True
        except OSError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.stdin.close()

    def wait_for(self, line: str) -> bool:
        """Wait until the script prints `line` (True) or its output ends (False)."""
        with self._seen:
            while True:
                if any(x.rstrip("\n") == line for x in self._lines):
                    return True
                if self._lines and self._lines[-1] == "":
                    return False
                self._seen.wait()

    def wait(self) -> CommandResult:
        self.close()
        returncode = self._proc.wait()
        self._reader.join()
        return CommandResult(returncode, "", "".join(self._lines))


def _stream(command: Sequence[str], env: Mapping[str, str], stdin: BinaryIO | None,
            stdout: BinaryIO | None, progress: Callable[[int], None] | None) -> CommandResult:
    """Run `command` with stdin fed from a file and stdout written to a file (both
    unbuffered through this process), stderr kept; `progress(bytes)` about every 0.5 s."""
    import subprocess

    process = subprocess.Popen(command, env=dict(env),
                               stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                               stdout=stdout if stdout is not None else subprocess.PIPE,
                               stderr=subprocess.PIPE)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    out: list[bytes] = []
    if stdout is None:
        threading.Thread(target=lambda: out.append(process.stdout.read()),  # type: ignore[union-attr]
                         daemon=True).start()
    last, done = time.monotonic(), 0
    try:
        if stdin is not None:
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                while chunk := stdin.read(1 << 20):
                    process.stdin.write(chunk)
                    done += len(chunk)
                    if progress is not None and time.monotonic() - last > 0.5:
                        progress(done)
                        last = time.monotonic()
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        while process.poll() is None:
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if progress is not None and stdout is not None:
                    progress(os.fstat(stdout.fileno()).st_size)
    except BaseException:
        process.kill()
        process.wait()
        raise
    reader.join(5)
    return CommandResult(process.returncode, _text(b"".join(out)), _text(b"".join(errors)))


def connect(environ: Mapping[str, str]) -> Engine:
    """An Engine for the engine the Docker CLI would use: DOCKER_HOST, else the Docker
    context (DOCKER_CONTEXT, else the CLI config's current one), else the local socket.
    Raises when the context cannot be resolved; the engine is reached on the first call."""
    target = resolve_engine(environ)
    host = target.host
    if host.startswith("unix://"):
        transport: _Transport = _UnixSocket(host[len("unix://"):])
    elif "://" not in host:
        named = ("DOCKER_HOST" if target.source == "DOCKER_HOST"
                 else f"Docker context {target.context}")
        raise DockerUnavailableError(f"{named}: {host!r} is not a Docker address",
                                     hint="use unix:///var/run/docker.sock, tcp://HOST:2375 "
                                     "or ssh://USER@HOST")
    else:
        transport = _DockerSDK(target, environ)
    return Engine(_API(transport, target), environ)
