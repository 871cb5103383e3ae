"""`dashboard --open`: the page handed to the browser without its token on a command line.

A browser is started with the URL it opens as an argument, and every local user can read a
process's arguments (`ps`, /proc/PID/cmdline). So the browser gets the path of a small
page instead: a file of the user's own (0600, under .devenv/) that sends it on to the
tokened URL. The page is removed as soon as the dashboard has served itself once (the
browser has arrived), and when the dashboard stops; only the file devenv wrote is removed.
"""

from __future__ import annotations

import contextlib
import html
import os
import stat
from pathlib import Path

from ..files import write_atomic


class LaunchPage:
    """The launch page of one dashboard: written once, removed once, only if still ours."""

    def __init__(self, state_dir: Path, port: int):
        self.path = state_dir / f"dashboard-{port}.html"
        self._written: str | None = None  # what devenv wrote there

    def write(self, url: str) -> str:
        """Write the page that sends the browser to `url`; its file:// URL, which holds no
        secret."""
        target = html.escape(url, quote=True)
        text = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                "<meta name=\"referrer\" content=\"no-referrer\">\n"
                f"<meta http-equiv=\"refresh\" content=\"0; url={target}\">\n"
                "<title>devenv dashboard</title></head>\n"
                f"<body><a href=\"{target}\">Open the devenv dashboard</a></body></html>\n")
        write_atomic(self.path, text, 0o600)
        self._written = text
        return self.path.resolve().as_uri()

    def remove(self) -> None:
        """Remove the page if it is still the file devenv wrote (never another one put
        there since); idempotent."""
        written, self._written = self._written, None
        if written is None:
            return
        # A regular file (not a link) that holds what devenv wrote: an inode number alone
        # could be a new file's that reused it.
        with contextlib.suppress(OSError, UnicodeError):
            if stat.S_ISREG(os.lstat(self.path).st_mode) and \
                    self.path.read_text(encoding="utf-8") == written:
                self.path.unlink()
