from __future__ import annotations

from devenv.config.settings import load_settings
from devenv.ports.planner import reserved_ports


def test_reserved_ports_are_named(tmp_path):
    settings = load_settings(tmp_path, {"DEVENV_RESERVED_PORTS": "3000,4000"}, {})
    assert reserved_ports(settings) == {3000: "the frontend",
                                        4000: "a host app (DEVENV_RESERVED_PORTS)"}
