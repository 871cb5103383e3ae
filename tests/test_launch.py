from __future__ import annotations

from devenv.engine import Container
from devenv.launch import waves as _waves
from devenv.settings import load_settings


def test_cold_start_begins_with_the_slow_initialisers(tmp_path):
    settings = load_settings(tmp_path, {}, {})
    assert _waves(settings, ["api", "postgres", "redis"], {}) == \
        [["postgres"], ["api", "redis"]]
    running = {"postgres": Container("x", "p-postgres-1", "p", "postgres", "running", "", "",
                                     ())}
    assert _waves(settings, ["api", "postgres", "redis"], running) == \
        [["api", "postgres", "redis"]]
    assert _waves(settings, ["redis"], {}) == [["redis"]]


def test_a_volume_filled_from_a_prepared_cluster_means_one_wave(tmp_path):
    settings = load_settings(tmp_path, {}, {})
    assert _waves(settings, ["api", "postgres", "redis"], {}, held={"postgres"}) == \
        [["api", "postgres", "redis"]]
    assert _waves(settings, ["api", "redis"], {}, held={"postgres"}) == [["api", "redis"]]
