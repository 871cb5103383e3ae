"""compose/ for a plan: from settings, selection and ports to the render input, and the
rendered files written (only what changed) with the fingerprint `up` compares."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.settings import Settings
from ..config.state import generated_secrets
from ..engine import Engine
from ..ports.plan import PortPlan
from .builds import build_hash, service_builds
from .templates import RenderInput, WriteResult, fingerprint, render_stack, write_outputs
from .watch_rules import watch_rules


@dataclass(frozen=True)
class LanPublish:
    """`devenv up --lan`: these services are published on this address as well."""

    address: str
    services: tuple[str, ...]


def render_input(settings: Settings, services: Sequence[str], plan: PortPlan,
                 start_interval: bool, network_external: bool, url_host: str,
                 warn: Callable[[str], None] | None = None,
                 lan: LanPublish | None = None,
                 volume_keys: Mapping[str, str] | None = None) -> RenderInput:
    builds = service_builds(settings, services)
    # develop.watch rules for the services that declare `watch` and are built here
    watches = {name: watch_rules(settings, builds.get(name), settings.compose_dir)
               for name in services if settings.catalog[name].watch}
    return RenderInput(
        project=settings.project,
        network=settings.network,
        network_external=network_external,
        bind=settings.bind,
        url_host=url_host,
        services=tuple(services),
        ports={name: plan.port(name) for name in services},
        values=settings.values,
        secrets=generated_secrets(settings, services, warn),
        start_interval=start_interval,
        catalog=settings.catalog,
        builds=builds,
        watches={name: rules for name, rules in watches.items() if rules},
        lan_address=lan.address if lan else "",
        lan_services=tuple(s for s in lan.services if s in services) if lan else (),
        seed_dir=str(settings.seed_dir.resolve())
        if any(settings.catalog[s].seed for s in services) and settings.seed_dir.is_dir()
        else "",
        https=https_routes(settings, services, warn)
        if settings.catalog.proxy in services else None,
        volume_keys=volume_keys,
    )


#: where the proxy reaches the apps on the host (Compose's extra_hosts: host-gateway)
HOST_GATEWAY = "host.docker.internal"


def https_routes(settings: Settings, services: Sequence[str],
                 warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The proxy's render input: the project's domain, the certificate (issued or renewed
    here; the CA made on first use) and one route per HTTP service and host app, each to
    where the proxy reaches it (a container by its name, a host app through the gateway)."""
    from ..certs.ca import ensure_leaf
    from ..config.catalog import https_domain, https_host

    assert settings.ca_dir is not None
    domain = https_domain(settings.project)
    leaf = ensure_leaf(settings.ca_dir, domain, settings.project, settings.project_dir,
                       warn or (lambda message: None))
    routes = [{"service": name, "host": https_host(name, settings.project),
               "upstream": f"{name}:{settings.catalog[name].container_port}"}
              for name in services if settings.catalog[name].routed]
    taken = {r["host"] for r in routes}
    routes += [{"service": app.name, "host": https_host(app.name, settings.project),
                "upstream": f"{HOST_GATEWAY}:{app.port}"}
               for app in settings.catalog.host_apps
               if https_host(app.name, settings.project) not in taken]
    return {"domain": domain, "certs": str(leaf.directory), "digest": leaf.digest,
            "routes": routes}


def network_external(engine: Engine, settings: Settings) -> bool:
    """A network of that name made outside this project must be joined as external."""
    network = engine.network(settings.network)
    if network is None:
        return False
    labels = network.get("Labels") or {}
    return labels.get("com.docker.compose.project") != settings.project


@dataclass(frozen=True)
class Rendered:
    """compose/ as written for one plan."""

    services: tuple[str, ...]
    writes: tuple[WriteResult, ...]
    #: of the files and the build contexts: equal means nothing to recreate
    fingerprint: str
    #: change detector of the teams' build contexts ("" when none)
    build: str
    #: service -> build section, for the services whose image is built
    builds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def write_stack(settings: Settings, data: RenderInput,
                warn: Callable[[str], None] | None = None) -> Rendered:
    files = render_stack(data, settings.project_dir / "templates", settings.template_cache)
    writes = tuple(write_outputs(settings.compose_dir, files, warn))
    build = build_hash(settings, data.builds or {})
    return Rendered(data.services, writes, fingerprint(files, extra=build), build,
                    dict(data.builds or {}))
