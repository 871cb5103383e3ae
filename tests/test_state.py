from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from devenv.errors import LockedError, StateError
from devenv.ports import Memory
from devenv.state import ProjectState, SecretStore, StateFile, project_lock, write_atomic


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
