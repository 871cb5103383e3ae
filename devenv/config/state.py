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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LockedError, StateError
from ..files import write_atomic
from .settings import Settings

STATE_SCHEMA = 1


@dataclass(frozen=True)
class Memory:
    """What the state file remembers for a service: the port, and the configured port then."""

    port: int
    configured: int


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
        """The project's entry, every value checked like input: a bad value is forgotten
        with a warning (a remembered port 0 would be published as a random port)."""
        entry = self._read_all()["projects"].get(project)
        if entry is None:
            return ProjectState()
        if not isinstance(entry, dict):
            self._warn(f"{self.path}: the entry for {project} is damaged; forgetting it")
            return ProjectState()
        forgotten: list[str] = []
        ports: dict[str, Memory] = {}
        raw_ports = entry.get("ports", {})
        if not isinstance(raw_ports, dict):
            forgotten.append("ports")
            raw_ports = {}
        for name, memory in raw_ports.items():
            if (isinstance(memory, dict) and _is_port(memory.get("port"))
                    and _is_port(memory.get("configured"))):
                ports[name] = Memory(memory["port"], memory["configured"])
            else:
                forgotten.append(f"the port of {name}")
        fingerprint = entry.get("fingerprint", "")
        if not _is_hex(fingerprint):
            forgotten.append("the fingerprint")
            fingerprint = ""
        containers = entry.get("containers", {})
        if not (isinstance(containers, dict)
                and all(isinstance(k, str) and _is_hex(v) for k, v in containers.items())):
            forgotten.append("the containers")
            containers = {}
        build = entry.get("build", "")
        if not _is_hex(build):
            forgotten.append("the build")
            build = ""
        if forgotten:
            self._warn(f"{self.path}: forgetting {', '.join(forgotten)} remembered for "
                       f"{project} (not a valid value)")
        return ProjectState(ports=ports, fingerprint=fingerprint, containers=dict(containers),
                            build=build)

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

    def load_ports(self, section: str, project: str) -> dict[str, Memory]:
        """Remembered ports of something other than the services (e.g. section "tunnels"),
        kept at the top level of the file so that `save` never drops them. Checked like
        input: a bad entry is forgotten with a warning."""
        table = self._read_all().get(section)
        entry = table.get(project) if isinstance(table, dict) else None
        if not isinstance(entry, dict):
            return {}
        ports: dict[str, Memory] = {}
        for name, item in entry.items():
            if (isinstance(item, dict) and _is_port(item.get("port"))
                    and _is_port(item.get("configured"))):
                ports[name] = Memory(item["port"], item["configured"])
            else:
                self._warn(f"{self.path}: the remembered port of {section} {name} is "
                           "damaged; forgetting it")
        return ports

    def save_ports(self, section: str, project: str, ports: Mapping[str, Memory]) -> None:
        data = self._read_all()
        data["schema"] = STATE_SCHEMA
        data.setdefault(section, {})[project] = {
            name: {"port": m.port, "configured": m.configured}
            for name, m in sorted(ports.items())}
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _is_port(value: Any) -> bool:
    return type(value) is int and 1 <= value <= 65535


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and all(c in "0123456789abcdef" for c in value)


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


TIMING_SCHEMA = "devenv.timing/1"


def save_timing(state_dir: Path, project: str, timing: Mapping[str, Any]) -> None:
    """.devenv/timing-<project>.json: how long each service took to answer at the last `up`."""
    write_atomic(state_dir / f"timing-{project}.json",
                 json.dumps({"schema": TIMING_SCHEMA, **timing}, indent=2, sort_keys=True)
                 + "\n")


def load_timing(state_dir: Path, project: str) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / f"timing-{project}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == TIMING_SCHEMA else None


class SecretStore:
    """.devenv/secrets.json (0600): secrets devenv generated, per project.

    A damaged or wrong-shaped file is set aside (never overwritten) with a warning, and a
    secret made anew says that a volume may still hold the old one and what to do."""

    def __init__(self, state_dir: Path, warn: Callable[[str], None] | None = None):
        self.path = state_dir / "secrets.json"
        self._warn = warn or (lambda message: None)
        self._set_aside: Path | None = None

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            # Likely a file made by another user (sudo): the secrets are fine, only not
            # readable; making new ones would lock the user out of the volumes.
            raise StateError(f"cannot read {self.path}: {exc.strerror}",
                             hint=f"make it readable again (e.g. sudo chown $USER {self.path})"
                             ) from exc
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
            for project, entry in data.items():
                if not isinstance(entry, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) and v
                        for k, v in entry.items()):
                    raise ValueError(f"the entry for {project} is not a set of strings")
            return data
        except (ValueError, RecursionError) as exc:
            self._put_aside(exc)
            return {}

    def _put_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(f"secrets.corrupt-{_utc_stamp()}.json")
        try:
            os.replace(self.path, aside)
        except OSError as err:
            raise StateError(f"{self.path} is damaged and cannot be set aside: {err.strerror}",
                             hint=f"move {self.path} away yourself; it may hold the "
                             "passwords your volumes were created with") from err
        with contextlib.suppress(OSError):
            os.chmod(aside, 0o600)
        self._set_aside = aside
        why = str(exc) if type(exc) is ValueError else "not JSON"
        self._warn(f"warning: {self.path} was damaged ({why}); set aside as {aside.name}")

    def existing(self, project: str) -> list[str]:
        """The project's secrets, to mask: never fails (nothing to mask then)."""
        try:
            return list(self._read().get(project, {}).values())
        except StateError as exc:
            self._warn(f"warning: {exc.message}")
            return []

    def get_or_create(self, project: str, key: str, what: str = "", setting: str = "") -> str:
        """The project's secret `key`, generated now if it has none. `what` (the service)
        and `setting` (the one that overrides it) name them in the warning that a volume
        made with a lost secret still holds the old one."""
        data = self._read()
        project_secrets = data.setdefault(project, {})
        if key not in project_secrets:
            project_secrets[key] = _secrets.token_urlsafe(18)
            write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)
            aside = self._set_aside or max(self.path.parent.glob("secrets.corrupt-*.json"),
                                           default=None)
            if aside is not None:
                what = what or key
                self._warn(
                    f"warning: a new {what} password was generated for project {project}; "
                    f"if its {what} volume already existed it still holds the old one, so "
                    f"the new one will not log in: set {setting} to the old value "
                    f"({key} in .devenv/{aside.name}), or delete the data with "
                    f"`devenv down --volumes`")
        return project_secrets[key]


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
    held = False
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
        held = True
        handle.seek(0)
        handle.truncate()
        handle.write(f"devenv {command} (pid {os.getpid()})")
        handle.flush()
        yield
    finally:
        if held:  # only the holder clears its own line; a waiter that gives up leaves it
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
        handle.close()


def setting_or_secret(settings: Settings, key: str,
                      warn: Callable[[str], None] | None = None) -> str:
    """A setting's value; for a setting declared `generate` and left empty, the secret
    generated once for this project and kept in .devenv/secrets.json."""
    value = settings[key]
    spec = next((s for s in settings.specs if s.key == key), None)
    if value or spec is None or not spec.generate:
        return value
    owner = next((svc.title for svc in settings.catalog.values() if spec in svc.settings), "")
    return SecretStore(settings.state_dir, warn).get_or_create(
        settings.project, spec.secret_name, what=owner, setting=key)


def generated_secrets(settings: Settings, services: Iterable[str],
                      warn: Callable[[str], None] | None = None) -> dict[str, str]:
    """secret name -> value of every generated secret the services declare (templates
    read them as `secrets.NAME`)."""
    return {spec.secret_name: setting_or_secret(settings, spec.key, warn)
            for name in services for spec in settings.catalog[name].settings if spec.generate}


def known_secrets(settings: Settings, warn: Callable[[str], None] | None = None) -> list[str]:
    """Every secret devenv knows for this project, to mask in what it shows."""
    values = [settings[spec.key] for spec in settings.specs if spec.secret and settings[spec.key]]
    values += SecretStore(settings.state_dir, warn).existing(settings.project)
    return values
