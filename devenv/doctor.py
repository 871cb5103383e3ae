"""`devenv doctor`: everything `up` needs, checked without starting anything.

Each check says ok, warn (up works, but look) or fail (up cannot work), and how to fix it.
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .catalog import SERVICES
from .engine import Engine, EngineInfo, connect
from .errors import DevenvError
from .settings import SPECS, Settings, load_settings

OK, WARN, FAIL = "ok", "warn", "fail"
DISK_FAIL_BYTES = 500 * 2**20
DISK_WARN_BYTES = 2 * 2**30


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def run_checks(project_dir: Path, environ: Mapping[str, str], flags: Mapping[str, str],
               env_file: Path | None) -> list[Check]:
    checks: list[Check] = []
    try:
        settings = load_settings(project_dir, environ, flags, env_file)
    except DevenvError as exc:
        return [Check("settings", FAIL, exc.message, exc.hint or "")]
    checks.append(Check("settings", OK, f"project {settings.project}, network "
                                         f"{settings.network}, bind {settings.bind}"))
    checks.extend(_unknown_keys(settings))
    engine, info, check = _engine(environ)
    checks.append(check)
    if engine is not None and info is not None:
        checks.append(_compose(engine, settings))
        allowed = ("allowed" if info.supports_start_interval
                   else "not allowed (needs Engine 25, API 1.44)")
        checks.append(Check("api level", OK, f"Engine API {info.api_version}: healthcheck "
                            f"start_interval {allowed}"))
        checks.extend(_ports(engine, info, settings))
        checks.extend(_images(engine, settings))
    checks.extend(_disk(settings, engine))
    checks.append(_writable(settings))
    return checks


def blocking(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def _guard(name: str, call: Callable[[], Check]) -> Check:
    try:
        return call()
    except DevenvError as exc:
        return Check(name, FAIL, exc.message, exc.hint or "")


def _engine(environ: Mapping[str, str]) -> tuple[Engine | None, EngineInfo | None, Check]:
    try:
        engine = connect(environ)
        info = engine.info()
    except DevenvError as exc:
        return None, None, Check("engine", FAIL, exc.message, exc.hint or "")
    where = f"remote host {info.remote_host}" if info.remote_host else engine.docker_host
    return engine, info, Check("engine", OK, f"Docker Engine {info.version} "
                                             f"(API {info.api_version}) at {where}")


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


def _ports(engine: Engine, info: EngineInfo, settings: Settings) -> list[Check]:
    from .launch import PortPlanner
    from .state import StateFile

    memory = StateFile(settings.state_dir).load(settings.project).ports
    plan = PortPlanner(engine, settings, memory, check_host=info.remote_host is None).plan(
        tuple(SERVICES))
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
                                f"DEVENV_{choice.service.upper()}_PORT"))
    if info.remote_host:
        checks.append(Check("ports", WARN, f"ports are checked against the containers of "
                            f"{info.remote_host} only", "processes on that host are invisible"))
    return checks


def _images(engine: Engine, settings: Settings) -> list[Check]:
    from .launch import api_build

    checks = []
    for name in SERVICES:
        image = settings.image(name)
        if name == "api" and api_build(settings) is not None:
            base = settings["DEVENV_API_BASE_IMAGE"]
            if settings["DEVENV_API_BUILD"] or engine.image_present(base):
                continue
            image = base
        if image and not engine.image_present(image):
            checks.append(Check(f"image {name}", WARN, f"{image} is not on this engine",
                                "up will try to pull it; without a registry, pull or build "
                                f"it first, or set DEVENV_{name.upper()}_IMAGE"))
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
        free = shutil.disk_usage(path if path.exists() else path.parent).free
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
        guess = difflib.get_close_matches(key, list(SPECS), n=1)
        hint = f"did you mean {guess[0]}?" if guess else "see .env.example for the settings"
        checks.append(Check(f".env {key}", WARN, f"{key} is not a devenv setting (ignored)",
                            hint))
    return checks


def _writable(settings: Settings) -> Check:
    target = settings.project_dir
    if os.access(target, os.W_OK):
        return Check("project directory", OK, f"{target} is writable")
    return Check("project directory", FAIL, f"{target} is not writable",
                 "devenv writes compose/ and .devenv/ there; run it where you can write")
