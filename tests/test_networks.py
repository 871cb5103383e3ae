"""The network check over engine descriptions of networks (as GET /networks/NAME answers)."""

from __future__ import annotations

import pytest

from devenv.engine import Container
from devenv.stack.networks import Attached, NetworkError, attached_containers, check_network

SIX = ("api", "postgres", "redis", "adminer", "prometheus", "grafana")


def bridge(project: str | None = "app", **extra) -> dict:
    labels = {"com.docker.compose.project": project} if project else {}
    return {"Name": "shared", "Driver": "bridge", "Internal": False, "Labels": labels,
            "Containers": {}, **extra}


@pytest.mark.parametrize("name", ["host", "none", "bridge"])
def test_predefined_networks_are_refused_naming_the_setting(name):
    with pytest.raises(NetworkError) as info:
        check_network(name, "app", SIX, {"Name": name, "Driver": name})
    assert info.value.message.startswith(f"DEVENV_NETWORK={name} is ")
    assert info.value.exit_code == 2 and "DEVENV_NETWORK" in info.value.hint


@pytest.mark.parametrize("description, words", [
    (bridge(Driver="macvlan"), "driver macvlan"),
    (bridge(Driver="overlay"), "driver overlay"),
    (bridge(Internal=True), "is internal"),
])
def test_other_drivers_and_internal_networks_are_refused(description, words):
    with pytest.raises(NetworkError) as info:
        check_network("shared", "app", SIX, description)
    assert words in info.value.message and "DEVENV_NETWORK=shared" in info.value.message


def test_missing_own_and_external_networks():
    assert check_network("app", "app", SIX, None).missing
    own = check_network("app", "app", SIX, bridge("app"))
    assert not own.missing and not own.external
    made_by_hand = check_network("shared", "app", SIX, bridge(None))
    assert made_by_hand.external


def test_a_project_whose_service_names_clash_is_refused_naming_it():
    attached = [Attached("other-postgres-1", "other", "postgres"),
                Attached("other-redis-1", "other", "redis")]
    with pytest.raises(NetworkError) as info:
        check_network("shared", "app", ("postgres", "adminer"), bridge("other"), attached)
    message = info.value.message
    assert "shared with project other, which runs postgres" in message
    assert "`postgres` would resolve to both" in message
    assert "stop project other first" in info.value.hint


def test_projects_with_distinct_services_share_a_network():
    attached = [Attached("other-redis-1", "other", "redis"), Attached("web", "", "")]
    check = check_network("shared", "app", ("postgres",), bridge("other"), attached)
    assert check.external and not check.missing
    # this project's own containers never clash with it
    check_network("shared", "app", ("postgres",), bridge("app"),
                  [Attached("app-postgres-1", "app", "postgres")])


def test_attached_containers_come_from_the_description():
    containers = [
        Container("a1", "other-redis-1", "other", "redis", "running", "", "", (),
                  labels={"com.docker.compose.project": "other",
                          "com.docker.compose.service": "redis"}),
        Container("b2", "elsewhere", "", "", "running", "", "", ()),
    ]
    description = bridge("other", Containers={"a1": {"Name": "other-redis-1"}})
    assert attached_containers(description, containers) == [
        Attached("other-redis-1", "other", "redis")]
    assert attached_containers(None, containers) == []
