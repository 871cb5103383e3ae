"""Terminal output: live per-service progress on a TTY, plain lines elsewhere, colour only
where wanted (not with NO_COLOR, --no-color, or when output is not a terminal)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TextIO

from ..probes import WaitEvent

COLORS = {"ready": "32", "failed": "31", "waiting": "33"}


def use_color(stream: TextIO, environ: Mapping[str, str], no_color_flag: bool) -> bool:
    if no_color_flag or "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def paint(text: str, state: str, color: bool) -> str:
    code = COLORS.get(state)
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


class WaitDisplay:
    """The `on_wait` callback of up and restart.

    On a terminal: one line per service, redrawn in place with its state and the seconds
    since the wait began. Elsewhere (CI, pipes): one plain line when a service is ready or
    fails. Use as a context manager so the live lines stop cleanly.
    """

    def __init__(self, stream: TextIO, live: bool, color: bool, interval: float = 0.2):
        self.stream = stream
        self.live = live
        self.color = color
        self.interval = interval
        self._lines: dict[str, tuple[WaitEvent, float]] = {}
        self._drawn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WaitDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._draw()

    def __call__(self, event: WaitEvent) -> None:
        with self._lock:
            self._lines[event.service] = (event, time.monotonic())
        if not self.live:
            if event.state != "waiting":
                self.stream.write(self._line(event, time.monotonic()) + "\n")
                self.stream.flush()
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, daemon=True, name="progress")
            self._thread.start()
        self._draw()

    def _line(self, event: WaitEvent, received: float) -> str:
        if event.state == "waiting":  # the clock keeps running while it waits
            seconds = event.elapsed + time.monotonic() - received
            word = "waiting"
        else:
            seconds = event.elapsed
            word = "ready" if event.state == "ready" else "FAILED"
        detail = event.detail if event.state != "waiting" else f"probing {event.detail}"
        return f"  {event.service:<11} {paint(f'{word:<8}', event.state, self.color)} " \
               f"{seconds:5.1f}s  {detail}"

    def _draw(self) -> None:
        with self._lock:
            lines = [self._line(e, at) for e, at in self._lines.values()]
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.stream.flush()
            self._drawn = len(lines)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()
