"""Processes devenv started, told apart from whatever holds their pid now: a pid is
devenv's only together with the start time recorded when devenv started it. Shared by the
tunnels' and the host apps' supervisors and runtimes, and by the readers of their records
(every number in a record is read exactly as JSON wrote it)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # light at run time: the host apps' supervisor imports this before its app
    from collections.abc import Callable
    from pathlib import Path
    from typing import Protocol, TypeVar

    class _Named(Protocol):
        name: str

    R = TypeVar("R", bound=_Named)


def read_records(folder: Path, read: Callable[[Path], R | None]) -> dict[str, R]:
    """Every `*.json` record in `folder` that `read` accepts, by its name (none when the
    folder does not exist)."""
    if not folder.is_dir():
        return {}
    records = {}
    for path in sorted(folder.glob("*.json")):
        record = read(path)
        if record is not None:
            records[record.name] = record
    return records


def whole(value: Any, low: int, high: int) -> int | None:
    """A whole number read from a record, exactly as JSON wrote it: `true`, `"12"`, `1.0`,
    or a number outside low..high are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def moment(value: Any) -> float | None:
    """A process start time (seconds since the epoch) read from a record."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def same_process(pid: Any, started: Any) -> bool:
    """Whether `pid` runs and is the process that started at `started` (not a reuse of its
    pid, not a zombie). Without a start time nothing ties a pid to devenv, so it is not."""
    if whole(pid, 2, 2**31 - 1) is None or moment(started) is None:
        return False
    if os.path.isdir("/proc/self"):  # Linux: two small reads, no psutil import
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X") and abs(stat[1] - started) < 0.01
    try:
        import psutil  # elsewhere (macOS): psutil knows where the kernel keeps it

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - started) < 0.01
    except Exception:  # noqa: BLE001 - no such process, or not ours to see
        return False


def started_at(pid: int) -> float | None:
    """The process's start time as psutil's create_time() gives it on Linux (boot time
    from /proc/stat plus the start in clock ticks from /proc/PID/stat); None when it is
    gone or /proc cannot say."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(state letter, start time) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def group_alive(pgid: int, exclude: int | None = None) -> bool:
    """Some process other than a zombie (and other than `exclude`) is in process group
    `pgid`, read from /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                rest = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(rest) > 2 and rest[2] == str(pgid) and rest[0] not in ("Z", "X"):
            return True
    return False
