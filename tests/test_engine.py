"""The engine seam's pure parts: HTTP parsing, Docker's error words, container records."""

from __future__ import annotations

import pytest

from devenv.engine import PortRaceError, compose_error, remote_host_of
from devenv.engine.api import Engine, LogStream, _container
from devenv.engine.dockercontext import EngineTarget
from devenv.engine.lines import LINE_LIMIT, CutLine, LineSplitter
from devenv.engine.transport import _parse_response, _Stream
from devenv.errors import ComposeError, DockerUnavailableError, ImageMissingError


def test_parse_plain_and_chunked_responses():
    assert _parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\n[1]") == (200, b"[1]")
    chunked = (b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert _parse_response(chunked) == (404, b"abcde")
    with pytest.raises(ComposeError):
        _parse_response(b"garbage")


TARGET = EngineTarget(host="unix:///x", context="", source="DOCKER_HOST")


def _frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


class _FakeAPI:
    """The Engine API as Engine.logs reads it: a body streamed in chunks."""

    target = TARGET

    def __init__(self, chunks):
        self.chunks = chunks

    def stream(self, path, query=None, timeout=None):
        return _Stream(200, iter(self.chunks), lambda: None)


def test_last_log_lines_strip_frame_headers_and_keep_only_the_tail():
    engine = Engine.__new__(Engine)
    engine._api = _FakeAPI([_frame(1, b"one\nout"), _frame(2, b"err\ntwo\nthree\n")])
    assert engine.logs("c1", 2) == "two\nthree\n"
    engine._api = _FakeAPI([b"tty output\r\nlast words"])  # a TTY: no frames
    assert engine.logs("c1", 10) == "tty output\nlast words\n"


def _peak_while(work) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_log_written_without_newlines_is_held_in_bounded_memory():
    """A progress bar redrawn with a carriage return, then one endless JSON document: the
    reader holds at most one line's limit, the bar comes as its last state, the document
    as its head, cut and said, as soon as it passes the limit."""
    chunk = b"".join(b"\rprogress %3d%%" % (i % 100) for i in range(4096))  # ~60 KB
    body = [_frame(1, chunk) for _ in range(160)] + [_frame(1, b"\rdone 100%\n")]
    body += [_frame(1, b'{"blob": "' + b"A" * 65536) for _ in range(160)]
    body += [_frame(1, b'"}\nnext line\n')]
    lines: list[str] = []
    limit = 64 * 1024
    peak = _peak_while(lambda: lines.extend(LogStream(_Stream(200, iter(body), lambda: None),
                                                      TARGET, limit)))
    assert lines[0] == "done 100%" and lines[-1] == "next line" and len(lines) == 3
    cut = lines[1]
    assert isinstance(cut, CutLine) and cut.head == '{"blob": "' + "A" * (limit - 10)
    assert cut.endswith("[... cut: the line is longer than 64 KiB]")
    assert peak < 8 * limit, f"{peak} bytes held for 20 MB of log"  # not the 20 MB
    assert LINE_LIMIT == 1 << 20  # what every other reader holds of a line at most


def test_a_frame_is_passed_on_as_it_comes_not_gathered_whole():
    """A frame header may announce more than will ever come (a huge or endless write):
    its lines are given while it streams."""
    from devenv.engine import LogDemuxer

    demux = LogDemuxer()
    header = bytes([1, 0, 0, 0]) + (1 << 30).to_bytes(4, "big")
    assert demux.feed(header + b"first\nsec") == ["first"]
    assert demux.feed(b"ond\n") == ["second"]


def test_lines_split_anywhere_come_whole_and_crlf_is_one_end():
    raw = "héllo\r\nwörld\n".encode()
    for cut in range(1, len(raw)):
        lines = LineSplitter()
        assert lines.feed(raw[:cut]) + lines.feed(raw[cut:]) == ["héllo", "wörld"], cut


def test_a_cut_never_splits_a_character():
    lines = LineSplitter(limit=10)
    [cut] = lines.feed("abcdefghi€ and more".encode())  # € is 3 bytes at 9..11
    assert cut.head == "abcdefghi"
    assert lines.feed(b" still the same line\nnew\n") == ["new"]
    assert lines.end() == []


@pytest.mark.parametrize("stderr, port", [
    ("Error response from daemon: driver failed programming external connectivity on "
     "endpoint x: Bind for 127.0.0.1:5433 failed: port is already allocated", 5433),
    ("Error starting userland proxy: listen tcp4 127.0.0.1:6380: bind: address already in use",
     6380),
])


def test_port_race_is_recognised(stderr, port):
    error = compose_error("up", stderr)
    assert isinstance(error, PortRaceError) and error.port == port


def test_missing_compose_and_images_and_engine():
    assert isinstance(compose_error("up", "docker: 'compose' is not a docker command."),
                      DockerUnavailableError)
    pull = compose_error("up", "redis Error pull access denied for devenv-test/nope, "
                                "repository does not exist")
    assert isinstance(pull, ImageMissingError) and "devenv-test/nope" in pull.message
    assert isinstance(compose_error("up", "Cannot connect to the Docker daemon at unix://x"),
                      DockerUnavailableError)
    other = compose_error("up", "line one\nservice \"x\" refers to undefined volume y")
    assert type(other) is ComposeError and "undefined volume y" in other.message


def test_remote_hosts():
    assert remote_host_of("unix:///var/run/docker.sock") is None
    assert remote_host_of("tcp://127.0.0.1:2375") is None
    assert remote_host_of("tcp://build-box:2376") == "build-box"
    assert remote_host_of("ssh://me@10.0.0.5") == "10.0.0.5"


def test_container_record_from_the_list_endpoint():
    c = _container({
        "Id": "abc", "Names": ["/p-postgres-1"], "State": "running",
        "Status": "Up 3 minutes (health: starting)",
        "Ports": [{"IP": "127.0.0.1", "PrivatePort": 5432, "PublicPort": 5433, "Type": "tcp"},
                  {"PrivatePort": 9, "Type": "tcp"}],
        "Labels": {"com.docker.compose.project": "p", "com.docker.compose.service": "postgres",
                   "com.docker.compose.project.working_dir": "/x/compose"},
    })
    assert (c.name, c.project, c.service, c.health, c.running) == \
        ("p-postgres-1", "p", "postgres", "starting", True)
    assert c.host_port(5432).host_port == 5433 and c.host_port(9) is None


@pytest.mark.parametrize("stderr, image", [
    ("Error response from daemon: manifest for redis:99 not found: manifest unknown", "redis:99"),
    ('failed to resolve reference "docker.io/library/x:1": dial tcp: lookup '
     "registry-1.docker.io: no such host", "docker.io/library/x:1"),
    ("Error response from daemon: pull access denied for team/api, repository does not exist "
     "or may require 'docker login'", "team/api"),
])


def test_pull_failures_name_the_image(stderr, image):
    error = compose_error("up", stderr)
    assert isinstance(error, ImageMissingError)
    assert error.message == f"image {image} is not on this engine and could not be pulled"


def test_compose_versions_are_read_in_every_spelling():
    from devenv.engine import parse_compose_version

    assert parse_compose_version("2.26.1-4\n") == (2, 26, 1)
    assert parse_compose_version("v2.22.0") == (2, 22, 0)
    assert parse_compose_version("Docker Compose version v2.30") == (2, 30, 0)
    assert parse_compose_version("garbage") is None


class _Engine:
    """Just enough engine for Compose.exec/run: containers, and removal after an interrupt."""

    def __init__(self, state="running"):
        from devenv.engine import Container

        self.removed = []
        self._containers = [Container("abc123", "p-api-1", "p", "api", state, "", "", ())]

    def containers(self, project=None, all=True):
        return self._containers

    def remove_container(self, name):
        self.removed.append(name)
        return True


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A `docker` that prints its arguments, one a line, and exits 5."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\nexit 5\n')
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def _compose(engine, tmp_path):
    from devenv.engine import Compose

    return Compose("p", tmp_path / "docker-compose.yml", {"PATH": __import__("os")
                                                            .environ["PATH"]}, engine=engine)


def test_exec_runs_in_the_running_container_with_its_exit_code(tmp_path, fake_docker):
    result = _compose(_Engine(), tmp_path).exec("api", ["ls", "-la"], tty=False,
                                                env={"A": "1"}, user="postgres",
                                                capture=True)
    assert result.code == 5
    assert result.stdout.splitlines() == ["exec", "-i", "-e", "A=1", "-u", "postgres",
                                               "abc123", "ls", "-la"]


def test_exec_into_a_stopped_service_names_it(tmp_path, fake_docker):
    from devenv.engine import ServiceNotRunningError

    with pytest.raises(ServiceNotRunningError) as caught:
        _compose(_Engine("exited"), tmp_path).exec("api", ["true"])
    assert caught.value.message == "api is not running in project p (its container is exited)"
    assert caught.value.hint == "start it with `devenv up --only api`"


def test_run_is_a_removed_one_off_without_a_tty_in_scripts(tmp_path, fake_docker):
    result = _compose(_Engine(), tmp_path).run("api", ["npm", "test"], tty=False,
                                               name="p-api-run-1", capture=True)
    args = result.stdout.splitlines()
    assert args[args.index("run"):] == ["run", "--rm", "--no-deps", "--name", "p-api-run-1",
                                        "-T", "api", "npm", "test"]
    assert args[:3] == ["compose", "-p", "p"]


def test_an_interrupted_run_removes_its_container(tmp_path, monkeypatch):
    from devenv.engine import RunInterruptedError
    from devenv.engine import compose as engine_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_module, "_run_attached", interrupted)
    monkeypatch.setattr(engine_module, "_docker_cli", lambda: "docker")
    fake = _Engine()
    with pytest.raises(RunInterruptedError) as caught:
        _compose(fake, tmp_path).run("api", ["sleep", "9"], name="p-api-run-2")
    assert caught.value.exit_code == 130
    assert fake.removed == ["p-api-run-2"]
    assert caught.value.message == "interrupted; the one-off container p-api-run-2 was removed"


def test_a_terminated_run_removes_its_container_and_exits_143(tmp_path, monkeypatch):
    from devenv.engine import RunInterruptedError
    from devenv.engine import compose as engine_module
    from devenv.errors import Terminated

    def terminated(*args, **kwargs):
        raise Terminated

    monkeypatch.setattr(engine_module, "_run_attached", terminated)
    monkeypatch.setattr(engine_module, "_docker_cli", lambda: "docker")
    fake = _Engine()
    with pytest.raises(RunInterruptedError) as caught:
        _compose(fake, tmp_path).run("api", ["sleep", "9"], name="p-api-run-3")
    assert caught.value.exit_code == 143 and fake.removed == ["p-api-run-3"]
    assert caught.value.message.startswith("terminated; the one-off container p-api-run-3")


def test_only_the_engine_package_imports_docker():
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "devenv"
    found = []
    for path in package.rglob("*.py"):
        if path.parent.name == "engine":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names
                      if n.split(".")[0] in ("docker", "python_on_whales")]
    assert found == []


def test_a_child_ssh_stderr_is_caught_while_it_first_connects(capfd):
    """What ssh prints when DOCKER_HOST=ssh:// fails becomes part of devenv's one line."""
    import subprocess
    import sys
    import tempfile

    from devenv.engine.transport import _last_line_of, _stderr_into

    with tempfile.TemporaryFile() as caught:
        with _stderr_into(caught):
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write("
                            "'noise\\nssh: Could not resolve hostname x: Name or service "
                            "not known\\n')"], check=True)
        assert _last_line_of(caught) == ("ssh: Could not resolve hostname x: Name or service "
                                         "not known")
    assert capfd.readouterr().err == ""


def test_a_cut_line_is_known_by_its_note_also_once_joined_with_others():
    from devenv.engine.lines import split_cut

    [cut] = LineSplitter(limit=8).feed(b"0123456789")
    assert split_cut(cut) == ("01234567", " [... cut: the line is longer than 8 bytes]")
    assert split_cut(str(cut)) == split_cut(cut) and split_cut("a whole line") is None
