"""Which Docker engine to talk to, resolved the way the Docker CLI (and so Compose) does.

DOCKER_HOST wins; else the context named by DOCKER_CONTEXT; else `currentContext` in the
CLI's config ($DOCKER_CONFIG/config.json, else ~/.docker/config.json); else "default", the
local socket. A named context's engine is `Endpoints.docker.Host` in
contexts/meta/<sha256(name)>/meta.json under the config directory. Colima, OrbStack, Docker
Desktop, rootless Docker and Podman set a context; devenv and the compose it runs must then
reach the same engine. Pure file reading: nothing here talks to Docker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import DockerUnavailableError

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_HOST = f"unix://{DEFAULT_SOCKET}"
DEFAULT_CONTEXT = "default"


@dataclass(frozen=True)
class EngineTarget:
    """The engine address and how it was chosen."""

    host: str
    #: the Docker CLI context it came from; "" when DOCKER_HOST chose it
    context: str
    #: "DOCKER_HOST", "DOCKER_CONTEXT", "config" (currentContext) or "default"
    source: str
    #: directory with the context's ca.pem / cert.pem / key.pem, if it has TLS material
    tls_dir: str = ""
    skip_tls_verify: bool = False

    @property
    def where(self) -> str:
        """How messages name the engine: `unix:///x (context colima)`."""
        if self.source == "DOCKER_HOST":
            return f"{self.host} (DOCKER_HOST)"
        if self.context == DEFAULT_CONTEXT and self.source == "default":
            return self.host
        return f"{self.host} (context {self.context})"

    @property
    def how(self) -> str:
        """`doctor`'s words for the choice."""
        if self.source == "DOCKER_HOST":
            return "from DOCKER_HOST (wins over any Docker context)"
        if self.source == "DOCKER_CONTEXT":
            return f"through context {self.context} (DOCKER_CONTEXT)"
        if self.source == "config":
            return f"through context {self.context} (the Docker CLI's current context)"
        return "through the default context (the local socket)"

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with this engine as DOCKER_HOST (and its TLS files), for clients that read
        the environment: the docker SDK and the docker CLI that runs compose."""
        env = {k: v for k, v in base.items() if k != "DOCKER_CONTEXT"}
        env["DOCKER_HOST"] = self.host
        if self.tls_dir and self.source != "DOCKER_HOST":
            env["DOCKER_CERT_PATH"] = self.tls_dir
            env["DOCKER_TLS_VERIFY"] = "" if self.skip_tls_verify else "1"
        return env


def config_dir(environ: Mapping[str, str]) -> Path:
    explicit = environ.get("DOCKER_CONFIG", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    home = environ.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / ".docker"


def resolve_engine(environ: Mapping[str, str]) -> EngineTarget:
    """The engine the Docker CLI would use with this environment.

    Raises DockerUnavailableError (exit 4) for a config.json that cannot be read or a
    context that does not exist, naming the file or the context and how to fix it."""
    host = environ.get("DOCKER_HOST", "").strip()
    if host:
        return EngineTarget(host, "", "DOCKER_HOST")
    directory = config_dir(environ)
    name = environ.get("DOCKER_CONTEXT", "").strip()
    source = "DOCKER_CONTEXT"
    if not name:
        name, source = _current_context(directory), "config"
        if not name:
            return EngineTarget(DEFAULT_HOST, DEFAULT_CONTEXT, "default")
    if name == DEFAULT_CONTEXT:
        return EngineTarget(DEFAULT_HOST, DEFAULT_CONTEXT, source)
    return _named_context(directory, name, source)


def _current_context(directory: Path) -> str:
    path = directory / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise DockerUnavailableError(
            f"the Docker CLI's config {path} cannot be read: "
            f"{getattr(exc, 'strerror', None) or exc}",
            hint="fix its permissions, or point DOCKER_CONFIG at another directory") from None
    if not text.strip():
        return ""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DockerUnavailableError(
            f"the Docker CLI's config {path} is not valid JSON (line {exc.lineno})",
            hint="fix or remove the file (docker itself cannot read it either), or set "
            "DOCKER_HOST") from None
    if not isinstance(data, dict):
        raise DockerUnavailableError(f"the Docker CLI's config {path} is not a JSON object",
                                     hint="fix or remove the file, or set DOCKER_HOST")
    current = data.get("currentContext", "")
    if not isinstance(current, str):
        raise DockerUnavailableError(f"currentContext in {path} is not a context name",
                                     hint="run `docker context use default`, or fix the file")
    return current.strip()


def _named_context(directory: Path, name: str, source: str) -> EngineTarget:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = directory / "contexts" / "meta" / digest / "meta.json"
    chosen_by = ("DOCKER_CONTEXT" if source == "DOCKER_CONTEXT"
                 else f"currentContext in {directory / 'config.json'}")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DockerUnavailableError(
            f"Docker context {name!r} ({chosen_by}) does not exist",
            hint="list them with `docker context ls`; switch with `docker context use "
            "default`, or set DOCKER_HOST") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DockerUnavailableError(
            f"Docker context {name!r} cannot be read ({meta}): "
            f"{getattr(exc, 'strerror', None) or exc}",
            hint="recreate it with `docker context rm` and `docker context create`, or set "
            "DOCKER_HOST") from None
    endpoint = ((data.get("Endpoints") or {}).get("docker") or {}) if isinstance(data, dict) \
        else {}
    host = str(endpoint.get("Host") or "").strip() if isinstance(endpoint, dict) else ""
    if not host:
        raise DockerUnavailableError(
            f"Docker context {name!r} names no Docker engine (no Endpoints.docker.Host)",
            hint="recreate it with `docker context create NAME --docker host=...`, or set "
            "DOCKER_HOST")
    tls = directory / "contexts" / "tls" / digest / "docker"
    return EngineTarget(host, name, source,
                        tls_dir=str(tls) if (tls / "ca.pem").is_file() or
                        (tls / "cert.pem").is_file() else "",
                        skip_tls_verify=bool(endpoint.get("SkipTLSVerify")))
