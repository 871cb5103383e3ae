from __future__ import annotations

import io

from devenv.cli.console import WaitDisplay, use_color
from devenv.probes import WaitEvent


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with WaitDisplay(out, live=False, color=False) as display:
        display(WaitEvent("postgres", "waiting", 0.1, "127.0.0.1:5432"))
        display(WaitEvent("postgres", "ready", 2.4, "accepting connections"))
        display(WaitEvent("redis", "failed", 3.0, "its container stopped"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # waiting is not printed in CI logs
    assert lines[0].split()[:3] == ["postgres", "ready", "2.4s"]
    assert "FAILED" in lines[1] and "\x1b" not in out.getvalue()


def test_live_lines_are_redrawn_in_place_with_colour():
    out = Tty()
    with WaitDisplay(out, live=True, color=True, interval=0.01) as display:
        display(WaitEvent("postgres", "waiting", 0.0, "127.0.0.1:5432"))
        display(WaitEvent("redis", "waiting", 0.0, "127.0.0.1:6379"))
        display(WaitEvent("redis", "ready", 0.5, "PING -> +PONG"))
    text = out.getvalue()
    assert "\x1b[2F" in text  # cursor back up over the two lines
    assert "\x1b[32mready" in text and "\x1b[33mwaiting" in text
    last = text.rsplit("\x1b[2F", 1)[-1]
    assert "redis" in last and "ready" in last and "postgres" in last


def test_colour_rules():
    assert use_color(Tty(), {}, False)
    assert not use_color(Tty(), {"NO_COLOR": "1"}, False)
    assert not use_color(Tty(), {}, True)
    assert not use_color(io.StringIO(), {}, False)
    assert not use_color(Tty(), {"TERM": "dumb"}, False)
