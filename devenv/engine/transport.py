"""How devenv reaches the Docker Engine API: HTTP/1.0 by hand over the local unix socket
(standard library only, about 2 ms a call, no 0.2 s `import docker`), or the docker SDK's
client for tcp://, ssh:// and TLS hosts. Both answer (status, body); errors are OSError."""

from __future__ import annotations

import contextlib
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import (
    ComposeError,
    DockerUnavailableError,
)
from .dockercontext import EngineTarget


class _Transport(Protocol):
    def request(self, method: str, path: str, query: Mapping[str, str] | None,
                timeout: float) -> tuple[int, bytes]: ...

    def stream(self, path: str, query: Mapping[str, str] | None,
               timeout: float | None) -> _Stream: ...


#: a request body: bytes, or (a readable file, its size in bytes)
Body = bytes | tuple[Any, int]


class _UnixSocket:
    """HTTP/1.0 by hand over the local unix socket, standard library only.

    http.client would pull in the email package and ssl (about 25 ms at start-up), which
    `devenv ports` cannot afford next to `docker compose ps`.
    """

    def __init__(self, path: str):
        self.path = path

    def request(self, method: str, path: str, query: Mapping[str, str] | None,
                timeout: float, body: Body = b"",
                content_type: str = "application/json") -> tuple[int, bytes]:
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        size = len(body) if isinstance(body, bytes) else body[1]
        head = (f"{method} {url} HTTP/1.0\r\nHost: docker\r\nConnection: close\r\n"
                + (f"Content-Type: {content_type}\r\n" if size else "")
                + f"Content-Length: {size}\r\n\r\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.path)
            sock.sendall(head.encode())
            if isinstance(body, bytes):
                if body:
                    sock.sendall(body)
            else:
                while chunk := body[0].read(1 << 20):
                    sock.sendall(chunk)
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

def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"
