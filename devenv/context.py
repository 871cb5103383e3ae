"""What the CLI hands every use case: where, which environment, how to tell progress, and
the one way to reach Docker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config.settings import Settings, load_settings

if TYPE_CHECKING:
    from .engine import Engine
    from .probes import WaitEvent


def _quiet(message: str) -> None:
    pass


def connect_engine(environ: Mapping[str, str]) -> Engine:
    """The real engine (imported when first needed, so `--help` never loads it)."""
    from .engine import connect

    return connect(environ)


@dataclass(frozen=True)
class Context:
    project_dir: Path
    environ: Mapping[str, str]
    flags: Mapping[str, str] = field(default_factory=dict)
    env_file: Path | None = None
    notify: Callable[[str], None] = _quiet
    on_wait: Callable[[WaitEvent], None] | Any = None
    #: the one seam to Docker: every use case gets its engine here (tests pass a fake)
    engine_factory: Callable[[Mapping[str, str]], Engine] = connect_engine

    def settings(self) -> Settings:
        return load_settings(self.project_dir, self.environ, self.flags, self.env_file)

    def engine(self) -> Engine:
        """An engine for this environment; raises DockerUnavailableError when none answers."""
        return self.engine_factory(self.environ)
