"""`docker compose` and `docker exec/run`, run as the docker CLI, and Compose's stderr
turned into the most specific error devenv knows (the port race, a missing image, no
Compose v2, no engine). up, create and version capture the output; exec and run hand the
CLI the terminal; watch and logs read in bounded memory."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    ComposeError,
    DevenvError,
    DockerUnavailableError,
    ImageMissingError,
    Terminated,
    UsageError,
)
from .dockercontext import EngineTarget, resolve_engine
from .lines import LineSplitter
from .models import ONEOFF_LABEL, Container, ContainerSource
from .transport import _docker_cli, _last_line, _text, unreachable_hint

# --- compose's errors ------------------------------------------------------------------
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
    """`docker compose` for one project: the docker CLI, against the engine devenv
    resolved (DOCKER_HOST and its TLS files in the CLI's environment)."""

    def __init__(self, project: str, compose_file: Path | None, environ: Mapping[str, str],
                 target: EngineTarget | None = None, engine: ContainerSource | None = None):
        self.project = project
        self.compose_file = compose_file
        self.environ = environ
        self.target = target or resolve_engine(environ)
        self._engine = engine

    def _compose(self, action: str, *args: str) -> str:
        """`docker compose ACTION ARGS...` for this project, quiet, its stdout returned;
        a failure is the most specific error its stderr names (compose_error)."""
        import subprocess

        try:
            done = subprocess.run(self._argv(action, *args), stdin=subprocess.DEVNULL,
                                  capture_output=True, env=self.target.environ(self.environ))
        except OSError as exc:
            raise ComposeError(f"cannot run docker compose {action}: {exc}") from exc
        if done.returncode != 0:
            raise compose_error(action, _text(done.stderr), self.target)
        return _text(done.stdout)

    def up(self, services: Sequence[str], build: bool = False) -> None:
        # With dependencies (no --no-deps): --no-deps leaves the depends_on label and the
        # config hash different from a plain `docker compose up`, which would then
        # recreate the containers. The dependencies are running or named anyway.
        if services:
            self._compose("up", "--detach", *(["--build"] if build else []),
                          *services)

    def create(self, services: Sequence[str]) -> None:
        """`docker compose create SERVICES`: the containers as `up` makes them, not started
        (Engine.start_created starts them)."""
        self._compose("create", *services)

    def logs(self, services: Sequence[str], follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        """Log lines of the services, prefixed by compose with the service name. Read in
        bounded memory (engine/lines.py): a line longer than LINE_LIMIT comes cut, and a
        service that writes without newlines cannot make devenv hold all of it."""
        import subprocess

        argv = self._argv("logs", "--no-color", *(["--follow"] if follow else []),
                          *(["--tail", str(tail)] if tail is not None else []), *services)
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE,
                                       env=self.target.environ(self.environ))
        except OSError as exc:
            raise ComposeError(f"cannot run docker compose logs: {exc}") from exc
        said = _Tail(process.stderr)
        try:
            yield from _lines_of(process.stdout, LineSplitter(redraw=False))
            if process.wait():
                said.done()
                raise compose_error("logs", said.text(), self.target)
        finally:
            _end(process)
            if said.done():  # never close a pipe under the thread that reads it
                process.stderr.close()

    def version(self) -> str:
        return self._compose("version")

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
                                       stderr=subprocess.STDOUT,
                                       env=self.target.environ(self.environ),
                                       start_new_session=True)
        except OSError as exc:
            raise ComposeError(f"cannot start docker compose watch: {exc}") from exc
        return WatchProcess(process)



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
        """Its lines, in bounded memory (engine/lines.py); a carriage return ends a line
        too, as the text mode of a pipe read it."""
        for line in _lines_of(self._process.stdout, LineSplitter(redraw=False)):
            yield from line.split("\r") if "\r" in line else (line,)

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


def _lines_of(pipe: Any, lines: LineSplitter) -> Iterator[str]:
    """A pipe's lines as they come (each read returns what is there, up to 64 KiB)."""
    import os

    while chunk := os.read(pipe.fileno(), 65536):
        yield from lines.feed(chunk)
    yield from lines.end()


class _Tail:
    """The last 64 KiB a pipe says (a child's stderr), read in a thread so that the child
    never blocks on a full pipe."""

    def __init__(self, pipe: Any, keep: int = 64 * 1024):
        self._pipe, self._keep, self._said = pipe, keep, bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True, name="stderr")
        self._thread.start()

    def _read(self) -> None:
        import os

        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(self._pipe.fileno(), 65536):
                self._said += chunk
                del self._said[:-self._keep]

    def done(self) -> bool:
        """Wait for the end of what the child says (it has ended); False if something it
        started still holds the pipe after a few seconds."""
        self._thread.join(timeout=5)
        return not self._thread.is_alive()

    def text(self) -> str:
        return bytes(self._said).decode(errors="replace")


def _end(process: Any) -> None:
    """A child that is still running (its reader stopped early) is ended and reaped."""
    import subprocess

    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(OSError):
        process.stdout.close()


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




def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[-lines:])
