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
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.catalog import Catalog, placeholders
from ..config.settings import COMPOSE_FILE
from ..errors import DevenvError, StateError, TemplateError
from ..files import write_atomic

SKELETON = "docker-compose.yml.j2"
MANIFEST = ".devenv-files.json"
#: files always written 0600 (the compose file holds every service's environment); any
#: other rendered file is 0600 when its template read a secret or its text holds one
SECRET_FILES = frozenset({COMPOSE_FILE})

HEALTH = {"interval": "5s", "timeout": "3s", "retries": 5, "start_period": "60s",
          "start_interval": "1s"}


def builtin_templates() -> Path:
    """Templates shipped in the wheel (devenv/templates), or the source tree's templates/."""
    package = Path(__file__).parent.parent
    packaged = package / "templates"
    return packaged if packaged.is_dir() else package.parent / "templates"


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


_CADDY_TOKEN = re.compile(r"^[A-Za-z0-9/][A-Za-z0-9._:/*-]*$")


def caddy_token(value: Any) -> str:
    """A Caddyfile token that can only be itself: a host name, host:port or path of
    letters, digits and `._:/*-`, double-quoted. Anything else (a blank, a quote, `{` that
    Caddy would expand, a newline) is refused, never escaped."""
    text = str(value)
    if not _CADDY_TOKEN.match(text):
        raise ValueError(f"{text[:60]!r} cannot go into the Caddyfile")
    return f'"{text}"'


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
    #: Compose develop.watch rules: {"action", "path", "target"?, "ignore"?}
    watch: tuple[dict[str, Any], ...] = ()
    #: also published on this LAN address (`devenv up --lan`), else ""
    lan_ip: str = ""
    #: declared in the catalog, for the generic template
    environment: Mapping[str, str] | None = None
    command: tuple[str, ...] = ()


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
    #: the services' specs (and the rest of the catalog)
    catalog: Catalog
    #: service -> its build section ({"context": path, "args": {...}[, "image": tag]})
    builds: Mapping[str, Mapping[str, Any]] | None = None
    #: service -> its Compose develop.watch rules (services that declare `watch`)
    watches: Mapping[str, tuple[Mapping[str, Any], ...]] | None = None
    lan_address: str = ""
    lan_services: tuple[str, ...] = ()
    seed_dir: str = ""  # absolute path of the seed folder, "" when there is none
    #: the HTTPS proxy's routes, domain and certificate directory (DEVENV_HTTPS), else None
    https: Mapping[str, Any] | None = None
    #: compose volume key -> the key of the git branch's data in use ([data] branches):
    #: another key, so that Compose recreates the service on the branch's volume
    volume_keys: Mapping[str, str] | None = None


def _service_context(name: str, data: RenderInput) -> ServiceContext:
    spec = data.catalog[name]
    keys = data.volume_keys or {}
    volumes = tuple({"name": keys.get(f"{name}-data", f"{name}-data") if i == 0
                     else f"{name}-data-{i}", "target": path}
                    for i, path in enumerate(spec.data_dirs))
    port = data.ports[name]
    return ServiceContext(
        name=name,
        image=data.values[spec.image_key],
        container_port=spec.container_port,
        host_port=port,
        host_url=f"http://{data.url_host}:{port}/",
        volumes=volumes,
        build=dict((data.builds or {})[name]) if name in (data.builds or {}) else None,
        environment=dict(spec.environment),
        command=spec.command,
        watch=tuple(dict(rule) for rule in (data.watches or {}).get(name, ())),
        lan_ip=data.lan_address if name in data.lan_services else "",
    )


class _Watched(Mapping[str, Any]):
    """A mapping of the render context that notes when a template reads a secret from it,
    however it reads it (`secrets.x`, `settings["X"]`, `.items()`, `.get`)."""

    def __init__(self, data: Mapping[str, Any], secret: Callable[[str], bool],
                 reads: set[str]):
        self._data, self._secret, self._reads = data, secret, reads

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        if self._secret(key):
            self._reads.add(key)
        return value

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:  # asking is not reading
        return key in self._data


def _context(data: RenderInput, reads: set[str]) -> dict[str, Any]:
    services = [_service_context(name, data) for name in data.services]
    by_name = {svc.name: svc for svc in services}
    internal = {name: data.catalog.url(name, name, data.catalog[name].container_port,
                                       data.values, show_secrets=True)
                for name in data.services}
    secret_keys = data.catalog.secret_keys()
    # a service's internal URL holds a secret when its URL form names a secret setting
    secret_urls = {name for name in data.services
                   if secret_keys & set(placeholders(data.catalog[name].url))}
    return {
        "project": data.project,
        "network": {"name": data.network, "external": data.network_external},
        "bind": data.bind,
        "services": services,
        "s": by_name,
        "settings": _Watched(dict(data.values), secret_keys.__contains__, reads),
        "secrets": _Watched(dict(data.secrets), lambda _key: True, reads),
        "engine": {"start_interval": data.start_interval},
        "health": HEALTH,
        "internal_urls": _Watched(internal, secret_urls.__contains__, reads),
        "seed_dir": data.seed_dir,
        "https": data.https,
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
    env.filters["caddy"] = caddy_token
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
    reads: set[str] = set()
    context = _context(data, reads)
    outputs: list[RenderedFile] = []
    # The services' files first, in catalog order, the compose file last: each template
    # sees in `rendered` the files (and their directories) rendered before it, so a mount
    # or a provider exists exactly when what it points at was written.
    names = [f for svc in data.services for f in data.catalog[svc].files] + [SKELETON]
    rendered: set[str] = set()
    context["rendered"] = rendered
    current = SKELETON
    try:
        for name in names:
            current = name
            target = name[: -len(".j2")] if name.endswith(".j2") else name
            reads.clear()
            if name.endswith(".j2"):
                text = env.get_template(name).render(context)
            else:
                text = template_origin(name, project_templates).read_text(encoding="utf-8")
            if not text.strip():
                continue  # a template that renders to nothing writes no file
            # private when it read a secret, whoever declared the template (a project's
            # own service as much as a built-in one)
            mode = 0o600 if target in SECRET_FILES or reads else 0o644
            outputs.append(RenderedFile(target, text, mode))
            rendered.update(_with_parents(target))
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
    compose = next((f for f in outputs if f.path == COMPOSE_FILE), None)
    if compose is None:
        return outputs
    outputs.remove(compose)
    outputs.insert(0, compose)  # the compose file first, as a reader expects
    missing = [source for source in bind_sources(compose.text) if source not in rendered]
    if missing:
        raise TemplateError(
            f"template {SKELETON} (or a service's fragment) mounts "
            f"{', '.join('compose/' + m for m in missing)}, which no template rendered",
            hint="mount only files and directories devenv renders for the selected services "
            "(see `rendered` in the templates)")
    return outputs


def _with_parents(path: str) -> list[str]:
    """'a/b/c.yml' -> ['a/b/c.yml', 'a/b', 'a']."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


_BIND = re.compile(r"^\s*-?\s*type:\s*[\"']?bind[\"']?\s*\n\s*source:\s*[\"']?\./([^\s\"']+)",
                   re.MULTILINE)
_SHORT_BIND = re.compile(r"^\s*-\s*[\"']?\./([^:\s\"']+):/", re.MULTILINE)


def bind_sources(compose_text: str) -> list[str]:
    """Relative bind-mount sources (under compose/) of a rendered compose file, in the long
    (`type: bind` then `source: ./x`) and the short (`- ./x:/target`) syntax."""
    found = [m.group(1).rstrip("/") for m in _BIND.finditer(compose_text)]
    found += [m.group(1).rstrip("/") for m in _SHORT_BIND.finditer(compose_text)]
    return list(dict.fromkeys(found))


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
MANIFEST_SCHEMA = 1
_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class WriteResult:
    path: str
    status: str  # created | updated | identical | removed | kept
    #: where a person's version of this file was set aside (relative to compose/)
    aside: str = ""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def safe_relative(path: Any) -> bool:
    """A path devenv could have written: relative, normalized, inside compose/."""
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        return False
    parts = path.split("/")
    return (not path.startswith("/") and os.path.normpath(path) == path
            and ".." not in parts and "." not in parts and path != MANIFEST)


def _utc_stamp() -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _set_aside(path: Path, label: str) -> Path:
    """Rename `path` to `<name>.<label>-<UTC time>` beside it (mode and content kept)."""
    stamp = _utc_stamp()
    aside = path.with_name(f"{path.name}.{label}-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = path.with_name(f"{path.name}.{label}-{stamp}-{n}")
    try:
        os.rename(path, aside)
    except OSError as exc:
        raise StateError(f"cannot set {path} aside: {exc.strerror}",
                         hint="move it away yourself; devenv does not overwrite it") from exc
    return aside


def read_manifest(compose_dir: Path, notify: Callable[[str], None]) -> dict[str, frozenset[str]]:
    """compose/.devenv-files.json: path -> the digests of what devenv wrote there.

    Read like input: an entry outside compose/, not normalized, or a digest that is not
    one, and the whole manifest is set aside and trusted for nothing. The format before
    digests (a list of paths) is read with no digest: such files are never assumed
    unchanged."""
    manifest = compose_dir / MANIFEST
    try:
        raw = manifest.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        notify(f"warning: compose/{MANIFEST} cannot be read ({exc.strerror}); files in "
               "compose/ are treated as not written by devenv")
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
        if isinstance(data, list) and all(safe_relative(p) for p in data):
            return {p: frozenset() for p in data}
        files = data.get("files") if isinstance(data, dict) else None
        if (not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA
                or not isinstance(files, dict)):
            raise ValueError("not a manifest devenv wrote")
        out: dict[str, frozenset[str]] = {}
        for path, digests in files.items():
            if isinstance(digests, str):
                digests = [digests]
            if not (safe_relative(path) and isinstance(digests, list) and digests
                    and all(_is_digest(d) for d in digests)):
                raise ValueError(f"entry {str(path)[:80]!r} is not a file inside compose/")
            out[path] = frozenset(digests)
        return out
    except (ValueError, AttributeError, RecursionError) as exc:
        aside = _set_aside(manifest, "corrupt")
        why = str(exc) if type(exc) is ValueError else "not JSON"
        notify(f"warning: compose/{MANIFEST} is damaged ({why}); set aside as "
               f"compose/{aside.name}; nothing in compose/ is removed or replaced unchecked")
        return {}


def _inside(compose_dir: Path, rel: str) -> Path:
    """compose_dir / rel, refusing a path whose directories lead out of compose/."""
    base = compose_dir.resolve()
    path = compose_dir / rel
    parent = path.parent.resolve()
    if parent != base and base not in parent.parents:
        raise StateError(f"compose/{rel} leads outside compose/ (to {parent}); devenv writes "
                         "only inside compose/",
                         hint="remove that link in compose/; devenv recreates the directory")
    return path


def _write_manifest(compose_dir: Path, files: Mapping[str, Sequence[str]]) -> None:
    text = json.dumps({"schema": MANIFEST_SCHEMA,
                       "files": {p: (d[0] if len(d) == 1 else sorted(d))
                                 for p, d in sorted(files.items())}}, indent=1)
    # 0600: a digest of a file holding a password would let a weak one be guessed
    write_atomic(compose_dir / MANIFEST, text + "\n", 0o600)


def write_outputs(compose_dir: Path, files: Sequence[RenderedFile],
                  notify: Callable[[str], None] | None = None) -> list[WriteResult]:
    """Write changed files atomically; remove files an earlier render wrote and this one not.

    Only a file devenv wrote, and that still holds exactly what it wrote (its digest is in
    the manifest), is replaced or removed. Any other file in the way (a person's edit, a
    file devenv did not write, a link) is set aside as `<name>.edited-<UTC time>` first,
    and said; a stale file that was changed is kept where it is."""
    say = notify or (lambda message: None)
    known = read_manifest(compose_dir, say)
    wanted = {f.path: _digest(f.text.encode("utf-8")) for f in files}
    plan: list[tuple[RenderedFile, Path, str]] = []  # file, path, action
    for f in files:
        path = _inside(compose_dir, f.path)
        old: bytes | None = None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            plan.append((f, path, "create"))
            continue
        if stat.S_ISDIR(st.st_mode):
            raise StateError(f"compose/{f.path} is a directory; devenv writes a file there",
                             hint="move that directory out of compose/")
        if stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                old = path.read_bytes()
        new = f.text.encode("utf-8")
        if old == new and stat.S_IMODE(st.st_mode) == f.mode:
            plan.append((f, path, "identical"))
        elif old is not None and (old == new or _digest(old) in known.get(f.path, ())):
            plan.append((f, path, "update"))
        else:
            plan.append((f, path, "aside"))
    stale = sorted(set(known) - set(wanted))
    changes = any(action != "identical" for _f, _p, action in plan) or stale
    final = {p: [d] for p, d in wanted.items()}
    if not changes and {p: frozenset(d) for p, d in final.items()} == known:
        return [WriteResult(f.path, "identical") for f in files]
    # Written first with both digests: a render cut short (Ctrl-C, a full disk) leaves
    # every file recognised as devenv's, old or new.
    interim = {p: sorted(known.get(p, frozenset()) | {d}) for p, d in wanted.items()}
    interim.update({p: sorted(known[p]) for p in stale if known[p]})
    _write_manifest(compose_dir, interim)
    results = []
    for f, path, action in plan:
        if action == "identical":
            results.append(WriteResult(f.path, "identical"))
            continue
        aside = ""
        if action == "aside":
            moved = _set_aside(path, "edited")
            aside = os.path.relpath(moved, compose_dir)
            say(f"compose/{f.path} was changed since devenv wrote it (or devenv did not "
                f"write it): kept as compose/{aside}, devenv's version written in its place; "
                "to change a generated file for good, override its template in templates/")
        write_atomic(path, f.text, f.mode)
        results.append(WriteResult(f.path, "created" if action == "create" else "updated",
                                   aside))
    for rel in stale:
        removed = _remove_stale(compose_dir, rel, known[rel], say)
        if removed is not None:
            results.append(removed)
    _write_manifest(compose_dir, final)
    return results


def _remove_stale(compose_dir: Path, rel: str, digests: frozenset[str],
                  say: Callable[[str], None]) -> WriteResult | None:
    """Remove a file an earlier render wrote, only if it still holds what devenv wrote."""
    try:
        path = _inside(compose_dir, rel)
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except DevenvError as exc:
        say(f"warning: {exc.message}; left alone")
        return WriteResult(rel, "kept")
    if stat.S_ISREG(st.st_mode):
        with contextlib.suppress(OSError):
            if _digest(path.read_bytes()) in digests:
                path.unlink()
                return WriteResult(rel, "removed")
    if digests:
        say(f"compose/{rel} is no longer needed but was changed since devenv wrote it; kept")
    else:  # listed by an older devenv, with no digest to compare
        say(f"compose/{rel} is no longer needed; kept (devenv cannot tell whether it was "
            "changed since it was written)")
    return WriteResult(rel, "kept")
