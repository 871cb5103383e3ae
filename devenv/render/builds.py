"""Images built instead of pulled: the build section a service declares, and change
detectors that tell `up` when to rebuild."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config.catalog import ServiceSpec
from ..config.settings import Settings
from ..errors import UsageError
from .templates import template_origin


def service_build(settings: Settings, spec: ServiceSpec) -> dict[str, Any] | None:
    """The build section of a service that declares one, from the three ways to get its
    image: the source directory its setting names (the team's source) > its image setting
    (None: no build) > its bundled files, built from compose/<context> with the declared
    build arguments and tagged by content."""
    build = spec.build
    if build is None:
        return None
    source = settings[build.source_setting] if build.source_setting else ""
    if source:
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = (settings.project_dir / path).resolve()
        if not (path / "Dockerfile").is_file():
            raise UsageError(f"{build.source_setting}={source}: no Dockerfile in {path}",
                             hint=f"point it at the directory that holds {spec.name}'s "
                             "Dockerfile")
        return {"context": str(path), "args": {}}
    if settings.image(spec.name) or not build.context:
        return None
    args = {arg: settings[key] for arg, key in build.args.items()}
    # Tagged by content and shared by every project: a new project reuses the image, and
    # changed files or arguments get a new tag, so Compose builds it then only.
    digest = hashlib.sha256("\0".join(args[k] for k in sorted(args)).encode())
    for name in spec.files:
        if name.startswith(build.context + "/"):
            digest.update(template_origin(name, settings.project_dir / "templates")
                          .read_bytes())
    tag = build.tag or f"devenv-{spec.name}"
    return {"context": f"./{build.context}", "args": args,
            "image": f"{tag}:{digest.hexdigest()[:12]}"}


def service_builds(settings: Settings, services: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {name: build for name in services
            if (build := service_build(settings, settings.catalog[name])) is not None}


def context_hash(path: Path) -> str:
    """A cheap change detector for a build context: names, sizes and mtimes."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "node_modules", "__pycache__"))
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(full, path)}\0{st.st_size}\0{st.st_mtime_ns}\0"
                          .encode())
    return digest.hexdigest()[:16]


def build_hash(settings: Settings, builds: Mapping[str, Mapping[str, Any]]) -> str:
    """Change detector of the teams' build contexts (a bundled build's tag is its own)."""
    hashes = []
    for _name, build in sorted(builds.items()):
        if "image" in build:
            continue
        context = Path(str(build["context"]))
        hashes.append(context_hash(context if context.is_absolute()
                                   else settings.compose_dir / context))
    return ",".join(hashes)
