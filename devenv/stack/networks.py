"""The project's Docker network, checked before anything starts.

Pure: it judges an engine's description of the network (`GET /networks/NAME`, or None when
there is none) and the containers attached to it; the caller fetches them.

Two projects may share a network (DEVENV_NETWORK): a team's app containers can then reach
the stack by service name. What devenv refuses is ambiguity: when another project already
has a container on the network under a service name this project would run, `postgres`
would resolve to both databases, so `up` stops (exit 2) and names the project. Projects
whose services do not overlap share the network without harm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

#: networks Docker predefines: `host` and `none` are no networks a service can join by
#: name, and the default `bridge` has no name resolution between containers
PREDEFINED = {"host": "the host's own network stack (no isolation, no published ports)",
              "none": "no network at all",
              "bridge": "Docker's default bridge, where containers cannot resolve each "
                        "other's names"}
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class NetworkError(UsageError):
    """DEVENV_NETWORK names a network devenv cannot (or must not) put the stack on."""


@dataclass(frozen=True)
class NetworkCheck:
    #: the network exists and was not made by this project: join it, never remove it
    external: bool
    #: the network does not exist (yet, or any more): compose creates it
    missing: bool


@dataclass(frozen=True)
class Attached:
    """A container on the network, as its labels say."""

    name: str
    project: str
    service: str


def _hint(project: str) -> str:
    return ("leave DEVENV_NETWORK empty (each project then gets its own network), or set "
            f"e.g. DEVENV_NETWORK={project}-net")


def check_network(name: str, project: str, services: Iterable[str],
                  description: Mapping[str, Any] | None,
                  attached: Iterable[Attached] = ()) -> NetworkCheck:
    """Raise NetworkError (exit 2, naming DEVENV_NETWORK) when the stack cannot run on
    `name`; else say whether to join it as external or let compose create it."""
    if name in PREDEFINED:
        raise NetworkError(f"DEVENV_NETWORK={name} is {PREDEFINED[name]}; the stack needs a "
                           "network of its own kind (a user-defined bridge)",
                           hint=_hint(project))
    if description is None:
        return NetworkCheck(external=False, missing=True)
    driver = str(description.get("Driver") or "bridge")
    if driver != "bridge":
        raise NetworkError(f"DEVENV_NETWORK={name}: that network exists with driver "
                           f"{driver}, but the stack publishes ports on a bridge network",
                           hint=_hint(project) + f", or remove the {driver} network if it "
                           "is unused")
    if description.get("Internal"):
        raise NetworkError(f"DEVENV_NETWORK={name}: that network exists and is internal "
                           "(no published port can reach it)", hint=_hint(project))
    wanted = set(services)
    clashes: dict[str, list[str]] = {}
    for c in attached:
        if c.project and c.project != project and c.service in wanted:
            clashes.setdefault(c.project, []).append(c.service)
    if clashes:
        other, names = next(iter(sorted(clashes.items())))
        listed = ", ".join(sorted(set(names)))
        raise NetworkError(
            f"DEVENV_NETWORK={name} is shared with project {other}, which runs {listed} "
            f"there: on that network `{sorted(set(names))[0]}` would resolve to both "
            "projects' containers",
            hint=_hint(project) + f"; or stop project {other} first")
    labels = description.get("Labels") or {}
    return NetworkCheck(external=labels.get(PROJECT_LABEL) != project, missing=False)


def attached_containers(description: Mapping[str, Any] | None,
                        containers: Iterable[Any]) -> list[Attached]:
    """The containers (engine records with id, name, labels) listed on the network."""
    if not description:
        return []
    ids = set((description.get("Containers") or {}).keys())
    return [Attached(c.name, str(c.labels.get(PROJECT_LABEL, "")),
                     str(c.labels.get(SERVICE_LABEL, "")))
            for c in containers if c.id in ids]

