"""A stack on a remote engine (DOCKER_HOST=ssh://...) at 127.0.0.1 URLs on this machine.

The services publish on the remote machine's loopback (DEVENV_BIND), which the laptop
cannot reach. `up` forwards each published port to the same port on this machine's
127.0.0.1, all over ONE ssh connection to the engine's host, supervised like a named tunnel
(tunnel_supervisor.py: reconnects with backoff). `down` closes it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..config.settings import Settings
from ..errors import DockerUnavailableError
from ..processes import whole
from .runtime import (
    TunnelRecord,
    foreground_options,
    read_record,
    start_forward,
    stop_tunnel,
    tunnel_dir,
)

#: the record's name under .devenv/tunnels/<project>/: tunnel names cannot start with "_"
FORWARD_NAME = "_engine"
FORWARD_HOST = "127.0.0.1"
SERVER_ALIVE_INTERVAL = 15


@dataclass(frozen=True)
class SshTarget:
    destination: str  # [user@]host, as ssh takes it (an alias of ~/.ssh/config works)
    options: tuple[str, ...]  # e.g. ("-p", "2222")

    @property
    def host(self) -> str:
        return self.destination.rpartition("@")[2]


def ssh_target(docker_host: str) -> SshTarget | None:
    """ssh://[user@]host[:port] -> where ssh connects; None for other schemes."""
    parsed = urllib.parse.urlparse(docker_host)
    if parsed.scheme != "ssh" or not parsed.hostname:
        return None
    host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
    destination = f"{parsed.username}@{host}" if parsed.username else host
    try:
        port = parsed.port
    except ValueError:
        raise DockerUnavailableError(f"DOCKER_HOST={docker_host!r} has a bad port",
                                     hint="use ssh://USER@HOST or ssh://USER@HOST:PORT") from None
    return SshTarget(destination, ("-p", str(port)) if port else ())


def applies(docker_host: str, remote_host: str | None, settings: Settings) -> bool:
    """Forward when the engine is reached over ssh on another machine and publishes on its
    loopback (a wider DEVENV_BIND is reachable at the remote host's name already)."""
    return bool(remote_host) and ssh_target(docker_host) is not None and settings.bind_is_loopback


def forward_command(target: SshTarget, ports: Mapping[str, int], remote_bind: str,
                    ssh: str = "ssh", ssh_config: str = "") -> list[str]:
    """One ssh, one -L per published port: 127.0.0.1:P here -> REMOTE_BIND:P there."""
    bind = f"[{remote_bind}]" if ":" in remote_bind else remote_bind
    forwards = [arg for port in sorted(set(ports.values()))
                for arg in ("-L", f"{FORWARD_HOST}:{port}:{bind}:{port}")]
    return [ssh, "-N", *forwards, "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
            *foreground_options(ssh), *(["-F", ssh_config] if ssh_config else []),
            *target.options,
            "-o", f"ServerAliveInterval={SERVER_ALIVE_INTERVAL}", "-o", "ServerAliveCountMax=3",
            "-o", "ConnectTimeout=10", "--", target.destination]


def current(settings: Settings) -> TunnelRecord | None:
    """The project's forward, when its supervisor runs."""
    record = read_record(tunnel_dir(settings.state_dir, settings.project) /
                         f"{FORWARD_NAME}.json")
    return record if record is not None and record.running else None


def forwarded_ports(settings: Settings) -> frozenset[int]:
    record = current(settings)
    return frozenset(ports_of(record).values()) if record is not None else frozenset()


def _runs(record: TunnelRecord, command: list[str]) -> bool:
    recorded = record.meta.get("command")
    return isinstance(recorded, list) and recorded[1:] == command[1:]


def ports_of(record: TunnelRecord) -> dict[str, int]:
    """The record's service -> port map, each port checked as written (1-65535, a JSON
    number): the planner trusts these ports as the forward's own."""
    ports = record.meta.get("ports")
    if not isinstance(ports, dict):
        return {}
    return {str(name): port for name, port in ports.items()
            if whole(port, 1, 65535) is not None}


def ensure(settings: Settings, docker_host: str, ports: Mapping[str, int],
           notify: Callable[[str], None], timeout: float) -> TunnelRecord:
    """The forward for exactly `ports` (service -> port): kept when it already forwards
    them, else (re)started. Raises SshError / PortRaceError when ssh cannot."""
    import shutil

    from ..errors import SshError

    target = ssh_target(docker_host)
    assert target is not None
    record = current(settings)
    wanted = {name: int(port) for name, port in sorted(ports.items())}
    ssh = shutil.which("ssh")
    remote_bind = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
    command = forward_command(target, wanted, remote_bind, ssh or "ssh",
                              settings["DEVENV_SSH_CONFIG"])
    # Kept only when it runs this very command (the ssh binary aside): the same ports to
    # another engine's host (DOCKER_HOST or the context changed) are another forward.
    if record is not None and _runs(record, command) and ports_of(record) == wanted:
        return record
    if record is not None:
        stop_tunnel(record)
    if ssh is None:
        raise SshError("the OpenSSH client (ssh) is not installed; it forwards the remote "
                       "engine's ports", hint="install it (Debian/Ubuntu: apt-get install "
                       "openssh-client)")
    notify(f"forwarding {', '.join(f'{n} {p}' for n, p in wanted.items())} from "
           f"{target.host} to {FORWARD_HOST} over ssh")
    meta = {"name": FORWARD_NAME, "project": settings.project, "kind": "forward",
            "via": target.destination, "ports": wanted, "remote_bind": remote_bind}
    from ..errors import PortConflictError
    from .ssh_failures import PortRaceError

    try:
        return start_forward(FORWARD_NAME, command, sorted(set(wanted.values())),
                             tunnel_dir(settings.state_dir, settings.project), timeout,
                             label=f"forward to {target.host}", via=target.destination,
                             meta=meta)
    except PortRaceError as exc:
        # The services already publish there on the remote side; the next `up` plans
        # around the port now taken here and moves that service.
        raise PortConflictError(f"forward to {target.host}: {exc.message}",
                                hint="run `devenv up` again: the service moves to a port "
                                "free on both sides") from exc


def close(settings: Settings) -> bool:
    """End the project's forward; True when one ran."""
    record = read_record(tunnel_dir(settings.state_dir, settings.project) /
                         f"{FORWARD_NAME}.json")
    if record is None:
        return False
    stop_tunnel(record)
    return record.running


def note(settings: Settings) -> str:
    """One line when the forward is not plainly up: reconnecting, dead, or it reconnected."""
    record = read_record(tunnel_dir(settings.state_dir, settings.project) /
                         f"{FORWARD_NAME}.json")
    if record is None:
        return ""
    where = f"forward from {record.meta.get('via', '?')}"
    if record.state == "dead":
        return f"{where} is not running; `devenv up` starts it again"
    if record.state != "up":
        return f"{where}: {record.state} ({record.restarts} so far; last: {record.last_error})"
    if record.restarts:
        return (f"{where}: up again after {record.restarts} reconnect"
                f"{'s' if record.restarts > 1 else ''} (last drop: {record.last_error})")
    return ""
