"""The one seam to Docker. Nothing else in devenv imports docker or python_on_whales.

The Engine API serves reads (containers, ports, health, logs) and the few writes that need
no compose file (signals; stopping and removing a project for `down`): over the local unix
socket with the standard library (about 2 ms a call, no 0.2 s `import docker`), or through
the docker SDK for tcp://, ssh:// and TLS hosts. Creating and starting containers from the
rendered file goes through `docker compose` via python-on-whales, imported (0.4 s) only
when a command needs it. Docker's errors become devenv's errors here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .dockercontext import EngineTarget, resolve_engine
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    ComposeError,
    DevenvError,
    DockerUnavailableError,
    ImageMissingError,
    Terminated,
    UsageError,
)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
#: Engine 25 (API 1.44) is the first to accept a healthcheck's start_interval
START_INTERVAL_API = (1, 44)


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    #: host name of a remote engine (tcp:// or ssh://), None for a local one
    remote_host: str | None

    @property
    def supports_start_interval(self) -> bool:
        return _api_tuple(self.api_version) >= START_INTERVAL_API


@dataclass(frozen=True)
class Published:
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    project: str
    service: str
    state: str  # created | running | restarting | exited | paused | dead
    health: str  # healthy | unhealthy | starting | "" (no healthcheck)
    status: str  # Docker's words, e.g. "Up 3 minutes (healthy)"
    ports: tuple[Published, ...]
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def host_port(self, container_port: int) -> Published | None:
        return next((p for p in self.ports if p.container_port == container_port), None)


def _api_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return 0, 0


class _NotFound(Exception):
    pass


class _Transport(Protocol):
    def request(self, method: str, path: str, query: Mapping[str, str] | None,
                timeout: float) -> tuple[int, bytes]: ...

    def stream(self, path: str, query: Mapping[str, str] | None,
               timeout: float | None) -> _Stream: ...


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


class _UnixSocket:
    """HTTP/1.0 by hand over the local unix socket, standard library only.

    http.client would pull in the email package and ssl (about 25 ms at start-up), which
    `devenv ports` cannot afford next to `docker compose ps`.
    """

    def __init__(self, path: str):
        self.path = path

    def request(self, method: str, path: str, query: Mapping[str, str] | None,
                timeout: float) -> tuple[int, bytes]:
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        head = (f"{method} {url} HTTP/1.0\r\nHost: docker\r\nConnection: close\r\n"
                "Content-Length: 0\r\n\r\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.path)
            sock.sendall(head.encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return _parse_response(b"".join(chunks))

    def stream(self, path: str, query: Mapping[str, str] | None,
               timeout: float | None) -> _Stream:
        """A long GET (events, a followed log): the body as it arrives, until closed."""
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(10)
            sock.connect(self.path)
            sock.sendall(f"GET {url} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("the engine closed the connection")
                head += chunk
        except BaseException:
            sock.close()
            raise
        head, _, rest = head.partition(b"\r\n\r\n")
        status, _body = _parse_response(head + b"\r\n\r\n")
        if status >= 400:
            sock.close()
            return _Stream(status, iter(()), lambda: None)
        sock.settimeout(timeout)

        def chunks() -> Iterator[bytes]:
            if rest:
                yield rest
            try:
                while chunk := sock.recv(65536):
                    yield chunk
            finally:
                sock.close()

        def close() -> None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        return _Stream(status, chunks(), close)


@dataclass
class _Stream:
    """A streamed response body; close() may be called from another thread."""

    status: int
    chunks: Iterator[bytes]
    close: Any


def _parse_response(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ComposeError("the Docker engine sent an unreadable answer") from None
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding") == b"chunked":
        body = _dechunk(body)
    return status, body


def _dechunk(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while True:
        end = data.find(b"\r\n", i)
        if end < 0:
            break
        size = int(data[i:end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[end + 2 : end + 2 + size]
        i = end + 2 + size + 2
    return bytes(out)


class _DockerSDK:
    """The docker SDK's low-level client, for tcp://, ssh:// and TLS engines."""

    def __init__(self, target: EngineTarget, environ: Mapping[str, str]):
        import docker
        from docker.utils import kwargs_from_env

        kwargs = kwargs_from_env(environment=target.environ(environ))
        #: ssh:// runs the system ssh (the user's config, agent and keys apply); its stderr
        #: is caught while it first connects, so a failure is our one line, not ssh's too
        self._ssh_errors: Any = None
        if str(kwargs.get("base_url", "")).startswith("ssh://"):
            kwargs["use_ssh_client"] = True
            import tempfile

            self._ssh_errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives with the client
        catch = self._ssh_errors
        try:
            # The client asks the engine for its API version: the first ssh connection.
            with _stderr_into(catch) if catch is not None else contextlib.nullcontext():
                self._client = docker.APIClient(timeout=10, **kwargs)
        except docker.errors.DockerException as exc:
            said = _last_line_of(catch) if catch is not None else ""
            reason = OSError(f"ssh: {said.removeprefix('ssh: ')}") if said else exc
            raise _unreachable(target, reason) from exc

    def request(self, method: str, path: str, query: Mapping[str, str] | None,
                timeout: float) -> tuple[int, bytes]:
        send = {"GET": self._client._get, "POST": self._client._post,
                "DELETE": self._client._delete}[method]
        catch = self._ssh_errors
        try:
            with _stderr_into(catch) if catch is not None else contextlib.nullcontext():
                response = send(self._client._url(path), params=dict(query or {}),
                                timeout=timeout)
        except Exception as exc:  # requests and paramiko raise many kinds
            said = _last_line_of(catch) if catch is not None else ""
            raise OSError(f"ssh: {said.removeprefix('ssh: ')}" if said else str(exc)) from exc
        self._ssh_errors = None  # connected: later ssh processes keep the terminal's stderr
        return response.status_code, bytes(response.content)

    def stream(self, path: str, query: Mapping[str, str] | None,
               timeout: float | None) -> _Stream:
        try:
            response = self._client._get(self._client._url(path), params=dict(query or {}),
                                         stream=True, timeout=timeout)
        except Exception as exc:
            raise OSError(str(exc)) from exc

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.raw.stream(65536, decode_content=False)
            except Exception as exc:
                raise OSError(str(exc)) from exc

        return _Stream(response.status_code, chunks(), response.close)


@contextlib.contextmanager
def _stderr_into(handle: Any) -> Iterator[None]:
    """Point file descriptor 2 (what a child ssh inherits) at `handle` for a moment. Used
    only for the first request, before devenv starts any thread that prints."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _last_line_of(handle: Any) -> str:
    handle.seek(0)
    lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()
             if line.strip()]
    return lines[-1] if lines else ""


def _engine_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "")).strip()
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:200]


def _unreachable(target: EngineTarget, exc: BaseException) -> DockerUnavailableError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if target.host.startswith("ssh://"):
        return DockerUnavailableError(
            f"cannot reach the Docker engine at {target.where}: {reason}",
            hint="check the engine's host and that `ssh HOST docker version` works without "
            "a prompt (keys in your agent, the host key in known_hosts)")
    return DockerUnavailableError(
        f"cannot reach the Docker engine at {target.where}: {reason}",
        hint=unreachable_hint(target),
    )


def unreachable_hint(target: EngineTarget) -> str:
    if target.source in ("DOCKER_CONTEXT", "config"):
        return (f"is the engine of context {target.context} running (e.g. `colima start`, "
                "Docker Desktop)? or switch: `docker context use default`, DOCKER_CONTEXT, "
                "or DOCKER_HOST")
    return ("is the daemon running? start it (e.g. `sudo dockerd` or Docker Desktop), "
            "or point DOCKER_HOST at a running engine")


def remote_host_of(docker_host: str) -> str | None:
    """The engine's host name when DOCKER_HOST points at another machine, else None."""
    parsed = urllib.parse.urlparse(docker_host)
    if parsed.scheme not in ("tcp", "ssh", "http", "https"):
        return None
    host = parsed.hostname or ""
    if host in ("localhost", "127.0.0.1", "::1", ""):
        return None
    return host


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
                if str(entry.get("HostPort", "")).isdigit():
                    ports.append(int(entry["HostPort"]))
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

    def logs(self, container_id: str, tail: int = 20) -> str:
        try:
            raw = self._api.get_bytes(f"/containers/{container_id}/logs",
                                      {"stdout": "1", "stderr": "1", "tail": str(tail)})
        except _NotFound:
            return ""
        return _demux(raw).decode(errors="replace")

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

    def follow_logs(self, container_id: str, tail: int = 100,
                    since: float | None = None) -> LogStream:
        """A container's log lines as they are written, until it stops or close()."""
        query = {"stdout": "1", "stderr": "1", "follow": "1", "tail": str(tail)}
        if since is not None:
            query["since"] = f"{since:.3f}"
        try:
            stream = self._api.stream(f"/containers/{container_id}/logs", query)
        except _NotFound:
            stream = _Stream(404, iter(()), lambda: None)
        return LogStream(stream, self._api.target)

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
        and, if asked, its volumes. No compose process, no python-on-whales import.

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
                self._api.call("DELETE", f"/containers/{c.id}", {"force": "1"})

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

    def run_helper(self, image: str, script: str, mounts: Sequence[tuple[str, str, bool]],
                   args: Sequence[str] = ()) -> CommandResult:
        """Run a shell script in a short-lived container of `image` as root, with volumes or
        host directories mounted ((source, target, read_only) each); no network, no logs
        (a log driver would copy every byte the script prints)."""
        argv = ["run", "--rm", "--log-driver", "none", "--network", "none",
                "--entrypoint", "sh", "--user", "0:0"]
        for source, target, read_only in mounts:
            argv += ["--mount", f"type={'bind' if source.startswith('/') else 'volume'},"
                     f"source={source},target={target}" + (",readonly" if read_only else "")]
        return self._cli([*argv, image, "-c", script, "sh", *args])

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
        return Compose(project, compose_file, self._environ, self.target, engine=self)

    def remove_container(self, name_or_id: str) -> bool:
        """Force-remove one container (a one-off `run` left by an interrupt). False: gone."""
        try:
            self._api.call("DELETE", f"/containers/{urllib.parse.quote(name_or_id)}",
                           {"force": "1", "v": "1"})
        except _NotFound:
            return False
        return True


@dataclass(frozen=True)
class Removed:
    containers: list[Container]
    #: network name -> the containers (of other projects) still on it, so it was kept
    kept_networks: dict[str, list[str]]


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


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


def _demux(raw: bytes) -> bytes:
    """Strip the 8-byte frame headers of a non-TTY container's log stream."""
    out, i = bytearray(), 0
    while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1 : i + 4] == b"\0\0\0":
        size = int.from_bytes(raw[i + 4 : i + 8], "big")
        out += raw[i + 8 : i + 8 + size]
        i += 8 + size
    return bytes(out) if i else raw


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
    (possibly split across chunks) are removed; a TTY container's raw bytes pass through."""

    def __init__(self) -> None:
        self._buffer = b""
        self._framed: bool | None = None
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        if self._framed is None and len(self._buffer) >= 8:
            b = self._buffer
            self._framed = b[0] in (0, 1, 2) and b[1:4] == b"\0\0\0"
        if self._framed is None:
            return []
        out = b""
        if self._framed:
            while len(self._buffer) >= 8:
                size = int.from_bytes(self._buffer[4:8], "big")
                if len(self._buffer) < 8 + size:
                    break
                out += self._buffer[8:8 + size]
                self._buffer = self._buffer[8 + size:]
        else:
            out, self._buffer = self._buffer, b""
        text = self._partial + out
        *lines, self._partial = text.split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in lines]


class LogStream:
    """Iterate a followed container log line by line; close() ends it."""

    def __init__(self, stream: _Stream, target: EngineTarget):
        self._stream = stream
        self._target = target

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[str]:
        demux = LogDemuxer()
        try:
            for chunk in self._stream.chunks:
                yield from demux.feed(chunk)
        except OSError as exc:
            raise _unreachable(self._target, exc) from exc


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


# --- compose, through python-on-whales ------------------------------------------------
_PORT_RACE = re.compile(
    r"(?:Bind for [^ ]*?:(\d+) failed: port is already allocated"
    r"|listen tcp6? [^ ]*?:(\d+): bind: address already in use"
    r"|[^ ]*?:(\d+): bind: address already in use)"
)
_PULL_FAILED = re.compile(
    r"(pull access denied|manifest unknown|not found: manifest|dial tcp|no such host"
    r"|failed to resolve reference|i/o timeout|Error response from daemon: Get \"https)",
    re.IGNORECASE,
)


class PortRaceError(ComposeError):
    """Compose could not publish a port that was free when devenv planned it."""

    def __init__(self, port: int, stderr: str):
        super().__init__(f"port {port} was taken after planning", detail=stderr)
        self.port = port


class Compose:
    """`docker compose` for one project, through python-on-whales; the commands that hand
    the terminal to a process (exec, run) or stream for long (watch) run the CLI itself."""

    def __init__(self, project: str, compose_file: Path | None, environ: Mapping[str, str],
                 target: EngineTarget | None = None, engine: Engine | None = None):
        self.project = project
        self.compose_file = compose_file
        self.environ = environ
        self.target = target or resolve_engine(environ)
        self._engine = engine

    def _client(self) -> Any:
        from python_on_whales import DockerClient

        files: list[str | Path] = [self.compose_file] if self.compose_file else []
        project_dir = self.compose_file.parent if self.compose_file else None
        # The engine devenv resolved, as --host: compose then talks to the same engine
        # whatever DOCKER_CONTEXT or the CLI's current context say.
        tls: dict[str, Any] = {}
        if self.target.tls_dir and self.target.source != "DOCKER_HOST":
            certs = Path(self.target.tls_dir)
            tls = {name: certs / f"{stem}.pem" for name, stem in
                   (("tlscacert", "ca"), ("tlscert", "cert"), ("tlskey", "key"))
                   if (certs / f"{stem}.pem").is_file()}
            tls["tlsverify" if not self.target.skip_tls_verify else "tls"] = True
        return DockerClient(compose_files=files, compose_project_name=self.project,
                            compose_project_directory=project_dir, host=self.target.host,
                            client_call=[_docker_cli()], **tls)

    def _run(self, action: str, call: Any) -> Any:
        from python_on_whales.exceptions import DockerException

        try:
            return call()
        except DockerException as exc:
            stderr = _text(exc.stderr)
            raise compose_error(action, stderr, self.target) from None

    def up(self, services: Sequence[str], build: bool = False) -> None:
        # With dependencies (no --no-deps): --no-deps leaves the depends_on label and the
        # config hash different from a plain `docker compose up`, which would then
        # recreate the containers. The dependencies are running or named anyway.
        client = self._client()
        self._run("up", lambda: client.compose.up(
            services=list(services), detach=True, build=build, quiet=True))

    def logs(self, services: Sequence[str], follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        """Log lines of the services, prefixed by compose with the service name."""
        client = self._client()
        stream = self._run("logs", lambda: client.compose.logs(
            services=list(services), follow=follow, stream=True,
            tail=str(tail) if tail is not None else None))
        from python_on_whales.exceptions import DockerException

        try:
            for _source, chunk in stream:
                yield from chunk.decode(errors="replace").splitlines()
        except DockerException as exc:
            raise compose_error("logs", _text(exc.stderr), self.target) from None

    def version(self) -> str:
        return str(self._run("version", lambda: self._client().compose.version()))

    # --- the inner loop: exec, run, watch (subprocesses of the docker CLI) ------------
    def _argv(self, *args: str) -> list[str]:
        argv = [_docker_cli(), "compose", "-p", self.project]
        if self.compose_file is not None:
            argv += ["-f", str(self.compose_file),
                     "--project-directory", str(self.compose_file.parent)]
        return argv + list(args)

    def version_tuple(self) -> tuple[int, int, int] | None:
        """Compose's version as numbers (`docker compose version --short`); None if unknown."""
        import subprocess

        try:
            out = subprocess.run([_docker_cli(), "compose", "version", "--short"],
                                 capture_output=True, text=True, timeout=20,
                                 env=self.target.environ(self.environ))
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_compose_version(out.stdout) if out.returncode == 0 else None

    def running_container(self, service: str) -> Container:
        """The running container of a service, or ServiceNotRunningError with a hint."""
        if self._engine is None:
            raise AssertionError("Compose was built without an engine")
        found = [c for c in self._engine.containers(self.project)
                 if c.service == service and c.labels.get(ONEOFF_LABEL, "False") != "True"]
        running = next((c for c in found if c.running), None)
        if running is not None:
            return running
        state = f" (its container is {found[0].state})" if found else ""
        raise ServiceNotRunningError(
            f"{service} is not running in project {self.project}{state}",
            hint=f"start it with `devenv up --only {service}`", service=service)

    def exec(self, service: str, argv: Sequence[str], *, tty: bool | None = None,
             interactive: bool = True, env: Mapping[str, str] | None = None,
             user: str | None = None, workdir: str | None = None,
             capture: bool = False, stdin: bytes | None = None) -> ExecResult:
        """Run a command in the service's running container; its exit code comes back.

        tty None: a TTY when stdin and stdout are terminals (as `docker exec -it` would be
        typed by hand). capture: collect stdout/stderr instead of sharing the terminal.
        The container is found on the Engine API, so no compose file is needed."""
        container = self.running_container(service)
        use_tty = _want_tty(tty) and not capture and stdin is None
        args = [_docker_cli(), "exec"]
        if interactive or stdin is not None:
            args.append("-i")
        if use_tty:
            args.append("-t")
        args += _env_args(env)
        if user:
            args += ["-u", user]
        if workdir:
            args += ["-w", workdir]
        args += [container.id, *argv]
        return _run_attached(args, self.target.environ(self.environ), capture=capture,
                             stdin=stdin)

    def run(self, service: str, argv: Sequence[str], *, tty: bool | None = None,
            env: Mapping[str, str] | None = None, name: str | None = None,
            capture: bool = False, stdin: bytes | None = None,
            build: bool = False) -> ExecResult:
        """A one-off container of the service (its image, environment and network) that is
        removed afterwards, also when the run is interrupted."""
        import uuid

        name = name or f"{self.project}-{service}-run-{uuid.uuid4().hex[:8]}"
        args = ["run", "--rm", "--no-deps", "--name", name] + (["--build"] if build else [])
        if not (_want_tty(tty) and not capture and stdin is None):
            args.append("-T")
        args += _env_args(env)
        args += [service, *argv]
        try:
            result = _run_attached(self._argv(*args), self.target.environ(self.environ),
                                   capture=capture, stdin=stdin)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (errors.Terminated)
            removed = self._engine.remove_container(name) if self._engine else False
            error = RunInterruptedError(
                ("terminated" if isinstance(stop, Terminated) else "interrupted")
                + "; the one-off container " + (f"{name} was removed" if removed
                                                 else f"{name} is gone"),
                hint="run the command again")
            if isinstance(stop, Terminated):
                error.exit_code = EXIT_TERMINATED
            raise error from None
        return result

    def watch(self, services: Sequence[str]) -> WatchProcess:
        """`docker compose watch --no-up SERVICES`, streaming its lines; the stack is
        started by devenv, so watch never starts or stops a container on its own."""
        import subprocess

        argv = self._argv("watch", "--no-up", *services)
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1,
                                       errors="replace",
                                       env=self.target.environ(self.environ),
                                       start_new_session=True)
        except OSError as exc:
            raise ComposeError(f"cannot start docker compose watch: {exc}") from exc
        return WatchProcess(process)


ONEOFF_LABEL = "com.docker.compose.oneoff"


class ServiceNotRunningError(UsageError):
    """exec into (or watch) a service whose container does not run."""

    def __init__(self, message: str, hint: str | None = None, detail: str | None = None,
                 service: str = ""):
        super().__init__(message, hint, detail)
        self.service = service


class RunInterruptedError(DevenvError):
    exit_code = EXIT_INTERRUPTED


@dataclass(frozen=True)
class ExecResult:
    code: int
    stdout: str = ""  # only with capture
    stderr: str = ""


class WatchProcess:
    """A running `docker compose watch`: its output lines, and a way to end it."""

    def __init__(self, process: Any):
        self._process = process

    def lines(self) -> Iterator[str]:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            yield line.rstrip("\n")

    def returncode(self) -> int | None:
        return self._process.wait(timeout=10)

    def stop(self) -> None:
        """End watch (SIGINT, as Ctrl-C would): containers keep running."""
        import signal
        import subprocess

        if self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def parse_compose_version(text: str) -> tuple[int, int, int] | None:
    """'2.26.1-4' or 'v2.22.0' or 'Docker Compose version v2.26.1' -> (2, 26, 1)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _want_tty(tty: bool | None) -> bool:
    import sys

    if tty is not None:
        return tty
    return sys.stdin.isatty() and sys.stdout.isatty()


def _env_args(env: Mapping[str, str] | None) -> list[str]:
    return [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]


def _run_attached(argv: list[str], environ: Mapping[str, str], capture: bool,
                  stdin: bytes | None) -> ExecResult:
    import subprocess

    try:
        if capture or stdin is not None:
            done = subprocess.run(argv, env=dict(environ), input=stdin,
                                  capture_output=capture)
            return ExecResult(done.returncode,
                              _text(done.stdout) if capture else "",
                              _text(done.stderr) if capture else "")
        return ExecResult(subprocess.run(argv, env=dict(environ)).returncode)
    except OSError as exc:
        raise ComposeError(f"cannot run {argv[0]}: {exc}") from exc


_preloading: list[threading.Thread] = []


def preload_compose() -> None:
    """Import python-on-whales (0.3-0.4 s, pydantic models) in the background while the
    caller plans and renders; the compose call then finds it loaded."""
    if not _preloading:
        thread = threading.Thread(target=_import_compose, daemon=True, name="preload")
        _preloading.append(thread)
        thread.start()


def _import_compose() -> None:
    with contextlib.suppress(Exception):
        import python_on_whales  # noqa: F401


def _docker_cli() -> str:
    import shutil

    docker = shutil.which("docker")
    if docker is None:
        raise DockerUnavailableError("the docker command is not installed",
                                     hint="install the Docker CLI with the Compose v2 plugin")
    return docker


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value or "")


def compose_error(action: str, stderr: str,
                  target: EngineTarget | None = None) -> DevenvError:
    """Turn compose's stderr into the most specific error devenv knows."""
    stderr = stderr.strip()
    race = _PORT_RACE.search(stderr)
    if race:
        return PortRaceError(int(next(g for g in race.groups() if g)), stderr)
    if "is not a docker command" in stderr or "unknown command \"compose\"" in stderr:
        return DockerUnavailableError(
            "Docker Compose v2 is not installed (`docker compose` is unknown)",
            hint="install the docker-compose-plugin package; the old docker-compose v1 "
            "is not supported")
    if "Cannot connect to the Docker daemon" in stderr or "error during connect" in stderr:
        at = f" at {target.where}" if target else ""
        return DockerUnavailableError(
            f"cannot reach the Docker engine{at}: " + _last_line(stderr),
            hint=unreachable_hint(target) if target else "is the daemon running? check "
            "DOCKER_HOST")
    if _PULL_FAILED.search(stderr):
        image = _image_in(stderr)
        return ImageMissingError(
            f"image {image or '(see below)'} is not on this engine and could not be pulled",
            hint="pull or build it, or point DEVENV_<SERVICE>_IMAGE at an image you have "
            "(`docker images`)", detail=_tail(stderr), image=image)
    # The last line is the message; the lines before it (if any) are the detail, so no
    # line is printed twice.
    before = "\n".join(line for line in stderr.splitlines()[:-1][-12:] if line.strip())
    return ComposeError(f"docker compose {action} failed: {_last_line(stderr)}",
                        hint=("the lines above are docker compose's own output; "
                              if before else "") + "`devenv doctor` checks the engine, "
                        "Compose and the settings",
                        detail=before or None)


_IMAGE_NAMED = re.compile(
    r"pull access denied for ([^\s,]+)"
    r"|manifest for ([^\s,]+) not found"
    r"|failed to resolve reference \"([^\"]+)\""
    r"|No such image: ([^\s,]+)"
    r"|image \"([^\"]+)\""
)


def _image_in(stderr: str) -> str:
    match = _IMAGE_NAMED.search(stderr)
    return next((g for g in match.groups() if g), "") if match else ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[-lines:])
