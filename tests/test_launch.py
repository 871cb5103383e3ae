from __future__ import annotations

from devenv.config.settings import load_settings
from devenv.engine import Container
from devenv.stack.launch import waves as _waves


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


class _Recorder:
    """Engine and Compose in one, recording the order of what happens."""

    def __init__(self, fail_up: bool = False):
        self.events: list[str] = []
        self.fail_up = fail_up
        self.network_made = False

    def network(self, name):
        return {"Name": name} if self.network_made else None

    def up(self, services, build=False):
        self.events.append(f"up {','.join(services)}")
        if self.fail_up:
            raise RuntimeError("compose failed")
        self.network_made = True

    def create(self, services):
        self.events.append(f"create {','.join(services)}")

    def containers(self, project):
        return [Container("c1", f"{project}-postgres-1", project, "postgres", "created", "",
                          "", ())]

    def start_created(self, container_id):
        self.events.append(f"start {container_id}")


def test_a_held_service_is_created_meanwhile_and_started_once_released(tmp_path):
    from devenv.stack.launch import up_holding

    settings = load_settings(tmp_path, {"DEVENV_PROJECT": "p"}, {})
    fake = _Recorder()
    up_holding(fake, settings, fake, ["api", "postgres", "redis"],  # type: ignore[arg-type]
               {"postgres": lambda: fake.events.append("filled")}, build=False)
    assert fake.events[0] == "up api,redis"  # the network exists only after it began
    assert fake.events[1:] == ["create postgres", "filled", "start c1"]


def test_a_failed_compose_call_leaves_the_held_service_unstarted(tmp_path):
    import pytest

    from devenv.stack.launch import up_holding

    settings = load_settings(tmp_path, {"DEVENV_PROJECT": "p"}, {})
    fake = _Recorder(fail_up=True)
    with pytest.raises(RuntimeError):
        up_holding(fake, settings, fake, ["api", "postgres"],  # type: ignore[arg-type]
                   {"postgres": lambda: fake.events.append("filled")}, build=False)
    assert fake.events == ["up api", "filled"]  # not created, not started
