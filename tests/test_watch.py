"""The watch rules devenv renders, compose watch's lines as signals, and steps with times."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.config.settings import load_settings
from devenv.errors import EXIT_DOCKER, EXIT_USAGE, DockerUnavailableError
from devenv.render.watch_rules import WatchPathError, watch_rules
from devenv.stack.watch import (
    Signal,
    Step,
    Tracker,
    WatchEvent,
    check_compose_version,
    describe_rules,
    format_event,
    parse_line,
)


def team_api(tmp_path: Path, *files: str) -> Path:
    folder = tmp_path / "backend"
    folder.mkdir()
    for name in ("Dockerfile", *files):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    return folder


def test_node_api_syncs_source_and_rebuilds_on_its_manifest(tmp_path):
    folder = team_api(tmp_path, "package.json", "package-lock.json", "src/index.ts")
    settings = load_settings(tmp_path, {"DEVENV_API_BUILD": str(folder)}, {})
    rules = watch_rules(settings, {"context": str(folder)}, tmp_path / "compose", strict=True)
    sync, *rebuild = rules
    assert sync["action"] == "sync+restart" and sync["path"] == str(folder)
    assert sync["target"] == "/app"
    assert {"node_modules", "Dockerfile", "package.json"} <= set(sync["ignore"])
    assert [r["path"] for r in rebuild] == [f"{folder}/Dockerfile", f"{folder}/package.json",
                                            f"{folder}/package-lock.json"]


def test_python_api_rebuilds_on_requirements(tmp_path):
    folder = team_api(tmp_path, "requirements.txt", "app/main.py")
    settings = load_settings(tmp_path, {"DEVENV_API_WATCH_SYNC": "app",
                                        "DEVENV_API_WATCH_ACTION": "sync"}, {})
    rules = watch_rules(settings, {"context": str(folder)}, tmp_path, strict=True)
    assert rules[0] == {"action": "sync", "path": f"{folder}/app", "target": "/app/app",
                        "ignore": rules[0]["ignore"]}
    assert [r["path"].rsplit("/", 1)[1] for r in rules[1:]] == ["Dockerfile",
                                                                "requirements.txt"]


def test_reference_api_is_synced_but_never_rebuilt(tmp_path):
    (tmp_path / "compose" / "api").mkdir(parents=True)
    settings = load_settings(tmp_path, {}, {})
    build = {"context": "./api", "args": {}, "image": "devenv-reference-api:abc"}
    rules = watch_rules(settings, build, tmp_path / "compose")
    assert [r["action"] for r in rules] == ["sync+restart"]
    assert rules[0]["path"] == "./api" and "Dockerfile" in rules[0]["ignore"]


def test_a_watch_path_that_does_not_exist_is_named(tmp_path):
    folder = team_api(tmp_path)
    settings = load_settings(tmp_path, {"DEVENV_API_WATCH_SYNC": "src,lib"}, {})
    with pytest.raises(WatchPathError) as caught:
        watch_rules(settings, {"context": str(folder)}, tmp_path, strict=True)
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.message == f"DEVENV_API_WATCH_SYNC: src does not exist in {folder}"
    # a plain `up` renders what exists and does not fail on a watch setting
    assert [r["action"] for r in watch_rules(settings, {"context": str(folder)},
                                             tmp_path)] == ["rebuild"]


def test_a_missing_rebuild_file_fails_only_when_configured(tmp_path):
    folder = team_api(tmp_path)
    default = load_settings(tmp_path, {}, {})
    assert len(watch_rules(default, {"context": str(folder)}, tmp_path, strict=True)) == 2
    named = load_settings(tmp_path, {"DEVENV_API_WATCH_REBUILD": "go.mod"}, {})
    with pytest.raises(WatchPathError, match="DEVENV_API_WATCH_REBUILD: go.mod"):
        watch_rules(named, {"context": str(folder)}, tmp_path, strict=True)


def test_no_build_no_rules(tmp_path):
    assert watch_rules(load_settings(tmp_path, {}, {}), None, tmp_path) == ()


@pytest.mark.parametrize("value", ["/etc", "../up", "src/../../x"])
def test_watch_paths_stay_inside_the_build_folder(tmp_path, value):
    from devenv.errors import SettingError

    with pytest.raises(SettingError, match="DEVENV_API_WATCH_SYNC"):
        load_settings(tmp_path, {"DEVENV_API_WATCH_SYNC": value}, {})


def test_bad_watch_action_is_a_setting_error(tmp_path):
    from devenv.errors import SettingError

    with pytest.raises(SettingError, match="not a watch action"):
        load_settings(tmp_path, {"DEVENV_API_WATCH_ACTION": "rebuild"}, {})


# Lines as Compose 2.26 prints them (ANSI erase-line codes included).
@pytest.mark.parametrize("line, signal", [
    ("\x1b[2KWatch enabled", Signal("enabled")),
    ('\x1b[2KSyncing "api" after changes were detected', Signal("sync", "api")),
    (" Container t1-api-1  Restarting", Signal("restarting", "t1-api-1")),
    (" Container t1-api-1  Started", Signal("started", "t1-api-1")),
    ('\x1b[2KRebuilding service "api" after changes were detected...',
     Signal("rebuild", "api")),
    ('\x1b[2Kservice "api" successfully built', Signal("built", "api")),
    ("\x1b[2KBuild failed. Error: failed to solve: exit code: 1",
     Signal("build-failed", "failed to solve: exit code: 1")),
    ('time="2026-11-26T17:17:19Z" level=warning msg="Error handling changed files for '
     'service api: failed to solve: exit code: 1"',
     Signal("error", "Error handling changed files for service api: failed to solve: "
            "exit code: 1")),
    ("none of the selected services is configured for watch, consider setting an "
     "'develop' section", Signal("fatal", "none of the selected services is configured "
                                 "for watch, consider setting an 'develop' section")),
    ("#6 [api 2/3] COPY server.py /app/server.py", Signal("output",
                                                          "#6 [api 2/3] COPY server.py "
                                                          "/app/server.py")),
])
def test_compose_watch_lines(line, signal):
    assert parse_line(line) == signal


def test_sync_and_restart_is_one_step_with_its_duration():
    t = Tracker()
    assert t.feed(Signal("enabled"), 0.0) == Step("watching")
    assert t.feed(Signal("sync", "api"), 10.0) is None
    assert t.feed(Signal("restarting", "x"), 10.1) is None
    assert t.feed(Signal("started", "x"), 10.5) == Step("restarted", 0.5)


def test_plain_sync_is_a_step_at_once():
    assert Tracker(action="sync").feed(Signal("sync", "api"), 1.0) == Step("synced", 0.0)


def test_rebuild_ok_and_failed_once_with_the_build_output():
    t = Tracker()
    t.feed(Signal("rebuild", "api"), 1.0)
    t.feed(Signal("output", "#8 ERROR: executor failed"), 1.5)
    step = t.feed(Signal("build-failed", "failed to solve"), 2.0)
    assert step == Step("rebuild-failed", 1.0, "failed to solve\n#8 ERROR: executor failed")
    # Compose repeats the failure as a warning: not a second event
    assert t.feed(Signal("error", "Error handling changed files for service api: "
                                  "failed to solve"), 2.1) is None
    t.feed(Signal("rebuild", "api"), 5.0)
    assert t.feed(Signal("built", "api"), 7.5) == Step("rebuilt", 2.5)
    assert t.feed(Signal("error", "Post restart: context canceled"), 8.0) == \
        Step("error", None, "Post restart: context canceled")


def test_a_deleted_file_the_container_may_not_delete_is_said_plainly():
    # Compose 2.26's line when `rm` as the container's user (uid 65534) fails on root's files
    line = ('time="2026-11-26T20:14:06Z" level=warning msg="Error handling changed files for '
            'service api: 1 error occurred:\\n\\t* deleting paths in 2f21cce328a7: exit '
            'code 1\\n\\n"')
    step = Tracker().feed(parse_line(line), 1.0)
    assert step == Step("delete-failed", None,
                        "Error handling changed files for service api: 1 error occurred:\n"
                        "* deleting paths in 2f21cce328a7: exit code 1")
    event = WatchEvent(step.kind, "api", "http://127.0.0.1:7777", None, "ready", 0.02,
                       step.detail, "20:14:06")
    assert format_event(event).splitlines()[0] == (
        "20:14:06 api: a deleted file is still in the container; ready after 0.02 s at "
        "http://127.0.0.1:7777 (the container's user may not delete it there, so the old "
        "copy keeps serving; restore the file, or let the image's user own its folder, e.g. "
        "COPY --chown)")


def test_old_compose_is_named_with_the_version_needed():
    check_compose_version((2, 23, 0), "sync+restart")
    check_compose_version(None, "sync+restart")  # unknown: let compose say
    check_compose_version((2, 22, 0), "sync")
    with pytest.raises(DockerUnavailableError) as caught:
        check_compose_version((2, 21, 0), "sync+restart")
    assert caught.value.exit_code == EXIT_DOCKER
    assert caught.value.message == ("Docker Compose 2.21.0 cannot watch with sync+restart: "
                                    "devenv watch needs Compose 2.23.0 or newer")


def test_events_read_as_a_log():
    url = "http://127.0.0.1:7777"
    assert format_event(WatchEvent("restarted", "api", url, 0.42, "ready", 0.31,
                                   at="10:00:00")) == \
        "10:00:00 api: synced and restarted in 0.42 s; ready after 0.31 s at " + url
    failed = format_event(WatchEvent("rebuild-failed", "api", url, 1.0, "ready", 0.0,
                                     "failed to solve", "10:00:01"))
    assert "rebuild FAILED in 1.00 s" in failed and "keeps serving; save again" in failed
    exited = format_event(WatchEvent("restarted", "api", url, 0.3, "exited", None,
                                     "No module named 'greeting'", "10:00:02"))
    assert "; exited (fix or restore the file" in exited
    assert exited.endswith("\n  No module named 'greeting'")
    rules = ({"action": "sync+restart", "path": "./api", "target": "/app"},
             {"action": "rebuild", "path": "/b/Dockerfile"})
    assert describe_rules(rules) == "sync ./api -> /app (sync+restart); rebuild on Dockerfile"


def test_rules_rendered_reads_the_compose_file(tmp_path):
    from dataclasses import replace

    from devenv.render.templates import RenderInput, render_stack, write_outputs
    from devenv.stack.watch import rules_rendered

    settings = load_settings(tmp_path, {}, {})
    rules = ({"action": "sync+restart", "path": "./api", "target": "/app", "ignore": ["x"]},)
    data = RenderInput(project="p", network="p", network_external=False, bind="127.0.0.1",
                       url_host="127.0.0.1", services=("api",), ports={"api": 7777},
                       values=settings.values, secrets={}, start_interval=False,
                       catalog=settings.catalog,
                       builds={"api": {"context": "./api", "args": {}}})
    compose = tmp_path / "compose"
    assert not rules_rendered(compose, rules)  # nothing rendered yet
    write_outputs(compose, render_stack(replace(data, watches={"api": rules})))
    assert rules_rendered(compose, rules)
    other = ({**rules[0], "path": "./api/src"},)
    assert not rules_rendered(compose, other)  # settings changed since: up renders again
    # the dev command too: `devenv watch` renders and recreates when it changed
    assert rules_rendered(compose, rules, "api", "")
    assert not rules_rendered(compose, rules, "api", "node --watch x.js")
    dev = load_settings(tmp_path, {"DEVENV_API_COMMAND": "node --watch 'x.js' # $PORT"}, {})
    write_outputs(compose, render_stack(replace(data, values=dev.values,
                                                watches={"api": rules})))
    assert rules_rendered(compose, rules, "api", "node --watch 'x.js' # $PORT")
    assert not rules_rendered(compose, rules, "api", "")
    assert not rules_rendered(compose, rules, "api", "node --watch y.js")


# --- follow(): compose watch's output in, events out, on a fake engine ---------------------
class FakeProcess:
    def __init__(self, lines, hold=False):
        self._lines, self._hold, self.stopped = lines, hold, False

    def lines(self):
        yield from self._lines
        if self._hold:  # a watch that is still running when the user presses Ctrl-C
            raise KeyboardInterrupt

    def returncode(self):
        return 1

    def stop(self):
        self.stopped = True


class FakeEngine:
    """The engine seam as follow() uses it: one running API container that publishes a real
    local HTTP server's port, and a compose whose watch prints canned lines."""

    remote_host = None

    def __init__(self, port, process, project="p"):
        from devenv.engine import Container, Published

        self.api = Container("c1", "p-api-1", project, "api", "running", "", "Up",
                             (Published("127.0.0.1", port, 7777),))
        self.process = process

    def containers(self, project=None, all=True):
        return [self.api]

    def logs(self, container_id, tail=20):
        return ""

    def compose(self, project, compose_file=None):
        engine = self

        class FakeCompose:
            def running_container(self, service):
                return engine.api

            def watch(self, services):
                return engine.process

        return FakeCompose()


@pytest.fixture
def health_server():
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def plan_for(tmp_path):
    from devenv.stack.watch import WatchPlan

    settings = load_settings(tmp_path, {"DEVENV_PROJECT": "p"}, {})
    return WatchPlan(settings, ({"action": "sync+restart", "path": ".", "target": "/app"},),
                     ".", True)


def test_follow_turns_lines_into_probed_events_and_ctrl_c_stops_watch(tmp_path,
                                                                      health_server):
    from devenv.stack.watch import follow

    process = FakeProcess(["\x1b[2KWatch enabled",
                           '\x1b[2KSyncing "api" after changes were detected',
                           " Container p-api-1  Restarting", " Container p-api-1  Started"],
                          hold=True)
    events = []
    with pytest.raises(KeyboardInterrupt):
        for event in follow(None, plan_for(tmp_path), engine=FakeEngine(health_server,
                                                                        process)):
            events.append(event)
    assert [(e.kind, e.state) for e in events] == [("watching", ""), ("restarted", "ready")]
    assert events[1].url == f"http://127.0.0.1:{health_server}"
    assert events[1].ready_seconds is not None
    assert process.stopped  # compose watch is never left behind


def test_follow_says_when_compose_watch_stops_by_itself(tmp_path, health_server):
    from devenv.errors import ComposeError
    from devenv.stack.watch import follow

    process = FakeProcess(["\x1b[2KWatch enabled", "some last words"])
    with pytest.raises(ComposeError) as caught:
        list(follow(None, plan_for(tmp_path), engine=FakeEngine(health_server, process)))
    assert caught.value.message == "docker compose watch stopped (exit 1)"
    assert caught.value.exit_code == 1 and "some last words" in caught.value.detail
    assert process.stopped


def test_follow_refuses_a_file_without_watch_rules(tmp_path, health_server):
    from devenv.errors import ComposeError
    from devenv.stack.watch import follow

    process = FakeProcess(["none of the selected services is configured for watch, "
                           "consider setting an 'develop' section"])
    with pytest.raises(ComposeError, match="docker compose watch refused") as caught:
        list(follow(None, plan_for(tmp_path), engine=FakeEngine(health_server, process)))
    assert "devenv up --watch" in caught.value.hint


# --- --logs: the service's own output between the events ---------------------------------
class FakeLogStream:
    """A followed container log: its lines, then the end (the container stopped) or, with
    `hold`, nothing more until close()."""

    def __init__(self, lines, hold=False):
        import threading

        self._lines, self._hold, self.closed = lines, hold, threading.Event()

    def __iter__(self):
        yield from self._lines
        if self._hold:
            self.closed.wait(10)

    def close(self):
        self.closed.set()


class HeldProcess(FakeProcess):
    """compose watch that runs until the test has seen what it wants, then gets Ctrl-C."""

    def __init__(self, lines):
        import threading

        super().__init__(lines)
        self.release = threading.Event()

    def lines(self):
        yield from self._lines
        self.release.wait(10)
        raise KeyboardInterrupt


def test_logs_come_between_the_events_masked_and_across_a_restart(tmp_path, health_server):
    from devenv.stack.watch import LOG_CATCH_UP, WatchPlan, follow

    process = HeldProcess(["\x1b[2KWatch enabled"])
    engine = FakeEngine(health_server, process)
    first = FakeLogStream(["listening on 7777", "connecting with S3cret-pw"])
    after_restart = FakeLogStream(["src/a.ts(1,14): error TS2322: Type 'string' is not "
                                   "assignable to type 'number'."], hold=True)
    streams = [first, after_restart]
    asked = []

    def follow_logs(container_id, tail=100, since=None, limit=0):
        asked.append((container_id, tail, since))
        return streams.pop(0)

    engine.follow_logs = follow_logs
    settings = load_settings(tmp_path, {"DEVENV_PROJECT": "p",
                                        "DEVENV_POSTGRES_PASSWORD": "S3cret-pw"}, {})
    plan = WatchPlan(settings, ({"action": "sync", "path": ".", "target": "/app"},), ".", True)
    events = []
    with pytest.raises(KeyboardInterrupt):
        for event in follow(None, plan, engine=engine, logs=True):
            events.append(event)
            if len([e for e in events if e.kind == "log"]) == 3:
                process.release.set()
    logs = [e.detail for e in events if e.kind == "log"]
    assert logs == ["listening on 7777", "connecting with ***",
                    "src/a.ts(1,14): error TS2322: Type 'string' is not assignable to type "
                    "'number'."]
    assert format_event(events[-1]).startswith("api | src/a.ts(1,14): error TS2322")
    # the first stream only from now on; after the restart, everything since it ended
    assert asked[0] == ("c1", 0, None)
    assert asked[1][0] == "c1" and asked[1][1] == LOG_CATCH_UP and asked[1][2] is not None
    assert after_restart.closed.is_set() and process.stopped  # nothing left behind


def test_without_logs_the_service_log_is_not_followed(tmp_path, health_server):
    from devenv.stack.watch import follow

    engine = FakeEngine(health_server, FakeProcess(["\x1b[2KWatch enabled"], hold=True))
    engine.follow_logs = lambda *a, **k: pytest.fail("followed the log without --logs")
    with pytest.raises(KeyboardInterrupt):
        list(follow(None, plan_for(tmp_path), engine=engine))


def test_logs_without_watch_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from devenv.cli.main import cli

    result = CliRunner().invoke(cli, ["--project-dir", str(tmp_path), "up", "--logs"])
    assert result.exit_code == EXIT_USAGE
    assert "--logs prints the API's output while watching: add --watch" in result.output


def test_the_last_log_lines_of_an_api_that_exits_after_a_sync_are_masked(tmp_path):
    """What the API wrote before it died is shown (fix the file, the next save restarts it),
    through the same mask as `devenv logs`: its connection URL holds the password."""
    import socket
    from dataclasses import replace

    from devenv.stack.watch import WatchPlan, follow

    with socket.socket() as s:  # a port nothing answers on: the API is down
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]

    class Exiting(FakeProcess):
        def lines(self):
            yield "\x1b[2KWatch enabled"
            yield '\x1b[2KSyncing "api" after changes were detected'
            yield " Container p-api-1  Restarting"
            engine.api = replace(engine.api, state="exited", status="Exited (1) 1 second ago")
            yield " Container p-api-1  Started"
            raise KeyboardInterrupt

    engine = FakeEngine(closed, Exiting([]))
    engine.logs = lambda container_id, tail=20: (
        "connecting to postgresql://app:S3cret-pw@db:5432/app\n"
        "Error: password authentication failed; DB_PASSWORD=S3cret-pw\n")
    settings = load_settings(tmp_path, {"DEVENV_PROJECT": "p",
                                        "DEVENV_POSTGRES_PASSWORD": "S3cret-pw"}, {})
    plan = WatchPlan(settings, ({"action": "sync+restart", "path": ".", "target": "/app"},),
                     ".", True)
    events = []
    with pytest.raises(KeyboardInterrupt):
        for event in follow(None, plan, engine=engine):
            events.append(event)
    [restarted] = [e for e in events if e.kind == "restarted"]
    assert restarted.state == "exited"
    shown = format_event(restarted)
    assert "last log lines of api:" in shown
    assert "postgresql://app:***@db:5432/app" in shown and "DB_PASSWORD=***" in shown
    assert "S3cret-pw" not in shown
