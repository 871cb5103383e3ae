"""The tunnel use cases: `tunnel up`, `tunnel down`, `tunnel ls`, and the tunnel rows that
`ports`, `status` and `ports --env` add. They return values and never print."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..config.settings import Settings, read_env_file
from ..config.state import Memory
from ..context import Context
from ..errors import DockerUnavailableError, PortConflictError, SshError, UsageError
from ..ports.plan import Holder, PortChoice, PortRequest, plan_ports
from .runtime import (
    TunnelRecord,
    probe_tunnel,
    start_tunnel,
    stop_tunnel,
    tunnel_dir,
)
from .runtime import read_records as _all_records
from .ssh_failures import PortRaceError
from .tables import (
    PROJECT_FILE,
    Credentials,
    TunnelSpec,
    credentials,
    drift,
    parse_tunnels,
    recorded,
    recorded_spec,
    select_tunnels,
    tunnel_url,
    tunnel_values,
)

STATE_SECTION = "tunnels"


def read_records(state_dir: Any, project: str) -> dict[str, TunnelRecord]:
    """The named tunnels' records (not the engine forward's, whose name starts with _)."""
    return {n: r for n, r in _all_records(state_dir, project).items()
            if not n.startswith("_")}
RACE_RETRIES = 3


@dataclass(frozen=True)
class TunnelRow:
    name: str
    kind: str
    production: bool
    via: str
    target: str
    url: str
    env_key: str
    port: int | None
    configured_port: int
    state: str  # up | connecting | reconnecting | dead | down (+ ", not answering (...)")
    restarts: int = 0
    uptime_seconds: float | None = None
    pid: int | None = None
    declared: bool = True
    last_error: str = ""
    #: why the tunnel is not on its wished port, e.g. "5432 is taken by ..."
    note: str = ""
    #: how what runs differs from devenv.toml now ("" when it runs the declaration)
    changed: str = ""

    @property
    def stale(self) -> bool:
        """It runs, but not what devenv.toml declares: its URL is not handed out."""
        return bool(self.port) and (bool(self.changed) or not self.declared)

    @property
    def label(self) -> str:
        return f"{self.name} PROD" if self.production else self.name


def _values(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    dotenv = read_env_file(settings.env_file) if settings.env_file is not None else {}
    return tunnel_values(environ, dotenv)


def _row(spec: TunnelSpec, port: int | None, state: str, creds: Credentials,
         show_secrets: bool, record: TunnelRecord | None = None, note: str = "") -> TunnelRow:
    url = tunnel_url(spec.kind, port, creds, spec.path, spec.production,
                     show_secrets) if port else ""
    return TunnelRow(
        name=spec.name, kind=spec.kind, production=spec.production, via=spec.via,
        target=spec.target, url=url, env_key=spec.env_key, port=port,
        configured_port=spec.wanted_port, state=state,
        restarts=record.restarts if record else 0,
        uptime_seconds=round(time.time() - record.since, 1)
        if record and record.state == "up" else None,
        pid=record.supervisor_pid if record and record.running else None,
        last_error=record.last_error if record else "", note=note)


@dataclass(frozen=True)
class Running:
    """What a running tunnel's record says it runs, against devenv.toml now."""

    #: what its ssh was opened with (None: the record does not say)
    spec: TunnelSpec | None
    #: "" when that is what devenv.toml declares; else the difference in words
    changed: str
    #: whether devenv.toml still declares a tunnel of this name
    declared: bool
    #: what runs is production, or what is declared is, or the record does not say
    production: bool


def what_runs(record: TunnelRecord, declared: TunnelSpec | None,
              ssh_config: str) -> Running:
    running = recorded_spec(record.name, record.meta)
    changed = drift(running, record.meta, declared, ssh_config) if declared else ""
    production = (running is None or running.production
                  or (declared is not None and declared.production))
    return Running(running, changed, declared is not None, production)


def _running_row(record: TunnelRecord, now: Running, values: Mapping[str, str],
                 show_secrets: bool) -> TunnelRow:
    """A running tunnel's row shows what runs: its target, kind and URL, tagged PROD (and
    read-only) when what runs or what is declared is production."""
    spec = replace(now.spec or _unknown(record.name), production=now.production)
    row = _row(spec, record.port, record.state, credentials(spec, values), show_secrets,
               record)
    if now.spec is None:
        row = replace(row, target="?", url="")
    return replace(row, changed=now.changed, declared=now.declared)


def _spec_of(record: TunnelRecord) -> TunnelSpec:
    """A tunnel no longer declared, as its record remembers it."""
    return recorded_spec(record.name, record.meta) or _unknown(record.name)


def _unknown(name: str) -> TunnelSpec:
    """A tunnel whose record does not say where it leads."""
    return TunnelSpec(name=name, via="?", target_host="?", target_port=0)


def _declared(settings: Settings) -> dict[str, TunnelSpec]:
    """The project's [tunnels.*] tables, as the catalog's loader read devenv.toml."""
    return parse_tunnels(settings.project_dir / PROJECT_FILE, settings.catalog.tunnels,
                         settings.catalog)


# --- planning ------------------------------------------------------------------------
def _busy(ctx: Context, settings: Settings) -> Any:
    """Busy local ports: this host's listeners and the local engine's containers. A remote
    engine's containers publish on another machine, so only this host counts then."""
    from ..engine import remote_host_of
    from ..engine.dockercontext import resolve_engine
    from ..ports.holders import ContainerPort, HostPorts

    containers: dict[int, ContainerPort] = {}
    try:
        if remote_host_of(resolve_engine(ctx.environ).host):
            return HostPorts(containers, settings.project)  # no need to dial a remote engine
        engine = ctx.engine()
        if engine.info().remote_host is None:
            for c in engine.containers():
                for port in engine.port_bindings(c):
                    containers[port] = ContainerPort(port, c.name, c.project, c.service,
                                                     c.running)
    except DockerUnavailableError as exc:
        ctx.notify(f"no engine ({exc.message}); ports are checked on this host only")
    return HostPorts(containers, settings.project)


def _reserved(settings: Settings, busy: Mapping[int, Holder]) -> dict[int, str]:
    """The host apps' ports, and the ports this project's services remember: a tunnel
    must not take the port the local stack comes back to."""
    from ..config.state import StateFile
    from ..ports.planner import reserved_ports

    reserved = reserved_ports(settings)
    for name, memory in StateFile(settings.state_dir).load(settings.project).ports.items():
        if memory.port not in reserved and busy.get(memory.port) is None:
            reserved[memory.port] = f"this project's {name} (not running now)"
    return reserved


def plan_tunnel_port(spec: TunnelSpec, busy: Mapping[int, Holder], reserved: Mapping[int, str],
                     memory: Mapping[str, Memory]) -> PortChoice:
    """The local port of one tunnel, by the services' rules (remembered, wished, next free)."""
    request = PortRequest(spec.request_name, spec.wanted_port, memory.get(spec.name))
    return plan_ports([request], busy, reserved).choices[0]


# --- the use cases -------------------------------------------------------------------
def up(ctx: Context, names: Sequence[str], show_secrets: bool = False) -> list[TunnelRow]:
    """Start the named tunnels (all declared when none is named); return their rows.

    A tunnel already up keeps its port. Each new one waits until its far end answers.
    """
    from ..config.state import StateFile, project_lock

    settings = ctx.settings()
    specs = select_tunnels(_declared(settings), list(names),
                           settings.project_dir)
    ssh = shutil.which("ssh")
    if ssh is None:
        raise SshError("the OpenSSH client (ssh) is not installed",
                       hint="install it (Debian/Ubuntu: apt-get install openssh-client)")
    values = _values(settings, ctx.environ)
    ssh_config = settings["DEVENV_SSH_CONFIG"]
    folder = tunnel_dir(settings.state_dir, settings.project)
    state_file = StateFile(settings.state_dir, warn=ctx.notify)
    rows: list[TunnelRow] = []
    with project_lock(settings.state_dir, settings.project, "tunnel up",
                      settings.wait_timeout, on_wait=ctx.notify):
        records = read_records(settings.state_dir, settings.project)
        memory = state_file.load_ports(STATE_SECTION, settings.project)
        for spec in specs:
            creds = credentials(spec, values)
            record = records.get(spec.name)
            if record is not None and record.running:
                now = what_runs(record, spec, ssh_config)
                if not now.changed:
                    ctx.notify(f"tunnel {spec.name}: already {record.state} on 127.0.0.1:"
                               f"{record.port}")
                    rows.append(_running_row(record, now, values, show_secrets))
                    continue
                ctx.notify(f"tunnel {spec.name}: devenv.toml changed since it was opened "
                           f"({now.changed}); reopening it as declared")
            if record is not None:
                stop_tunnel(record)  # a dead one's leftovers, or what no longer is declared
            record, choice = _start_one(ctx, settings, spec, creds, memory, folder, ssh)
            memory = {**memory, spec.name: Memory(choice.port, choice.configured)}
            state_file.save_ports(STATE_SECTION, settings.project, memory)
            rows.append(_row(spec, record.port, "up", creds, show_secrets, record,
                             note=choice.describe().split(": ", 1)[1] if choice.moved else ""))
    return rows


def _start_one(ctx: Context, settings: Settings, spec: TunnelSpec, creds: Credentials,
               memory: Mapping[str, Memory], folder: Any,
               ssh: str) -> tuple[TunnelRecord, PortChoice]:
    """Plan a port and start the tunnel there; when the port is taken between planning and
    ssh's bind, plan again with it marked busy (a few times)."""
    busy = _busy(ctx, settings)
    reserved = _reserved(settings, busy)
    for attempt in range(RACE_RETRIES + 1):
        choice = plan_tunnel_port(spec, busy, reserved, memory)
        if choice.moved:
            ctx.notify(choice.describe())
        meta = {"name": spec.name, "project": settings.project,
                "configured": spec.wanted_port,
                **recorded(spec, settings["DEVENV_SSH_CONFIG"])}
        try:
            record = start_tunnel(spec, choice.port, folder, creds, settings.wait_timeout,
                                  ssh=ssh, ssh_config=settings["DEVENV_SSH_CONFIG"], meta=meta,
                                  notify=ctx.notify)
            return record, choice
        except PortRaceError as exc:
            if attempt == RACE_RETRIES:
                raise PortConflictError(
                    f"tunnel {spec.name}: every port planned was taken before ssh could "
                    f"listen ({exc.message})",
                    hint="something is grabbing ports; set `local_port` in devenv.toml "
                    "to a quiet range") from exc
            ctx.notify(f"tunnel {spec.name}: {exc.message}; planning again")
            busy.mark(exc.port, Holder("process", "another process (taken after planning)"))
            memory = {k: v for k, v in memory.items() if k != spec.name}
    raise AssertionError("unreachable")


def down(ctx: Context, names: Sequence[str] = ()) -> list[str]:
    """End the named tunnels (all of the project when none is named); return their names."""
    from ..config.state import project_lock

    settings = ctx.settings()
    records = read_records(settings.state_dir, settings.project)
    if names:
        declared = _declared_or_empty(ctx, settings)
        unknown = [n for n in names if n not in declared and n not in records]
        if unknown:
            raise UsageError(f"tunnel {unknown[0]!r} is not declared in "
                             f"{settings.project_dir / PROJECT_FILE}",
                             hint="declared: " + (", ".join(declared) or "none"))
    with project_lock(settings.state_dir, settings.project, "tunnel down",
                      settings.wait_timeout, on_wait=ctx.notify):
        stopped = []
        for name, record in records.items():
            if names and name not in names:
                continue
            stop_tunnel(record)
            stopped.append(name)
    return stopped


def _declared_or_empty(ctx: Context, settings: Settings) -> dict[str, TunnelSpec]:
    try:
        return _declared(settings)
    except UsageError as exc:
        ctx.notify(f"warning: {exc.message}")
        return {}


def rows(ctx: Context, settings: Settings, show_secrets: bool = False, probe: bool = True,
         declared_only_if_running: bool = False) -> list[TunnelRow]:
    """Every declared tunnel and every one still running, with its state now.

    A running tunnel's row shows what runs (its record), and how that differs from
    devenv.toml now (`changed`). declared_only_if_running: only tunnels with a process (what
    `ports` and `status` show; a bad devenv.toml is then a warning, not an error). A running
    tunnel is probed through once when `probe` is set.
    """
    records = read_records(settings.state_dir, settings.project)
    if not declared_only_if_running:
        specs = _declared(settings)
    else:
        specs = _declared_or_empty(ctx, settings) if records else {}
    values = _values(settings, ctx.environ) if specs or records else {}
    result: list[TunnelRow] = []
    running: dict[str, TunnelSpec] = {}
    for name in [*specs, *[n for n in records if n not in specs]]:
        record = records.get(name)
        if declared_only_if_running and (record is None or not record.running):
            continue
        if record is not None and record.running:
            now = what_runs(record, specs.get(name), settings["DEVENV_SSH_CONFIG"])
            if now.spec is not None:
                running[name] = replace(now.spec, production=now.production)
            result.append(_running_row(record, now, values, show_secrets))
            continue
        spec = specs.get(name) or _spec_of(record)  # type: ignore[arg-type]
        creds = credentials(spec, values)
        if record is None:
            result.append(_row(spec, None, "down", creds, show_secrets))
            continue
        row = _row(spec, record.port, record.state, creds, show_secrets, record)
        result.append(replace(row, declared=name in specs))
    if probe:
        result = _probed(result, running, values)
    return result


def _probed(rows: list[TunnelRow], running: Mapping[str, TunnelSpec],
            values: Mapping[str, str]) -> list[TunnelRow]:
    """Probe each tunnel that is up through itself, as what runs (its record) says."""
    import threading

    answers: dict[str, Any] = {}

    def one(row: TunnelRow, spec: TunnelSpec) -> None:
        answers[row.name] = probe_tunnel(spec, row.port or 0, credentials(spec, values))

    threads = [threading.Thread(target=one, args=(r, running[r.name]), daemon=True)
               for r in rows if r.state == "up" and r.name in running]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3)
    out = []
    for row in rows:
        answer = answers.get(row.name)
        if row.state == "up" and (answer is None or not answer.ok):
            detail = answer.detail if answer is not None else "no answer"
            row = replace(row, state=f"up, not answering ({detail})")
        out.append(row)
    return out


def app_env(ctx: Context, settings: Settings) -> dict[str, str]:
    """PROD_DB_URL and friends for the tunnels that run, with their credentials (printed,
    never written to disk by devenv). A tunnel that runs something devenv.toml no longer
    declares has no URL to hand out: that is an error until it is reopened or closed."""
    if open_tunnels(settings):
        _declared(settings)  # a table that does not check cannot vouch for a running URL
    found = rows(ctx, settings, show_secrets=True, probe=False, declared_only_if_running=True)
    for row in found:
        if row.stale:
            raise stale_error(row)
    return {r.env_key: r.url for r in found if r.port}


def stale_error(row: TunnelRow) -> UsageError:
    """A tunnel that runs, but not as devenv.toml declares it now."""
    runs = f"tunnel {row.name} runs {row.via} -> {row.target}"
    if not row.declared:
        return UsageError(f"{runs}, but devenv.toml no longer declares it",
                          hint=f"close it: devenv tunnel down {row.name}")
    return UsageError(f"{runs}, but devenv.toml changed since it was opened: {row.changed}",
                      hint=f"reopen it as declared: devenv tunnel up {row.name} (or close "
                      f"it: devenv tunnel down {row.name})")


def open_tunnels(settings: Settings) -> list[str]:
    """Names of the project's tunnels whose processes run."""
    return [name for name, record in read_records(settings.state_dir, settings.project).items()
            if record.running]


def psql(ctx: Context, name: str, args: Sequence[str]) -> int:
    """This machine's psql through the open tunnel `name`, logged in with the tunnel's
    credentials (the password in the environment, never on a command line); a production
    tunnel's session is read-only by default (SET default_transaction_read_only = off in
    the session, deliberately, lifts it). Returns psql's exit code."""
    import subprocess

    settings = ctx.settings()
    specs = _declared(settings)
    spec = select_tunnels(specs, [name], settings.project_dir)[0]
    if spec.kind != "postgres":
        raise UsageError(f"tunnel {name} is kind {spec.kind}, not postgres",
                         hint="psql --tunnel needs a tunnel with kind = \"postgres\"")
    record = read_records(settings.state_dir, settings.project).get(name)
    if record is None or record.state != "up":
        state = record.state if record is not None else "down"
        raise UsageError(f"tunnel {name} is {state}", hint=f"open it: devenv tunnel up {name}")
    now = what_runs(record, spec, settings["DEVENV_SSH_CONFIG"])
    if now.changed:
        raise stale_error(_running_row(record, now, {}, False))
    client = shutil.which("psql")
    if client is None:
        raise UsageError("psql is not installed on this machine",
                         hint="install the PostgreSQL client (Debian/Ubuntu: apt-get install "
                         "postgresql-client)")
    creds = credentials(spec, _values(settings, ctx.environ))
    env = {**ctx.environ, "PGHOST": "127.0.0.1", "PGPORT": str(record.port),
           "PGUSER": creds.user, "PGDATABASE": creds.database,
           "PGAPPNAME": f"devenv tunnel {name}"}
    env.pop("PGPASSWORD", None)
    if creds.password:
        env["PGPASSWORD"] = creds.password
    if now.production:
        env["PGOPTIONS"] = " ".join(filter(None, (ctx.environ.get("PGOPTIONS", ""),
                                                  "-c default_transaction_read_only=on")))
        ctx.notify(f"tunnel {name} reaches PRODUCTION ({spec.target}): read-only session")
    return subprocess.run([client, *args], env=env).returncode
