from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from devenv.config.state import Memory, ProjectState, SecretStore, StateFile, project_lock
from devenv.errors import LockedError, StateError
from devenv.files import write_atomic


def test_state_round_trip_per_project(tmp_path):
    f = StateFile(tmp_path)
    f.save("a", ProjectState(ports={"postgres": Memory(5433, 5432)}, fingerprint="x"))
    f.save("b", ProjectState(ports={"redis": Memory(6380, 6379)}))
    assert f.load("a").ports == {"postgres": Memory(5433, 5432)}
    assert f.load("b").ports == {"redis": Memory(6380, 6379)}
    assert f.load("c") == ProjectState()


@pytest.mark.parametrize("garbage", [b"", b"{", b"[1,2]", b"\xff\xfe", b'{"projects": 5}'])


def test_corrupt_state_is_set_aside_with_a_warning(tmp_path, garbage):
    (tmp_path / "state.json").write_bytes(garbage)
    warnings = []
    f = StateFile(tmp_path, warn=warnings.append)
    assert f.load("a") == ProjectState()
    assert warnings and "set aside" in warnings[0]
    assert not (tmp_path / "state.json").exists()
    assert list(tmp_path.glob("state.corrupt-*.json"))
    f.save("a", ProjectState(ports={"api": Memory(7777, 7777)}))
    assert f.load("a").ports["api"].port == 7777


def test_damaged_entry_is_forgotten(tmp_path):
    (tmp_path / "state.json").write_text('{"projects": {"a": {"ports": {"api": {"port": "x"}}}}}')
    warnings = []
    assert StateFile(tmp_path, warn=warnings.append).load("a") == ProjectState()
    assert warnings


def test_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(StateError) as info:
        write_atomic(target, "new")
    assert "No space left on device" in info.value.message
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_secrets_are_generated_once_and_private(tmp_path):
    store = SecretStore(tmp_path)
    first = store.get_or_create("p", "grafana_admin_password")
    assert first == store.get_or_create("p", "grafana_admin_password")
    assert first != "admin" and len(first) >= 20
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    assert store.get_or_create("q", "grafana_admin_password") != first


def test_lock_makes_the_second_wait_then_names_the_holder(tmp_path):
    held = threading.Event()
    release = threading.Event()

    def holder():
        with project_lock(tmp_path, "p", "up", timeout=5):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    waits = []
    with pytest.raises(LockedError) as info, project_lock(tmp_path, "p", "up", timeout=0.5,
                                                          on_wait=waits.append):
        pass
    assert f"devenv up (pid {os.getpid()})" in info.value.message
    assert waits and "waiting for devenv up" in waits[0]
    release.set()
    thread.join()
    start = time.monotonic()
    with project_lock(tmp_path, "p", "up", timeout=5):
        assert time.monotonic() - start < 1


def _state_with(tmp_path, entry) -> None:
    import json

    (tmp_path / "state.json").write_text(json.dumps({"schema": 1, "projects": {"a": entry}}))


GOOD = {"ports": {"api": {"port": 7778, "configured": 7777}}, "fingerprint": "ab12",
        "containers": {"api": "c0ffee"}, "build": ""}


@pytest.mark.parametrize("port", [70000, 0, -1, "abc", "5432", True, None, 5432.0, [5432]])


def test_a_bad_remembered_port_is_forgotten_with_a_warning(tmp_path, port):
    _state_with(tmp_path, {**GOOD, "ports": {"api": {"port": 7778, "configured": 7777},
                                             "postgres": {"port": port, "configured": 5432}}})
    warnings = []
    state = StateFile(tmp_path, warn=warnings.append).load("a")
    assert state.ports == {"api": Memory(7778, 7777)}  # only the bad entry is forgotten
    assert state.fingerprint == "ab12" and state.containers == {"api": "c0ffee"}
    assert len(warnings) == 1 and "the port of postgres" in warnings[0]


@pytest.mark.parametrize("field, value", [
    ("fingerprint", 5), ("fingerprint", ["x"]), ("fingerprint", "not hex!"),
    ("containers", ["api"]), ("containers", {"api": 5}), ("containers", "c0ffee"),
    ("build", {"x": 1}), ("build", 3), ("ports", [1, 2]), ("ports", "7777"),
])


def test_wrong_types_are_forgotten_field_by_field(tmp_path, field, value):
    _state_with(tmp_path, {**GOOD, field: value})
    warnings = []
    state = StateFile(tmp_path, warn=warnings.append).load("a")
    assert warnings and "not a valid value" in warnings[0]
    assert state == StateFile(tmp_path).load("a")  # stable, never an exception
    empty = {"fingerprint": "", "containers": {}, "build": "", "ports": {}}[field]
    assert getattr(state, field) == empty


@pytest.mark.parametrize("entry", [[1, 2], "x", 5, True])


def test_a_project_entry_that_is_not_an_object_is_forgotten(tmp_path, entry):
    _state_with(tmp_path, entry)
    warnings = []
    assert StateFile(tmp_path, warn=warnings.append).load("a") == ProjectState()
    assert warnings


@pytest.mark.parametrize("garbage", [
    b"", b"{", b"\xff\xfe", b"[1, 2]", b'"text"', b'{"p": [1]}', b'{"p": "x"}',
    b'{"p": {"grafana_admin_password": 5}}', b'{"p": {"grafana_admin_password": ""}}',
    b'{"p": {"grafana_admin_password": null}}', b"[" * 100000,
])


def test_damaged_secrets_are_set_aside_and_a_new_password_says_what_to_do(tmp_path, garbage):
    (tmp_path / "secrets.json").write_bytes(garbage)
    warnings = []
    store = SecretStore(tmp_path, warn=warnings.append)
    assert store.existing("p") == []
    [aside] = tmp_path.glob("secrets.corrupt-*.json")
    assert aside.read_bytes() == garbage  # nothing of it is lost
    assert stat.S_IMODE(aside.stat().st_mode) == 0o600
    assert "set aside as " + aside.name in warnings[0]
    # what the catalog declares names it (setting_or_secret passes the service and setting)
    new = store.get_or_create("p", "grafana_admin_password", what="Grafana",
                              setting="DEVENV_GRAFANA_ADMIN_PASSWORD")
    assert new and len(warnings) == 2
    assert "a new Grafana password was generated" in warnings[1]
    assert "DEVENV_GRAFANA_ADMIN_PASSWORD" in warnings[1] and aside.name in warnings[1]
    assert "devenv down --volumes" in warnings[1]
    assert SecretStore(tmp_path).get_or_create("p", "grafana_admin_password") == new


def test_a_healthy_secret_store_is_never_set_aside(tmp_path):
    store = SecretStore(tmp_path)
    first = store.get_or_create("p", "grafana_admin_password")
    warnings = []
    again = SecretStore(tmp_path, warn=warnings.append)
    assert again.get_or_create("p", "grafana_admin_password") == first
    assert again.existing("p") == [first] and warnings == []
    assert not list(tmp_path.glob("secrets.corrupt-*"))


def test_unreadable_secrets_are_refused_not_replaced(tmp_path, monkeypatch):
    (tmp_path / "secrets.json").write_text('{"p": {"grafana_admin_password": "old"}}')
    from pathlib import Path

    real = Path.read_bytes

    def denied(self):
        if self.name == "secrets.json":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    warnings = []
    store = SecretStore(tmp_path, warn=warnings.append)
    assert store.existing("p") == [] and "Permission denied" in warnings[0]
    with pytest.raises(StateError) as info:
        store.get_or_create("p", "grafana_admin_password")
    assert "cannot read" in info.value.message and "chown" in info.value.hint
    monkeypatch.undo()
    assert "old" in (tmp_path / "secrets.json").read_text()


def test_giving_up_on_the_lock_leaves_the_holders_name(tmp_path):
    with project_lock(tmp_path, "p", "up", timeout=5):
        with pytest.raises(LockedError), project_lock(tmp_path, "p", "down", timeout=0.3):
            pass
        assert (tmp_path / "p.lock").read_text() == f"devenv up (pid {os.getpid()})"
    assert (tmp_path / "p.lock").read_text() == ""  # the holder clears its own line


def test_timing_is_saved_and_read_back(tmp_path):
    from devenv.config.state import load_timing, save_timing

    assert load_timing(tmp_path, "p") is None
    save_timing(tmp_path, "p", {"services": {"redis": 0.4}, "total_seconds": 0.5})
    timing = load_timing(tmp_path, "p")
    assert timing == {"schema": "devenv.timing/1", "services": {"redis": 0.4},
                      "total_seconds": 0.5}
    (tmp_path / "timing-p.json").write_text("{broken")
    assert load_timing(tmp_path, "p") is None


def test_a_generated_secret_is_named_by_its_service_and_setting(tmp_path):
    from devenv.config.settings import load_settings
    from devenv.config.state import generated_secrets

    settings = load_settings(tmp_path, {}, {})
    state = tmp_path / ".devenv"
    state.mkdir()
    (state / "secrets.json").write_bytes(b"{")
    warnings: list[str] = []
    made = generated_secrets(settings, ["redis", "grafana"], warnings.append)
    assert list(made) == ["grafana_admin_password"]  # what the catalog declares generated
    assert "a new Grafana password" in warnings[-1]
    assert "DEVENV_GRAFANA_ADMIN_PASSWORD" in warnings[-1]
    assert generated_secrets(settings, ["grafana"]) == made  # generated once


def test_tunnel_ports_live_beside_the_projects_and_survive_their_saves(tmp_path):
    from devenv.config.state import Memory, ProjectState, StateFile

    said: list[str] = []
    state = StateFile(tmp_path, warn=said.append)
    state.save_ports("tunnels", "p", {"prod-db": Memory(5433, 5432)})
    state.save("p", ProjectState(ports={"postgres": Memory(5432, 5432)}))
    assert state.load_ports("tunnels", "p") == {"prod-db": Memory(5433, 5432)}
    assert state.load("p").ports == {"postgres": Memory(5432, 5432)}
    assert state.load_ports("tunnels", "other") == {}
    state.save_ports("tunnels", "p", {"prod-db": Memory(5433, 5432), "bad": Memory(0, 5432)})
    assert state.load_ports("tunnels", "p") == {"prod-db": Memory(5433, 5432)}
    assert said == [f"{state.path}: the remembered port of tunnels bad is damaged; "
                    "forgetting it"]
