"""Port planning: a pure function of (wanted, busy, reserved, memory) -> PortPlan.

The rule, per service, in this order (each pass sees the claims of the passes before it):
1. running:    this project's own running container publishes it, and the configured port
               did not change since: keep it (nothing gets recreated).
2. remembered: the port it had last time, if still free (sticky across runs).
3. configured: the configured port, if free and not reserved.
4. next free:  the next free, unreserved port above the configured one.
A configured port the user changed wins over memory. With strict=True step 4 is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..config.state import Memory
from ..errors import PortConflictError

RUNNING, REMEMBERED, CONFIGURED, NEXT_FREE = "running", "remembered", "configured", "next free"
MAX_PORT = 65535


@dataclass(frozen=True)
class Holder:
    """Who holds a host port. kind: own | container | process.

    `detail` may be a function, called only when a message names the holder: finding the
    process behind a port costs a scan of the process table.
    """

    kind: str
    detail: str | Callable[[], str]
    service: str = ""  # for kind "own": the service of this project that publishes it

    @property
    def description(self) -> str:
        return self.detail() if callable(self.detail) else self.detail


@dataclass(frozen=True)
class PortRequest:
    service: str
    configured: int
    memory: Memory | None = None


@dataclass(frozen=True)
class Blocker:
    """Why a service cannot have a port: data, put into words only when shown (naming a
    host process costs a scan of the process table)."""

    port: int
    reserved_for: str = ""
    other_service: str = ""
    holder: Holder | None = None

    def __str__(self) -> str:
        if self.reserved_for:
            return f"{self.port} is reserved for {self.reserved_for}"
        if self.other_service:
            return f"{self.port} is taken by {self.other_service} in this stack"
        assert self.holder is not None
        return f"{self.port} is taken by {self.holder.description}"

    def as_data(self) -> dict[str, object]:
        """The reason as data: kind reserved | stack | own | container | process, and who."""
        if self.reserved_for:
            kind, who = "reserved", self.reserved_for
        elif self.other_service:
            kind, who = "stack", self.other_service
        else:
            assert self.holder is not None
            kind, who = self.holder.kind, self.holder.description
        return {"port": self.port, "kind": kind, "by": who, "text": str(self)}


@dataclass(frozen=True)
class PortChoice:
    service: str
    port: int
    configured: int
    rule: str
    #: why the configured port was not used (None when it was)
    reason: Blocker | None = None

    @property
    def moved(self) -> bool:
        return self.port != self.configured

    def as_data(self) -> dict[str, object]:
        return {"service": self.service, "port": self.port, "configured": self.configured,
                "rule": self.rule, "moved": self.moved,
                "reason": self.reason.as_data() if self.reason else None,
                "text": self.describe()}

    def describe(self) -> str:
        """One line for the run's output, e.g. 'postgres: 5432 is taken, using 5433'."""
        if not self.moved:
            return f"{self.service}: {self.port}"
        why = str(self.reason) if self.reason else f"{self.configured} is not used"
        if self.rule == REMEMBERED:
            return f"{self.service}: {why}; using {self.port} as last time"
        if self.rule == RUNNING:
            return f"{self.service}: kept {self.port}, where it is running ({why})"
        return f"{self.service}: {why}, using {self.port}"


@dataclass(frozen=True)
class PortPlan:
    choices: tuple[PortChoice, ...]

    def port(self, service: str) -> int:
        return self.by_service()[service].port

    def by_service(self) -> dict[str, PortChoice]:
        return {c.service: c for c in self.choices}

    @property
    def moved(self) -> tuple[PortChoice, ...]:
        return tuple(c for c in self.choices if c.moved)

    def as_memory(self) -> dict[str, Memory]:
        return {c.service: Memory(c.port, c.configured) for c in self.choices}


def plan_ports(
    requests: Sequence[PortRequest],
    busy: Mapping[int, Holder],
    reserved: Mapping[int, str],
    own: Mapping[str, int] | None = None,
    strict: bool = False,
    owners: Mapping[int, str] | None = None,
) -> PortPlan:
    """Choose a host port for each request. Pure: no I/O, same input -> same plan.

    busy: port -> who holds it (only `get` is used, so it may be a lazy mapping);
    own: service -> the port this project's running container publishes for it;
    owners: reserved port -> the one service (a host app devenv runs) that may have it.
    Four passes, each taking what the one before left: the running container's port, the
    remembered port, the configured port, the next free port above it.
    """
    claims = _Claims(busy, reserved, owners or {})
    _keep_running(claims, requests, own or {}, strict)
    if not strict:
        _keep_remembered(claims, requests)
    for req in requests:
        if req.service not in claims.chosen and not claims.blocked(req.configured, req.service):
            claims.claim(req, req.configured, CONFIGURED, None)
    _move_up(claims, requests, strict)
    return PortPlan(tuple(claims.chosen[req.service] for req in requests))


class _Claims:
    """The ports handed out so far, and why a port is not free for a service."""

    def __init__(self, busy: Mapping[int, Holder], reserved: Mapping[int, str],
                 owners: Mapping[int, str]):
        self.busy = busy
        self.reserved = reserved
        self.owners = owners
        self.claimed: dict[int, str] = {}
        self.chosen: dict[str, PortChoice] = {}

    def _reserved(self, port: int, service: str) -> bool:
        return port in self.reserved and self.owners.get(port) != service

    def blocked(self, port: int, service: str) -> bool:
        if self._reserved(port, service) or self.claimed.get(port, service) != service:
            return True
        holder = self.busy.get(port)
        return holder is not None and not (holder.kind == "own" and holder.service == service)

    def why(self, port: int, service: str) -> Blocker | None:
        """Why `service` cannot have `port`, or None when it can."""
        if not self.blocked(port, service):
            return None
        if self._reserved(port, service):
            return Blocker(port, reserved_for=self.reserved[port])
        if self.claimed.get(port, service) != service:
            return Blocker(port, other_service=self.claimed[port])
        return Blocker(port, holder=self.busy[port])

    def claim(self, req: PortRequest, port: int, rule: str, reason: Blocker | None) -> None:
        self.claimed[port] = req.service
        self.chosen[req.service] = PortChoice(req.service, port, req.configured, rule, reason)


def _memory_valid(req: PortRequest) -> bool:
    return req.memory is not None and req.memory.configured == req.configured


def _keep_running(claims: _Claims, requests: Sequence[PortRequest], own: Mapping[str, int],
                  strict: bool) -> None:
    """Pass 1: ports our running containers publish stay put."""
    for req in requests:
        if not _memory_valid(req) and req.memory is not None:
            continue  # the user changed the configured port: plan it afresh
        kept = own.get(req.service)
        if kept is not None and not claims.blocked(kept, req.service):
            if strict and kept != req.configured:
                continue
            claims.claim(req, kept, RUNNING, None if kept == req.configured
                         else claims.why(req.configured, req.service))


def _keep_remembered(claims: _Claims, requests: Sequence[PortRequest]) -> None:
    """Pass 2: remembered ports (never with --strict-ports)."""
    for req in requests:
        if req.service in claims.chosen or not _memory_valid(req):
            continue
        assert req.memory is not None
        if not claims.blocked(req.memory.port, req.service):
            reason = None if req.memory.port == req.configured \
                else claims.why(req.configured, req.service)
            claims.claim(req, req.memory.port, REMEMBERED, reason)


def _move_up(claims: _Claims, requests: Sequence[PortRequest], strict: bool) -> None:
    """Pass 4: the next free port above the configured one; --strict-ports refuses."""
    for req in requests:
        if req.service in claims.chosen:
            continue
        reason = claims.why(req.configured, req.service)
        if strict:
            raise PortConflictError(
                f"{req.service}: {reason}",
                hint="free the port, or drop --strict-ports to let devenv move the service")
        port = next((p for p in range(req.configured + 1, MAX_PORT + 1)
                     if not claims.blocked(p, req.service)), None)
        if port is None:
            raise PortConflictError(
                f"{req.service}: no free port above {req.configured}",
                hint=f"set DEVENV_{req.service.upper()}_PORT to a lower port")
        claims.claim(req, port, NEXT_FREE, reason)

