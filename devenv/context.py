"""What the CLI hands every use case: where, which environment, how to tell progress."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .probes import WaitEvent


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class Context:
    project_dir: Path
    environ: Mapping[str, str]
    flags: Mapping[str, str] = field(default_factory=dict)
    env_file: Path | None = None
    notify: Callable[[str], None] = _quiet
    on_wait: Callable[[WaitEvent], None] | Any = None

    def settings(self) -> Settings:
        return load_settings(self.project_dir, self.environ, self.flags, self.env_file)
