"""What the project's containers write, as devenv shows it: through one mask.

Every path that shows a container's output (`devenv logs`, the log lines a failed `up`
or `watch` prints, `watch --logs`, the dashboard) reads it here, so none can forget the
mask: tests/test_house.py checks that nothing else calls the engine's `logs` or
`follow_logs`, or Compose's `logs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..config.settings import Settings
from ..engine.lines import LINE_LIMIT, split_cut
from ..report import mask


class ContainerOutput:
    """Container output with every secret devenv knows for the project masked."""

    def __init__(self, settings: Settings, warn: Callable[[str], None] | None = None):
        self._settings, self._warn = settings, warn
        self.secrets: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """Read the secrets again (one generated since is masked too)."""
        from ..config.state import known_secrets

        self.secrets = known_secrets(self._settings, self._warn)

    def mask(self, text: str) -> str:
        """The text (a line, or lines) masked; of a line that was cut at its limit, the
        head is masked as the beginning of a longer text (a secret the cut split in two
        is masked too)."""
        if "[... cut: " not in text:
            return mask(text, self.secrets)
        return "\n".join(self._mask_line(line) for line in text.split("\n"))

    def _mask_line(self, line: str) -> str:
        cut = split_cut(line)
        if cut is None:
            return mask(line, self.secrets)
        head, note = cut
        return mask(head, self.secrets, cut=True) + note

    def last_lines(self, engine: Any, container_id: str, count: int) -> str:
        """A container's last `count` log lines (stdout and stderr), masked."""
        return self.mask(engine.logs(container_id, count))

    def follow(self, engine: Any, container_id: str, tail: int = 100,
               since: float | None = None, limit: int = LINE_LIMIT) -> MaskedLog:
        """A container's log lines as they are written, masked; close() ends it. A line
        longer than `limit` bytes comes cut, and says so."""
        return MaskedLog(engine.follow_logs(container_id, tail=tail, since=since,
                                            limit=limit), self)

    def compose_logs(self, compose: Any, services: Sequence[str], follow: bool,
                     tail: int | None) -> Iterator[str]:
        """`docker compose logs` of the services, line by line, masked."""
        for line in compose.logs(services, follow=follow, tail=tail):
            yield self.mask(line)


class MaskedLog:
    """A followed log whose lines come masked; close() may be called from another thread."""

    def __init__(self, stream: Any, output: ContainerOutput):
        self._stream, self._output = stream, output

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[str]:
        for line in self._stream:
            yield self._output.mask(line)
