"""[data] branches: names, the book, git, worktrees, the commands' refusals, and what `up`
renders (the fake engine; the real copy and switch are in e2e test_data_branches.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine

from devenv.config import branchstate, gitinfo
from devenv.config.settings import load_settings
from devenv.context import Context
from devenv.data import branches
from devenv.errors import ProjectFileError, SettingError, StateError, UsageError
from devenv.stack import usecases


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], cwd=path, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "commit", "-q", "--allow-empty", "-m", "start")
    (path / "devenv.toml").write_text("[data]\nbranches = true\n")
    return path


class VolumeEngine(FakeEngine):
    """The fake engine with volumes."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.vols: set[str] = set()
        self.removed: list[str] = []

    def volume_exists(self, name: str) -> bool:
        return name in self.vols

    def volume_sizes(self, project: str) -> dict[str, int]:
        return {v: 1000 for v in self.vols}

    def remove_volume(self, name: str) -> None:
        self.removed.append(name)
        self.vols.discard(name)


def context(path: Path, engine: FakeEngine, **environ: str) -> Context:
    return Context(project_dir=path, environ={"DEVENV_PROJECT": "unit", **environ},
                   engine_factory=lambda env: engine)


def test_branch_names_become_safe_distinct_volume_suffixes() -> None:
    names = ["main", "feature/agents", "feature-agents", "Feature/Agents", "fix/ünïcode-日本",
             "日本語", "x" * 200, "x" * 200 + "y", "../../etc", "-lead"]
    suffixes = [branchstate.volume_suffix(n) for n in names]
    assert len(set(suffixes)) == len(names)
    for suffix in suffixes:
        # a Docker volume name's characters, lowercase for Compose, short for paths
        assert re.fullmatch(r"--[a-z0-9][a-z0-9-]*-[0-9a-f]{8}", suffix), suffix
        assert len(suffix) <= 2 + branchstate.SLUG_MAX + 9
    assert branchstate.volume_suffix("feature/agents").startswith("--feature-agents-")
    assert branchstate.volume_suffix("main") == branchstate.volume_suffix("main")  # stable


def test_not_a_git_repository_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "devenv.toml").write_text("[data]\nbranches = true\n")
    with pytest.raises(gitinfo.GitError, match="is not a git repository") as caught:
        branches.enter(context(tmp_path, VolumeEngine()), VolumeEngine(),
                       load_settings(tmp_path, {"DEVENV_PROJECT": "unit"}))
    assert caught.value.exit_code == 2 and "DEVENV_DB_BRANCHES=false" in caught.value.hint


def test_git_missing_is_a_usage_error(repo: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(gitinfo.GitError, match="git is not installed") as caught:
        gitinfo.head(repo)
    assert caught.value.exit_code == 2


def test_head_names_the_branch_or_the_detached_commit(repo: Path) -> None:
    assert gitinfo.head(repo) == gitinfo.GitHead("main")
    git(repo, "checkout", "-q", "--detach")
    head = gitinfo.head(repo)
    assert head.detached and re.fullmatch(r"[0-9a-f]{7,}", head.name)


def test_bad_switch_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="DEVENV_DB_BRANCHES='maybe' is not true or false"):
        load_settings(tmp_path, {"DEVENV_DB_BRANCHES": "maybe"})
    (tmp_path / "devenv.toml").write_text('[data]\nbranches = "yes"\n')
    with pytest.raises(ProjectFileError, match="not true or false"):
        load_settings(tmp_path, {})
    (tmp_path / "devenv.toml").write_text("[data]\nbranch = true\n")
    with pytest.raises(ProjectFileError, match="unknown field"):
        load_settings(tmp_path, {})


def test_the_environment_wins_over_devenv_toml(tmp_path: Path) -> None:
    assert not load_settings(tmp_path, {}).db_branches  # off by default
    (tmp_path / "devenv.toml").write_text("[data]\nbranches = true\n")
    assert load_settings(tmp_path, {}).db_branches
    assert not load_settings(tmp_path, {"DEVENV_DB_BRANCHES": "false"}).db_branches


def test_up_renders_the_branchs_volumes_and_nothing_changes_with_branches_off(
        repo: Path, fake_context: Any, fake_engine: FakeEngine) -> None:
    off = Context(project_dir=repo, environ={**fake_context().environ,
                                             "DEVENV_DB_BRANCHES": "false"},
                  engine_factory=lambda env: fake_engine)
    usecases.up(off, only=["postgres"])
    text = (repo / "compose" / "docker-compose.yml").read_text()
    assert "source: postgres-data\n" in text and "--" not in text.split("volumes:")[-1]
    usecases.down(off)

    notes: list[str] = []
    on = Context(project_dir=repo, environ=fake_context().environ, notify=notes.append,
                 engine_factory=lambda env: fake_engine)
    usecases.up(on, only=["postgres"])
    assert "data: branch main (new, fresh database)" in notes
    suffix = branchstate.volume_suffix("main")
    assert f"source: postgres-data{suffix}\n" in \
        (repo / "compose" / "docker-compose.yml").read_text()
    book = branchstate.load_book(on.settings())
    assert book.in_use == "main" and book.branches["main"].suffix == suffix


def test_the_data_in_use_is_never_removed(repo: Path) -> None:
    engine = VolumeEngine()
    ctx = context(repo, engine)
    settings = ctx.settings()
    main, old = branchstate.volume_suffix("main"), branchstate.volume_suffix("old")
    engine.vols |= {f"unit_postgres-data{main}", f"unit_postgres-data{old}"}
    branchstate.save_book(settings, branchstate.BranchBook("main", {
        "main": branchstate.BranchData(main), "old": branchstate.BranchData(old)}))
    with pytest.raises(UsageError, match="branch main's data is in use"):
        branches.remove(ctx, ["main"])
    with pytest.raises(UsageError, match="no data of branch 'nope'"):
        branches.remove(ctx, ["nope"])
    assert engine.removed == []
    assert branches.remove(ctx, ["old"]) == [f"unit_postgres-data{old}"]
    assert set(branchstate.load_book(settings).branches) == {"main"}


def test_prune_offers_only_branches_git_no_longer_has(repo: Path) -> None:
    engine = VolumeEngine()
    ctx = context(repo, engine)
    git(repo, "branch", "kept")
    names = ("main", "kept", "gone", "renamed")
    branchstate.save_book(ctx.settings(), branchstate.BranchBook("renamed", {
        n: branchstate.BranchData(branchstate.volume_suffix(n)) for n in names}))
    # the data in use is never offered, even when git no longer has its branch
    assert branches.prunable(ctx) == ["gone"]
    rows = {r.name: r for r in branches.list_branches(ctx)}
    assert rows["kept"].in_git and not rows["gone"].in_git and rows["renamed"].in_use


@pytest.mark.parametrize("text", [
    "not json",
    json.dumps({"version": 1, "in_use": "main", "branches": {
        "main": {"suffix": "/../../other_postgres-data"}}}),
    json.dumps({"version": 1, "in_use": "ghost", "branches": {}}),
    json.dumps({"version": 2, "branches": {}}),
])
def test_a_damaged_book_is_refused_and_touches_nothing(repo: Path, text: str) -> None:
    engine = VolumeEngine()
    ctx = context(repo, engine)
    path = branchstate.book_path(ctx.settings())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    with pytest.raises(StateError, match="cannot be read"):
        branches.enter(ctx, engine, ctx.settings())
    assert path.read_text() == text and engine.removed == []


def test_a_linked_worktree_is_a_project_of_its_own(repo: Path, tmp_path: Path) -> None:
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt-feature"), "-b", "feature")
    (tmp_path / "wt-feature" / "devenv.toml").write_text("[data]\nbranches = true\n")
    main = load_settings(repo, {})
    linked = load_settings(tmp_path / "wt-feature", {})
    assert main.sources["DEVENV_PROJECT"] == "default"
    assert linked.sources["DEVENV_PROJECT"] == "git worktree"
    assert re.fullmatch(rf"{main.project}-wt-feature-[0-9a-f]{{6}}", linked.project)
    assert load_settings(tmp_path / "wt-feature", {}).project == linked.project  # stable
    # an explicit name wins; branches off: no derived name
    assert load_settings(tmp_path / "wt-feature",
                         {"DEVENV_PROJECT": "mine"}).project == "mine"
    assert load_settings(tmp_path / "wt-feature",
                         {"DEVENV_DB_BRANCHES": "false"}).project == main.project
    assert gitinfo.head(tmp_path / "wt-feature").name == "feature"


def test_hooks_install_never_replaces_a_hook_of_yours(repo: Path) -> None:
    ctx = context(repo, VolumeEngine())
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho mine\n")
    with pytest.raises(UsageError, match="devenv did not write it"):
        branches.install_hook(ctx)
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    hook.unlink()
    assert branches.install_hook(ctx) == str(hook)
    text = hook.read_text()
    assert branches.HOOK_MARK in text and "db switch" in text and hook.stat().st_mode & 0o111
    branches.install_hook(ctx)  # its own hook is rewritten
