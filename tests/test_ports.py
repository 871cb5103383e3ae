from __future__ import annotations

import pytest

from devenv.errors import EXIT_PORTS, PortConflictError
from devenv.ports.plan import (
    CONFIGURED,
    NEXT_FREE,
    REMEMBERED,
    RUNNING,
    Holder,
    Memory,
    PortRequest,
    plan_ports,
)

PROC = Holder("process", "nginx (pid 42)")
RESERVED = {3000: "the frontend", 8081: "the metro", 19000: "the expo"}


def req(service, configured, memory=None):
    return PortRequest(service, configured, memory)


def test_free_ports_are_used_as_configured():
    plan = plan_ports([req("postgres", 5432), req("redis", 6379)], {}, RESERVED)
    assert [(c.port, c.rule) for c in plan.choices] == [(5432, CONFIGURED), (6379, CONFIGURED)]
    assert plan.moved == ()


def test_taken_port_moves_to_next_free_and_says_so():
    plan = plan_ports([req("postgres", 5432)], {5432: PROC, 5433: PROC}, RESERVED)
    choice = plan.choices[0]
    assert (choice.port, choice.rule) == (5434, NEXT_FREE)
    assert choice.describe() == "postgres: 5432 is taken by nginx (pid 42), using 5434"


def test_reserved_port_is_never_used_even_when_configured():
    plan = plan_ports([req("grafana", 3000)], {}, RESERVED)
    assert plan.port("grafana") == 3001
    assert plan.choices[0].describe() == "grafana: 3000 is reserved for the frontend, using 3001"


def test_next_free_skips_reserved_and_ports_given_to_other_services():
    plan = plan_ports([req("a", 8080), req("b", 8081)], {8080: PROC}, RESERVED)
    # a cannot have 8080 (busy) nor 8081 (reserved); 8082 is free
    assert plan.port("a") == 8082
    # b's configured port is reserved; 8082 went to a
    assert plan.port("b") == 8083


def test_remembered_port_is_sticky_after_the_original_frees():
    memory = Memory(5433, 5432)
    plan = plan_ports([req("postgres", 5432, memory)], {}, RESERVED)
    assert (plan.port("postgres"), plan.choices[0].rule) == (5433, REMEMBERED)


def test_remembered_port_taken_falls_back_to_configured():
    plan = plan_ports([req("postgres", 5432, Memory(5433, 5432))], {5433: PROC}, RESERVED)
    assert (plan.port("postgres"), plan.choices[0].rule) == (5432, CONFIGURED)


def test_changed_configured_port_wins_over_memory():
    plan = plan_ports([req("postgres", 6000, Memory(5433, 5432))], {}, RESERVED)
    assert (plan.port("postgres"), plan.choices[0].rule) == (6000, CONFIGURED)


def test_own_running_container_keeps_its_port():
    busy = {5433: Holder("own", "this project's postgres", "postgres")}
    plan = plan_ports([req("postgres", 5432, Memory(5433, 5432))], busy, RESERVED,
                      own={"postgres": 5433})
    assert (plan.port("postgres"), plan.choices[0].rule) == (5433, RUNNING)


def test_own_port_of_one_service_is_busy_for_another():
    busy = {6379: Holder("own", "this project's postgres", "postgres")}
    plan = plan_ports([req("postgres", 5432), req("redis", 6379)], busy, RESERVED,
                      own={"postgres": 6379})
    assert plan.port("postgres") == 6379
    assert plan.port("redis") == 6380


def test_strict_fails_naming_the_holder():
    with pytest.raises(PortConflictError) as info:
        plan_ports([req("postgres", 5432)], {5432: PROC}, RESERVED, strict=True)
    assert "nginx (pid 42)" in info.value.message
    assert info.value.exit_code == EXIT_PORTS


def test_strict_ignores_a_remembered_move():
    plan = plan_ports([req("postgres", 5432, Memory(5433, 5432))], {}, RESERVED, strict=True)
    assert plan.port("postgres") == 5432


def test_exhaustion_is_an_error():
    busy = {p: PROC for p in range(65530, 65536)}
    with pytest.raises(PortConflictError) as info:
        plan_ports([req("x", 65530)], busy, {})
    assert "no free port above 65530" in info.value.message


def test_thousand_busy_ports_in_the_way():
    busy = {p: PROC for p in range(5432, 6432)}
    plan = plan_ports([req("postgres", 5432), req("redis", 5433)], busy, RESERVED)
    assert (plan.port("postgres"), plan.port("redis")) == (6432, 6433)


def test_plan_is_deterministic():
    args = ([req("a", 80), req("b", 80 + 1)], {80: PROC}, {})
    assert plan_ports(*args) == plan_ports(*args)
