"""The dashboard's documents: pure functions from what the engine and devenv know to the
versioned JSON the page and scripts read. No I/O here, so every field is unit-tested."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config.catalog import Catalog
from ..config.projectfile import builtin_catalog

STATE_SCHEMA = "devenv.dashboard/1"
STATS_SCHEMA = "devenv.dashboard.stats/1"
LOGS_SCHEMA = "devenv.dashboard.logs/1"
SECRETS_SCHEMA = "devenv.dashboard.secrets/1"
ACTION_SCHEMA = "devenv.dashboard.action/1"
SNAPSHOTS_SCHEMA = "devenv.dashboard.snapshots/1"
SCHEMAS = (STATE_SCHEMA, STATS_SCHEMA, LOGS_SCHEMA, SECRETS_SCHEMA, ACTION_SCHEMA,
           SNAPSHOTS_SCHEMA)


def service_entry(name: str, container: Mapping[str, Any] | None,
                  probe: tuple[bool, str] | None, url: str,
                  catalog: Catalog | None = None) -> dict[str, Any]:
    """One service as the page shows it. `container` is the engine's inspect document
    (None: no container exists); `probe` is devenv's own check (ok, detail)."""
    spec = (catalog or builtin_catalog())[name]
    base: dict[str, Any] = {"service": name, "title": spec.title, "needs": list(spec.needs),
                            "url": url}
    if container is None:
        return {**base, "state": "absent", "health": "", "probe": None, "container": "",
                "started_at": None, "restarts": 0, "exit_code": None}
    state = container.get("State") or {}
    status = str(state.get("Status", "")) or "unknown"
    running = status == "running"
    return {
        **base,
        "state": status,
        "health": str((state.get("Health") or {}).get("Status", "")),
        "probe": ({"ok": probe[0], "detail": probe[1]} if probe is not None and running
                  else None),
        "container": str(container.get("Name", "")).lstrip("/"),
        "started_at": str(state.get("StartedAt", "")) if running else None,
        "restarts": int(container.get("RestartCount") or 0),
        "exit_code": None if running else int(state.get("ExitCode") or 0),
    }


def port_entries(choices: Mapping[str, Mapping[str, Any]], live: Mapping[str, int],
                 memory: Mapping[str, int],
                 catalog: Catalog | None = None,
                 apps: Mapping[str, tuple[int, bool]] | None = None) -> list[dict[str, Any]]:
    """The port story per service and host app: wanted, given, why; the spec's columns.

    choices: service -> PortChoice.as_data() of a fresh plan; live: service -> the port its
    container publishes now; memory: service -> the port remembered in .devenv/state.json;
    apps: host app devenv started -> (its port, whether it runs).
    """
    cat = catalog or builtin_catalog()
    rows: list[dict[str, Any]] = []
    for name, spec in cat.items():
        choice = choices.get(name) or {}
        here = live.get(name, choice.get("port"))
        rows.append({
            "service": name, "kind": "container", "title": spec.title,
            "wanted": choice.get("configured", spec.dev_port), "here": here,
            "running": name in live, "rule": choice.get("rule", ""),
            "moved": here != choice.get("configured", spec.dev_port),
            "reason": choice.get("reason"), "text": choice.get("text", ""),
            "remembered": memory.get(name),
            "dev": spec.dev_port, "staging": spec.staging_port, "prod": spec.prod_port,
        })
    for app in cat.host_apps:
        if app.managed:
            port, running = (apps or {}).get(app.name, (None, False))
            rows.append({"service": app.name, "kind": "host app", "title": app.title,
                         "wanted": app.port, "here": port, "running": running,
                         "rule": "host app devenv runs", "moved": port not in (None, app.port),
                         "reason": None, "text": f"{app.name}: `sh -c` {app.command}",
                         "remembered": memory.get(app.name), "dev": app.port,
                         "staging": None, "prod": None})
            continue
        rows.append({"service": app.name, "kind": "host app", "title": app.title,
                     "wanted": app.port, "here": None, "running": False, "rule": "reserved",
                     "moved": False, "reason": None,
                     "text": f"host app: {app.port} is kept free for it", "remembered": None,
                     "dev": app.port, "staging": None, "prod": None})
    return rows


def graph(services: Sequence[Mapping[str, Any]],
          catalog: Catalog | None = None) -> dict[str, Any]:
    """Nodes in layers (what needs nothing at the bottom) and one edge per need."""
    cat = catalog or builtin_catalog()
    layer: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in layer:
            needs = cat[name].needs
            layer[name] = 1 + max((depth(n) for n in needs), default=-1)
        return layer[name]

    states = {s["service"]: s["state"] for s in services}
    nodes = [{"id": name, "layer": depth(name), "state": states.get(name, "absent")}
             for name in cat]
    edges = [{"from": name, "to": need} for name in cat for need in cat[name].needs]
    return {"nodes": nodes, "edges": edges}


def critical_chain(seconds: Mapping[str, float | None],
                   catalog: Catalog | None = None) -> list[str]:
    """The slowest service and, below it, the slowest of what it needs: the chain that set
    how long `up` took."""
    cat = catalog or builtin_catalog()
    known = {k: v for k, v in seconds.items() if v is not None and k in cat}
    if not known:
        return []
    chain = [max(known, key=lambda k: known[k])]
    while True:
        needs = [n for n in cat[chain[-1]].needs if n in known]
        if not needs:
            return chain
        chain.append(max(needs, key=lambda k: known[k]))


def timing_entry(timing: Mapping[str, Any] | None,
                 catalog: Catalog | None = None) -> dict[str, Any] | None:
    if not timing:
        return None
    cat = catalog or builtin_catalog()
    services = {k: v for k, v in (timing.get("services") or {}).items() if k in cat}
    return {"finished_at": timing.get("finished_at"), "total_seconds": timing.get(
        "total_seconds"), "started": timing.get("started"), "services": services,
        "failed": timing.get("failed") or {},
        "critical_chain": critical_chain(services, cat)}


def state_document(project: str, engine: Mapping[str, Any],
                   services: Sequence[Mapping[str, Any]], ports: Sequence[Mapping[str, Any]],
                   timing: Mapping[str, Any] | None, features: Mapping[str, bool],
                   generated_at: float, catalog: Catalog | None = None) -> dict[str, Any]:
    return {"schema": STATE_SCHEMA, "project": project, "generated_at": generated_at,
            "engine": dict(engine), "services": list(services), "ports": list(ports),
            "graph": graph(services, catalog), "timing": timing_entry(timing, catalog),
            "features": dict(features)}


def stats_entry(name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """CPU % (of one core, as `docker stats`) and memory from one Engine API stats sample."""
    cpu = raw.get("cpu_stats") or {}
    pre = raw.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage", 0)
                 - (pre.get("cpu_usage") or {}).get("total_usage", 0))
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                         or []) or 1
    percent = (cpu_delta / system_delta * cpus * 100.0) if system_delta > 0 and cpu_delta >= 0 \
        else 0.0
    memory = raw.get("memory_stats") or {}
    details = memory.get("stats") or {}
    # as `docker stats`: the page cache that can be dropped does not count
    cache = details.get("inactive_file", details.get("total_inactive_file", 0))
    used = max(0, int(memory.get("usage", 0)) - int(cache or 0))
    return {"service": name, "cpu_percent": round(percent, 2), "memory_bytes": used,
            "memory_limit_bytes": int(memory.get("limit", 0))}


def snapshots_document(project: str, directory: str, snapshots: Sequence[Mapping[str, Any]],
                       busy: str | None) -> dict[str, Any]:
    """The snapshot list as `devenv db snapshots --json` has it (oldest first), each with
    a readable size, and the action running now (None: the buttons may be used)."""
    from ..data.snapshots import human_size

    return {"schema": SNAPSHOTS_SCHEMA, "project": project, "directory": directory,
            "busy": busy,
            "snapshots": [{**s, "size": human_size(int(s.get("bytes") or 0))}
                          for s in snapshots]}
