from __future__ import annotations

from devenv import report
from devenv.live import status as live
from devenv.rows import Check, ServiceRow, StatusRow
from devenv.stack import doctor


def test_every_row_type_is_the_one_in_rows():
    # the modules that build rows import them from devenv/rows.py, none defines its own
    assert report.ServiceRow is ServiceRow and live.StatusRow is StatusRow
    assert doctor.Check is Check


def test_a_row_knows_it_moved():
    row = ServiceRow("redis", "redis://127.0.0.1:6380", "127.0.0.1", 6380, "ready", 6379, 6379)
    assert row.moved
