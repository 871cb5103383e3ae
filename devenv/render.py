"""Render templates/ into compose/: strictly, in memory, writing only files that changed.

A project's own templates/ directory overrides any built-in template, file by file.
Every value a user controls reaches YAML through `q`: quoted as a YAML double-quoted scalar
and with `$` doubled, so no setting can change the file's structure or be interpolated.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import SERVICES, service_url
from .errors import TemplateError
from .state import write_atomic

COMPOSE_FILE = "docker-compose.yml"
SKELETON = "docker-compose.yml.j2"
MANIFEST = ".devenv-files.json"
#: files holding secrets are written 0600
SECRET_FILES = frozenset({COMPOSE_FILE})

HEALTH = {"interval": "5s", "timeout": "3s", "retries": 5, "start_period": "60s",
          "start_interval": "1s"}


def builtin_templates() -> Path:
    """Templates shipped in the wheel (devenv/templates), or the source tree's templates/."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


# --- quoting ----------------------------------------------------------------------------
_YAML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def compose_escape(value: Any) -> str:
    """Double `$` so Compose passes the value through literally."""
    return str(value).replace("$", "$$")


def yaml_quote(value: Any) -> str:
    """A YAML double-quoted scalar that reads back as exactly `value`."""
    out = []
    for ch in str(value):
        code = ord(ch)
        if ch in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[ch])
        elif code < 0x20 or 0x7F <= code <= 0x9F or ch in "\u2028\u2029\ufeff":
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def quote(value: Any) -> str:
    return yaml_quote(compose_escape(value))


def quote_list(values: Any) -> str:
    """A YAML flow sequence of quoted scalars, e.g. a healthcheck's test."""
    return "[" + ", ".join(quote(v) for v in values) + "]"


# --- the render context -----------------------------------------------------------------
@dataclass(frozen=True)
class ServiceContext:
    name: str
    image: str
    container_port: int
    host_port: int
    host_url: str
    volumes: tuple[dict[str, str], ...]
    build: dict[str, Any] | None = None


@dataclass(frozen=True)
class RenderInput:
    """Everything a render depends on; equal inputs give byte-identical output."""

    project: str
    network: str
    network_external: bool
    bind: str
    url_host: str
    services: tuple[str, ...]
    ports: Mapping[str, int]
    values: Mapping[str, str]
    secrets: Mapping[str, str]
    start_interval: bool
    api_build: Mapping[str, Any] | None = None  # {"context": path, "args": {...}}


def _service_context(name: str, data: RenderInput) -> ServiceContext:
    spec = SERVICES[name]
    volumes = tuple({"name": f"{name}-data" if i == 0 else f"{name}-data-{i}", "target": path}
                    for i, path in enumerate(spec.data_dirs))
    port = data.ports[name]
    return ServiceContext(
        name=name,
        image=data.values[f"DEVENV_{name.upper()}_IMAGE"],
        container_port=spec.container_port,
        host_port=port,
        host_url=f"http://{data.url_host}:{port}/",
        volumes=volumes,
        build=dict(data.api_build) if name == "api" and data.api_build else None,
    )


def _context(data: RenderInput) -> dict[str, Any]:
    services = [_service_context(name, data) for name in data.services]
    by_name = {svc.name: svc for svc in services}
    internal = {name: service_url(name, name, SERVICES[name].container_port, data.values,
                                  show_secrets=True) for name in data.services}
    return {
        "project": data.project,
        "network": {"name": data.network, "external": data.network_external},
        "bind": data.bind,
        "services": services,
        "s": by_name,
        "settings": dict(data.values),
        "secrets": dict(data.secrets),
        "engine": {"start_interval": data.start_interval},
        "health": HEALTH,
        "internal_urls": internal,
        "volumes": [v["name"] for svc in services for v in svc.volumes],
    }


# --- rendering --------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to compose/
    text: str
    mode: int = 0o644


@functools.lru_cache(maxsize=4)
def _environment(project_templates: Path | None, cache_dir: Path | None = None) -> Any:
    """One Jinja environment per template search path; it rechecks files' mtimes itself.

    Compiled templates are kept in `cache_dir` (keyed by name and source, so an edited
    template compiles afresh): compiling them is most of a no-op `devenv up`."""
    import jinja2

    paths = [str(p) for p in (project_templates, builtin_templates()) if p and p.is_dir()]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=_bytecode_cache(cache_dir) if cache_dir else None,
    )
    env.filters["q"] = quote
    env.filters["qlist"] = quote_list
    return env


def _bytecode_cache(directory: Path) -> Any:
    import jinja2

    class QuietCache(jinja2.FileSystemBytecodeCache):
        """A cache that never fails a render: no room or no rights means no cache."""

        def load_bytecode(self, bucket: Any) -> None:
            with contextlib.suppress(OSError, ValueError, EOFError):
                super().load_bytecode(bucket)

        def dump_bytecode(self, bucket: Any) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return QuietCache(str(directory))


def template_origin(name: str, project_templates: Path | None) -> Path:
    """Where a template comes from: the project's templates/ wins over the built-in one."""
    if project_templates is not None and (project_templates / name).is_file():
        return project_templates / name
    return builtin_templates() / name


def render_stack(data: RenderInput, project_templates: Path | None = None,
                 cache_dir: Path | None = None) -> list[RenderedFile]:
    """Render every output file in memory. Raises TemplateError naming file and line."""
    import jinja2

    env = _environment(project_templates, cache_dir)
    context = _context(data)
    outputs: list[RenderedFile] = []
    names = [SKELETON] + [f for svc in data.services for f in SERVICES[svc].files]
    current = SKELETON
    try:
        for name in names:
            current = name
            target = name[: -len(".j2")] if name.endswith(".j2") else name
            if name.endswith(".j2"):
                text = env.get_template(name).render(context)
            else:
                text = template_origin(name, project_templates).read_text(encoding="utf-8")
            if not text.strip():
                continue  # a template that renders to nothing writes no file
            mode = 0o600 if target in SECRET_FILES else 0o644
            outputs.append(RenderedFile(target, text, mode))
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or current
        raise TemplateError(f"template {where}, line {exc.lineno}: {exc.message}",
                            hint="fix the template, or delete your override to use the "
                            "built-in one") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {exc.name} not found (needed by {current})",
                            hint="restore it in templates/ or remove the reference") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {_where(exc, current, project_templates)}: "
                            f"{exc.message}",
                            hint="use only variables devenv provides (see docs)") from None
    except OSError as exc:
        raise TemplateError(f"template {current} cannot be read: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - any error raised inside a template
        raise TemplateError(f"template {_where(exc, current, project_templates)}: {exc}",
                            hint="fix the template, or delete your override") from None
    return outputs


def _where(exc: BaseException, current: str, project_templates: Path | None) -> str:
    """file:line of the innermost template frame in the traceback."""
    tb = exc.__traceback__
    found = f"{template_origin(current, project_templates)}"
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = f"{filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return found


def fingerprint(files: Sequence[RenderedFile], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.mode}\0{f.text}\0".encode())
    return digest.hexdigest()[:16]


# --- writing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteResult:
    path: str
    status: str  # created | updated | identical | removed


def write_outputs(compose_dir: Path, files: Sequence[RenderedFile]) -> list[WriteResult]:
    """Write changed files atomically; remove files an earlier render wrote and this one not."""
    results = []
    for f in files:
        path = compose_dir / f.path
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            old = None
        if old == f.text and (path.stat().st_mode & 0o777) == f.mode:
            results.append(WriteResult(f.path, "identical"))
            continue
        write_atomic(path, f.text, f.mode)
        results.append(WriteResult(f.path, "created" if old is None else "updated"))
    manifest = compose_dir / MANIFEST
    try:
        previous = set(json.loads(manifest.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        previous = set()
    current = {f.path for f in files}
    for stale in sorted(previous - current):
        with contextlib.suppress(OSError):
            os.unlink(compose_dir / stale)
            results.append(WriteResult(stale, "removed"))
    if previous != current:
        write_atomic(manifest, json.dumps(sorted(current), indent=1) + "\n")
    return results
