"""`devenv doctor`: everything `up` needs, checked without starting anything.

Each check says ok, warn (up works, but look) or fail (up cannot work), and how to fix it.
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..config.settings import Settings, load_settings_leniently
from ..context import Context
from ..engine import Engine, EngineInfo
from ..errors import DevenvError
from ..rows import Check

OK, WARN, FAIL = "ok", "warn", "fail"
DISK_FAIL_BYTES = 500 * 2**20
DISK_WARN_BYTES = 2 * 2**30


def run_checks(ctx: Context) -> list[Check]:
    """Every check, even when one fails: a bad setting fails the settings check and the
    rest run with what can be known (a bad value's default, except where it matters)."""
    checks: list[Check] = []
    settings, problems = load_settings_leniently(ctx.project_dir, ctx.environ, ctx.flags,
                                                 ctx.env_file)
    for problem in problems:
        checks.append(Check("settings", FAIL, problem.error.message, problem.error.hint or ""))
    if not problems:
        checks.append(Check("settings", OK, f"project {settings.project}, network "
                                             f"{settings.network}, bind {settings.bind}"))
    bad = {p.key for p in problems}
    checks.extend(_unknown_keys(settings))
    try:
        engine, info, check = _engine(ctx)
    except Exception as exc:  # noqa: BLE001 - doctor reports; it never stops half-way
        engine, info = None, None
        check = Check("engine", FAIL, f"internal error: {type(exc).__name__}: {exc}")
    checks.append(check)
    if engine is not None and info is not None:
        checks.append(_guard("compose", lambda: _compose(engine, settings)))
        allowed = ("allowed" if info.supports_start_interval
                   else "not allowed (needs Engine 25, API 1.44)")
        checks.append(Check("api level", OK, f"Engine API {info.api_version}: healthcheck "
                            f"start_interval {allowed}"))
        # Ports and images follow the settings: those of a bad value are not known.
        if not bad & {"", "DEVENV_PROJECT", "DEVENV_RESERVED_PORTS", "DEVENV_*_PORT"}:
            checks.extend(_guard_all("ports", lambda: _ports(engine, info, settings, bad)))
            checks.extend(_guard_all("host apps", lambda: _host_apps(engine, info, settings)))
        if "" not in bad:
            checks.extend(_guard_all("images", lambda: _images(engine, settings, bad)))
        if not bad & {"", "DEVENV_PROJECT", "DEVENV_NETWORK"}:
            checks.append(_guard("network", lambda: _network(engine, settings)))
    checks.extend(_guard_all("disk", lambda: _disk(settings, engine)))
    checks.append(_guard("project directory", lambda: _writable(settings)))
    if "" not in bad:
        checks.extend(_guard_all("tunnels", lambda: _tunnels(settings)))
    return checks


def blocking(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def _guard(name: str, call: Callable[[], Check]) -> Check:
    return _guard_all(name, lambda: [call()])[0]


def _guard_all(name: str, call: Callable[[], list[Check]]) -> list[Check]:
    """A check that cannot run is a failed check, never the end of the report."""
    try:
        return call()
    except DevenvError as exc:
        return [Check(name, FAIL, exc.message, exc.hint or "")]
    except OSError as exc:
        return [Check(name, FAIL, f"{exc.strerror or exc}"
                      + (f": {exc.filename}" if exc.filename else ""), "")]
    except Exception as exc:  # noqa: BLE001 - doctor reports; it never stops half-way
        return [Check(name, FAIL, f"internal error: {type(exc).__name__}: {exc}",
                      "run again with DEVENV_DEBUG=1 for the traceback, and report it")]


def _engine(ctx: Context) -> tuple[Engine | None, EngineInfo | None, Check]:
    try:
        engine = ctx.engine()
        info = engine.info()
    except DevenvError as exc:
        return None, None, Check("engine", FAIL, exc.message, exc.hint or "")
    remote = f", remote host {info.remote_host}" if info.remote_host else ""
    return engine, info, Check("engine", OK, f"Docker Engine {info.version} "
                                             f"(API {info.api_version}) at "
                                             f"{engine.docker_host}{remote}, "
                                             f"{engine.target.how}")


def _compose(engine: Engine, settings: Settings) -> Check:
    def check() -> Check:
        version = engine.compose(settings.project).version().strip()
        version = version.removeprefix("Docker Compose version ").strip()
        return Check("compose", OK, f"Docker Compose {version}")

    result = _guard("compose", check)
    if result.status == FAIL and shutil.which("docker-compose"):
        return Check("compose", FAIL, "only Docker Compose v1 (docker-compose) is installed",
                     "install the Compose v2 plugin (docker-compose-plugin); v1 is not "
                     "supported")
    return result


def _ports(engine: Engine, info: EngineInfo, settings: Settings,
           bad: set[str] | frozenset[str] = frozenset()) -> list[Check]:
    from ..config.state import StateFile
    from ..ports.planner import PortPlanner

    memory = StateFile(settings.state_dir).load(settings.project).ports
    services = tuple(n for n, spec in settings.catalog.items() if spec.port_key not in bad)
    plan = PortPlanner(engine, settings, memory, check_host=info.remote_host is None).plan(
        services)
    checks = []
    for choice in plan.choices:
        if not choice.moved:
            checks.append(Check(f"port {choice.service}", OK,
                                f"{choice.port} is free" if choice.rule != "running"
                                else f"{choice.port} (running)"))
        else:
            checks.append(Check(f"port {choice.service}", WARN, choice.describe(),
                                f"nothing to do: up uses {choice.port}; or free "
                                f"{choice.configured}, or set "
                                f"{settings.catalog[choice.service].port_key}"))
    if info.remote_host:
        checks.append(Check("ports", WARN, f"ports are checked against the containers of "
                            f"{info.remote_host} only", "processes on that host are invisible"))
    return checks


def _network(engine: Engine, settings: Settings) -> Check:
    from .networks import attached_containers, check_network

    description = engine.network(settings.network)
    attached = (attached_containers(description, engine.containers())
                if description and description.get("Containers") else [])
    network = check_network(settings.network, settings.project, tuple(settings.catalog),
                            description,
                            attached)
    if network.missing:
        return Check("network", OK, f"{settings.network} will be created by up")
    how = "joined (made outside this project)" if network.external else "this project's"
    return Check("network", OK, f"{settings.network}: bridge, {how}")


def _host_apps(engine: Engine, info: EngineInfo, settings: Settings) -> list[Check]:
    """The reserved host-app ports (frontend, Metro, Expo): free, or who holds them."""
    from ..ports.holders import HostPorts
    from ..ports.planner import _container_ports

    reserved = set(settings.reserved_ports)
    apps = [app for app in settings.catalog.host_apps if app.port in reserved]
    if not apps:
        return []
    host = HostPorts(_container_ports(engine, engine.containers()), settings.project,
                     check_host=info.remote_host is None)
    from ..hostapps.runtime import read_records

    records = read_records(settings.state_dir, settings.project)
    checks = []
    for app in apps:
        holder = host.get(app.port)
        name = f"host app {app.name}"
        record = records.get(app.name)
        if app.managed and record is not None and record.running:
            checks.append(Check(name, OK, f"{app.title} runs under devenv on {record.port}"))
        elif app.managed and holder is not None:
            checks.append(Check(name, WARN, f"{app.port} ({app.title}) is held by "
                                f"{holder.description}",
                                f"`devenv up` runs {app.label} on the next free port"))
        elif holder is None:
            checks.append(Check(name, OK, f"{app.port} is free for {app.title}"))
        else:
            checks.append(Check(name, WARN, f"{app.port} ({app.title}) is held by "
                                f"{holder.description}",
                                f"if that is not {app.label}, stop it before starting "
                                f"{app.label}; devenv never gives {app.port} to a container"))
    return checks


def _images(engine: Engine, settings: Settings,
            bad: set[str] | frozenset[str] = frozenset()) -> list[Check]:
    from ..render.builds import service_build

    checks = []
    kinds = {spec.key: spec.kind for spec in settings.specs}
    for name, spec in settings.catalog.items():
        built_from = (spec.build.source_setting, *spec.build.args.values()) if spec.build \
            else ()
        keys = {spec.image_key} | {k for k in built_from if k}
        if keys & bad:
            continue  # the settings check names it
        images = [settings.image(name)]
        build = service_build(settings, spec)
        if build is not None:
            # built: from the team's source (its Dockerfile names its base), or from the
            # bundled files with base images given as build arguments
            images = [] if spec.build is None or "image" not in build else [
                settings[key] for key in spec.build.args.values() if kinds.get(key) == "image"]
        for image in images:
            if image and not engine.image_present(image):
                checks.append(Check(f"image {name}", WARN, f"{image} is not on this engine",
                                    "up will try to pull it; without a registry, pull or "
                                    f"build it first, or set {spec.image_key}"))
    if not checks:
        checks.append(Check("images", OK, "every image is on the engine"))
    return checks


def _disk(settings: Settings, engine: Engine | None) -> list[Check]:
    paths = {"project directory": settings.project_dir}
    if engine is not None and engine.remote_host is None:
        root = engine.system_info().get("DockerRootDir")
        if root and os.path.isdir(root):
            paths["Docker data"] = Path(root)
    checks = []
    for label, path in paths.items():
        free = shutil.disk_usage(_existing(path)).free
        text = f"{free / 2**30:.1f} GiB free for the {label} ({path})"
        if free < DISK_FAIL_BYTES:
            checks.append(Check(f"disk {label}", FAIL, text, "free some disk space "
                                "(e.g. docker system prune)"))
        elif free < DISK_WARN_BYTES:
            checks.append(Check(f"disk {label}", WARN, text, "images and volumes may not fit"))
        else:
            checks.append(Check(f"disk {label}", OK, text))
    return checks


def _unknown_keys(settings: Settings) -> list[Check]:
    checks = []
    for key in settings.unknown_keys:
        guess = difflib.get_close_matches(key, list(settings.values), n=1)
        hint = f"did you mean {guess[0]}?" if guess else "see .env.example for the settings"
        checks.append(Check(f".env {key}", WARN, f"{key} is not a devenv setting (ignored)",
                            hint))
    return checks


def _existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _writable(settings: Settings) -> Check:
    target = settings.project_dir
    if not target.exists():
        ancestor = _existing(target)
        if ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK):
            return Check("project directory", WARN, f"{target} does not exist yet",
                         "devenv up creates it (with compose/ and .devenv/)")
        return Check("project directory", FAIL, f"{target} does not exist and cannot be "
                     f"created ({ancestor} is not a writable directory)",
                     "create it, or choose another --project-dir")
    if not target.is_dir():
        return Check("project directory", FAIL, f"{target} is not a directory",
                     "choose a directory with --project-dir")
    if os.access(target, os.W_OK):
        return Check("project directory", OK, f"{target} is writable")
    return Check("project directory", FAIL, f"{target} is not writable",
                 "devenv writes compose/ and .devenv/ there; run it where you can write")


def _tunnels(settings: Settings) -> list[Check]:
    """The project's SSH tunnels, checked without dialling anyone: the tables parse, the
    OpenSSH client is there and takes each tunnel's command line (`ssh -G` evaluates it
    with the project's options and ssh config, and connects to nothing), and a tunnel that
    was opened still runs. Never a failure: `up` does not need a tunnel."""
    import subprocess

    from ..tunnels.runtime import read_records, ssh_command
    from ..tunnels.tables import PROJECT_FILE, drift, parse_tunnels, recorded_spec

    records = read_records(settings.state_dir, settings.project)
    if not settings.catalog.tunnels and not records:
        return []
    try:
        specs = parse_tunnels(settings.project_dir / PROJECT_FILE, settings.catalog.tunnels,
                              settings.catalog)
    except DevenvError as exc:
        return [Check("tunnels", WARN, exc.message, exc.hint or "")]
    ssh = shutil.which("ssh")
    if specs and ssh is None:
        return [Check("tunnels", WARN, "the OpenSSH client (ssh) is not installed: "
                      f"{', '.join(specs)} cannot open",
                      "install it (Debian/Ubuntu: apt-get install openssh-client)")]
    checks = []
    for name, spec in specs.items():
        label = f"tunnel {name}"
        command = ssh_command(spec, spec.wanted_port, ssh or "ssh",
                              settings["DEVENV_SSH_CONFIG"])
        try:
            evaluated = subprocess.run([command[0], "-G", *command[1:]], capture_output=True,
                                       text=True, timeout=10, stdin=subprocess.DEVNULL)
            refused = evaluated.returncode != 0
            why = " ".join(evaluated.stderr.split())[:300] if refused else ""
        except (OSError, subprocess.TimeoutExpired) as exc:  # e.g. a `Match exec` that hangs
            refused, why = True, str(exc)
        if refused:
            checks.append(Check(label, WARN, f"ssh refuses its command line: {why}",
                                f"fix `ssh_options` of [tunnels.{name}] in {PROJECT_FILE}, "
                                "or the ssh config it reads"))
            continue
        record = records.get(name)
        if record is None:
            checks.append(Check(label, OK, f"via {spec.via} to {spec.target}: not open"))
        elif record.running:
            changed = drift(recorded_spec(name, record.meta), record.meta, spec,
                            settings["DEVENV_SSH_CONFIG"])
            if changed:  # what runs is not what devenv.toml says now
                checks.append(Check(label, WARN, f"{record.state} on 127.0.0.1:{record.port}, "
                                    f"but devenv.toml changed since it was opened: {changed}",
                                    f"devenv tunnel up {name}"))
            else:
                checks.append(Check(label, OK, f"{record.state} on 127.0.0.1:{record.port} "
                                               f"via {spec.via}"))
        else:
            what = "gave up" if record.state == "failed" else "its ssh no longer runs"
            why = f": {record.last_error}" if record.last_error else ""
            checks.append(Check(label, WARN, f"was opened, but {what}{why}",
                                f"devenv tunnel up {name}"))
    for name, record in records.items():
        if name not in specs and record.running:
            checks.append(Check(f"tunnel {name}", WARN, f"{record.state} on 127.0.0.1:"
                                f"{record.port}, but no longer declared in {PROJECT_FILE}",
                                f"devenv tunnel down {name}"))
    return checks
