"""processes.py: a pid is devenv's only together with the start time it recorded."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from devenv.processes import same_process, started_at


def test_the_start_time_read_from_proc_is_psutils():
    """Records written with psutil's create_time (the tunnels') and with /proc (the host
    apps' supervisor) are compared by the same clock."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"]) as child:
        try:
            assert abs(started_at(child.pid) - psutil.Process(child.pid).create_time()) < 0.01
            assert same_process(child.pid, started_at(child.pid))
            assert not same_process(child.pid, started_at(child.pid) + 1)  # a reused pid
        finally:
            child.kill()


def test_a_zombie_or_an_ended_process_is_not_the_one_started():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = started_at(child.pid)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: a zombie
    assert started is not None and not same_process(child.pid, started)
    child.wait()
    assert started_at(child.pid) is None and not same_process(child.pid, started)


def test_a_record_without_a_usable_pid_or_time_names_no_process():
    me = started_at(os.getpid())
    assert same_process(os.getpid(), me)
    for pid, started in ((True, me), ("12", me), (1, me), (os.getpid(), None),
                         (os.getpid(), float("nan")), (os.getpid(), -5)):
        assert not same_process(pid, started)
