"""What devenv keeps under .devenv/: remembered ports, generated secrets, the project lock.

Every write goes to a temporary file that is renamed over the old one, so a crash, a full
disk or Ctrl-C leaves either the old file or the new one, never half of one. A corrupt
state file is set aside with a warning; it never stops `up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as _secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LockedError, StateError
from .ports import Memory
from .settings import SETTINGS, Settings

STATE_SCHEMA = 1


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` through a temp file and a rename; `mode` from the start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror}",
                         hint="check that the project directory is writable and the disk "
                         "has room") from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateError(f"cannot write {path}: {exc.strerror}",
                         hint="check free disk space and permissions; the previous file "
                         "is unchanged") from exc


@dataclass(frozen=True)
class ProjectState:
    ports: Mapping[str, Memory] = field(default_factory=dict)
    #: fingerprint of the rendered files at the last successful `up`
    fingerprint: str = ""
    #: service -> container id at the last successful `up`
    containers: Mapping[str, str] = field(default_factory=dict)
    #: change detector of the API's build context at its last build
    build: str = ""


class StateFile:
    """.devenv/state.json: one entry per Compose project run from this directory."""

    def __init__(self, state_dir: Path, warn: Callable[[str], None] | None = None):
        self.path = state_dir / "state.json"
        self._warn = warn or (lambda message: None)

    def _read_all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("projects", {}), dict):
                raise ValueError("not a devenv state file")
            return data
        except FileNotFoundError:
            return {"schema": STATE_SCHEMA, "projects": {}}
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            aside = self.path.with_name(f"state.corrupt-{int(time.time())}.json")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            self._warn(f"{self.path} was unreadable ({exc.__class__.__name__}); set aside as "
                       f"{aside.name}, starting with no remembered ports")
            return {"schema": STATE_SCHEMA, "projects": {}}

    def load(self, project: str) -> ProjectState:
        entry = self._read_all()["projects"].get(project) or {}
        try:
            ports = {name: Memory(int(p["port"]), int(p["configured"]))
                     for name, p in (entry.get("ports") or {}).items()}
            return ProjectState(ports=ports, fingerprint=str(entry.get("fingerprint", "")),
                                containers=dict(entry.get("containers") or {}),
                                build=str(entry.get("build", "")))
        except (TypeError, KeyError, ValueError, AttributeError):
            self._warn(f"{self.path}: the entry for {project} is damaged; forgetting it")
            return ProjectState()

    def save(self, project: str, state: ProjectState) -> None:
        data = self._read_all()
        data["schema"] = STATE_SCHEMA
        data["projects"][project] = {
            "ports": {name: {"port": m.port, "configured": m.configured}
                      for name, m in sorted(state.ports.items())},
            "fingerprint": state.fingerprint,
            "containers": dict(sorted(state.containers.items())),
            "build": state.build,
        }
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")



class SecretStore:
    """.devenv/secrets.json (0600): secrets devenv generated, per project."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "secrets.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def existing(self, project: str) -> list[str]:
        entry = self._read().get(project)
        return [str(v) for v in entry.values()] if isinstance(entry, dict) else []

    def get_or_create(self, project: str, key: str) -> str:
        data = self._read()
        project_secrets = data.setdefault(project, {})
        if key not in project_secrets:
            project_secrets[key] = _secrets.token_urlsafe(18)
            write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)
        return str(project_secrets[key])


@contextlib.contextmanager
def project_lock(state_dir: Path, project: str, command: str, timeout: float,
                 on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold .devenv/<project>.lock for the duration; wait up to `timeout` for another holder."""
    import fcntl

    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(state_dir / f"{project}.lock", "a+", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise StateError(f"cannot create {state_dir}: {exc.strerror}",
                         hint="check that the project directory is writable") from exc
    deadline = time.monotonic() + timeout
    told = False
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another devenv"
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"project {project} is busy: {holder}",
                        hint="wait for it to finish, or stop it (Ctrl-C in its terminal)",
                    ) from None
                if not told and on_wait is not None:
                    on_wait(f"waiting for {holder} to finish")
                    told = True
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"devenv {command} (pid {os.getpid()})")
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
        handle.close()


def grafana_password(settings: Settings) -> str:
    """The configured Grafana password, else the one generated once for this project."""
    return settings["DEVENV_GRAFANA_ADMIN_PASSWORD"] or SecretStore(
        settings.state_dir).get_or_create(settings.project, "grafana_admin_password")


def known_secrets(settings: Settings) -> list[str]:
    """Every secret devenv knows for this project, to mask in what it shows."""
    values = [settings[spec.key] for spec in SETTINGS if spec.secret and settings[spec.key]]
    values += SecretStore(settings.state_dir).existing(settings.project)
    return values
