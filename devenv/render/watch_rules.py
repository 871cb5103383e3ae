"""The develop.watch rules rendered into the watched service's compose entry: which folders
of its build context are synced (or trigger a rebuild), where to, and what is ignored.
Render input, so `up` and `up --watch` write the same file; the follow loop is
stack/watch.py.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config.settings import Settings, split_paths
from ..errors import UsageError

#: never synced: tools' caches and what the image installs itself
ALWAYS_IGNORED = (".git", "node_modules", "__pycache__", "*.pyc", ".venv")


class WatchPathError(UsageError):
    """A watch path that does not exist."""


def _join(context: str, path: str) -> str:
    joined = posixpath.normpath(posixpath.join(context, path))
    return joined if joined.startswith("/") or joined.startswith(".") else "./" + joined


def watched_service(settings: Settings) -> str:
    """The service `devenv watch` follows: the one the catalog declares `watch`."""
    return next((name for name, spec in settings.catalog.items() if spec.watch), "")


def watch_key(settings: Settings, what: str) -> str:
    """DEVENV_<NAME>_WATCH_<WHAT> of the watched service (SYNC, TARGET, REBUILD, ACTION)."""
    return f"DEVENV_{watched_service(settings).upper()}_WATCH_{what}"


def watch_rules(settings: Settings, build: Mapping[str, Any] | None, compose_dir: Path,
                strict: bool = False) -> tuple[dict[str, Any], ...]:
    """develop.watch rules for the API built from `build` (launch.api_build).

    strict: a configured path that does not exist is a WatchPathError (watch); else it is
    left out (a plain `up` must not fail on a watch setting)."""
    if build is None:
        return ()
    context = str(build["context"])
    folder = Path(context) if Path(context).is_absolute() else compose_dir / context
    # The bundled reference API's image is tagged by the templates' content and shared by
    # every project: a rebuild would put edited content under that tag. It is synced only.
    reference = "image" in build
    action = settings[watch_key(settings, "ACTION")]
    target_root = settings[watch_key(settings, "TARGET")]
    rebuild_names = split_paths(settings[watch_key(settings, "REBUILD")])
    explicit_rebuild = settings.sources.get(watch_key(settings, "REBUILD"), "default") != "default"
    ignore = [*ALWAYS_IGNORED, *rebuild_names] + (["Dockerfile"] if reference else [])
    rules: list[dict[str, Any]] = []
    for path in split_paths(settings[watch_key(settings, "SYNC")]):
        # The reference API's folder is devenv's own output, written in the same render.
        if not reference and not (folder / path).exists():
            if strict:
                raise WatchPathError(
                    f"{watch_key(settings, 'SYNC')}: {path} does not exist in {folder}",
                    hint="name folders or files inside the API's build folder, "
                    "comma separated (default: . for all of it)")
            continue
        target = posixpath.normpath(posixpath.join(target_root, path))
        rules.append({"action": action, "path": _join(context, path), "target": target,
                      "ignore": list(dict.fromkeys(ignore))})
    if not reference:
        for name in rebuild_names:
            if (folder / name).exists():
                rules.append({"action": "rebuild", "path": _join(context, name)})
            elif strict and explicit_rebuild:
                raise WatchPathError(
                    f"{watch_key(settings, 'REBUILD')}: {name} does not exist in {folder}",
                    hint="name the dependency manifest or Dockerfile inside the API's "
                    "build folder, comma separated")
    return tuple(rules)
