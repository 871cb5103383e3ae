"""Bytes that a process or a container writes, as text lines, in bounded memory.

Every stream of lines devenv reads (a container's log over the Engine API, `docker compose
logs`, `docker compose watch`) goes through LineSplitter: a service that writes without
newlines (a progress bar redrawn with a carriage return, one long JSON document) can make
neither devenv nor the dashboard hold more than one line's limit of it.
"""

from __future__ import annotations

import re

#: the longest line kept whole (a JSON body, a base64 blob come whole); a longer one is
#: given as soon as it reaches the limit, cut there and said. Readers that show many lines
#: at once ask for less (the dashboard: dashboard/hub.py LOG_LINE_BYTES).
LINE_LIMIT = 1024 * 1024


#: the note that ends a cut line
_CUT_NOTE = re.compile(r" \[\.\.\. cut: the line is longer than \d+ (?:MiB|KiB|bytes)\]$")


class CutLine(str):
    """A line that went on past the limit: its first `limit` bytes and a note that says so.
    `head` is the text before the note (a secret cut in two ends it: see report.mask)."""

    head: str

    def __new__(cls, head: str, limit: int) -> CutLine:
        line = super().__new__(cls, f"{head} [... cut: the line is longer than "
                                    f"{_size(limit)}]")
        line.head = head
        return line


def split_cut(line: str) -> tuple[str, str] | None:
    """(head, note) of a line that was cut (a CutLine, or its text since joined with
    others), else None."""
    found = _CUT_NOTE.search(line)
    return (line[:found.start()], line[found.start():]) if found else None


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"


class LineSplitter:
    """Feed bytes, get the complete lines (decoded as UTF-8, bad bytes replaced).

    A line ends at a newline (`\\r\\n` too). With `redraw`, a carriage return alone starts
    the line again, as on a terminal: of a progress bar only its last state is kept. A line
    longer than `limit` bytes is given as soon as it reaches the limit, as a CutLine, and
    the rest of it is dropped up to its newline. Memory: at most `limit` bytes of a line."""

    def __init__(self, limit: int = LINE_LIMIT, redraw: bool = True):
        self.limit, self._redraw = limit, redraw
        self._line = bytearray()
        self._dropping = False  # the rest of a line that was cut
        self._return = False  # the bytes so far ended with a carriage return

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while start <= len(data):
            newline = data.find(b"\n", start)
            end = newline if newline >= 0 else len(data)
            if end > start:
                self._add(data[start:end], lines)
            if newline < 0:
                break
            if self._dropping:
                self._dropping = False
            else:
                lines.append(self._text(bytes(self._line)))
            self._line.clear()
            self._return = False
            start = newline + 1
        return lines

    def end(self) -> list[str]:
        """The last line when the stream ends without a newline (a crash's last words)."""
        if self._dropping or not self._line:
            self._line.clear()
            self._dropping = self._return = False
            return []
        text = self._text(bytes(self._line))
        self._line.clear()
        self._return = False
        return [text]

    def _add(self, piece: bytes, lines: list[str]) -> None:
        if self._dropping:
            return
        if self._redraw:
            if self._return:  # a carriage return that no newline followed: a redraw
                self._line.clear()
            self._return = piece.endswith(b"\r")
            if self._return:
                piece = piece[:-1]
            again = piece.rfind(b"\r")
            if again >= 0:
                self._line.clear()
                piece = piece[again + 1:]
        self._line += piece
        if len(self._line) > self.limit:
            cut = self.limit
            while cut > 0 and self._line[cut] & 0xC0 == 0x80:  # not inside a character
                cut -= 1
            lines.append(CutLine(bytes(self._line[:cut]).decode(errors="replace"),
                                 self.limit))
            self._line.clear()
            self._dropping, self._return = True, False

    @staticmethod
    def _text(raw: bytes) -> str:
        return raw.decode(errors="replace").removesuffix("\r")
