"""What git says about a project directory: the branch checked out (a linked worktree reads
its own HEAD), the branches that exist, and whether the directory is a linked worktree. One
seam: `git` as a subprocess, its failures as devenv's errors."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

#: seconds a git call may take (a huge repository on a slow disk still answers in this)
TIMEOUT = 20


class GitError(UsageError):
    """git is missing, or the directory is not a git repository (exit 2)."""


@dataclass(frozen=True)
class GitHead:
    #: the branch name, or the commit's short hash when detached
    name: str
    detached: bool = False


@dataclass(frozen=True)
class GitPlace:
    toplevel: Path
    #: a linked worktree (`git worktree add`), not the repository's main checkout
    linked: bool


def _git(project_dir: Path, *args: str, quiet_fail: bool = False) -> str:
    """git's output; with quiet_fail, "" when git exits 1 (e.g. `symbolic-ref -q` on a
    detached HEAD)."""
    try:
        done = subprocess.run(["git", *args], cwd=project_dir, capture_output=True,  # noqa: S603, S607
                              text=True, timeout=TIMEOUT, check=False,
                              env={"LC_ALL": "C", "PATH": _path(), "GIT_OPTIONAL_LOCKS": "0"})
    except FileNotFoundError:
        raise GitError("git is not installed, and [data] branches needs it",
                       hint="install git, or turn branches off (DEVENV_DB_BRANCHES=false)"
                       ) from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not answer within {TIMEOUT} s",
                       hint="check the repository with `git status`") from None
    if done.returncode == 1 and quiet_fail:
        return ""
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        if "not a git repository" in done.stderr:
            raise GitError(f"{project_dir} is not a git repository, and [data] branches is on",
                           hint="run `git init` there, or turn branches off "
                           "(DEVENV_DB_BRANCHES=false)")
        raise GitError(f"git {' '.join(args)} failed: {last}",
                       hint="check the repository with `git status`")
    return done.stdout


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")


def head(project_dir: Path) -> GitHead:
    """The branch checked out in `project_dir`, or the short commit hash when detached. A
    new repository without commits is on its unborn branch."""
    branch = _git(project_dir, "symbolic-ref", "-q", "--short", "HEAD", quiet_fail=True)
    if branch.strip():
        return GitHead(branch.strip())
    short = _git(project_dir, "rev-parse", "--short", "HEAD").strip()
    return GitHead(short, detached=True)


def branches(project_dir: Path) -> set[str]:
    """The local branches git has."""
    out = _git(project_dir, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
    return {line for line in out.splitlines() if line}


def place(project_dir: Path) -> GitPlace:
    """The worktree's top directory, and whether it is a linked worktree."""
    lines = _git(project_dir, "rev-parse", "--path-format=absolute", "--show-toplevel",
                 "--git-dir", "--git-common-dir").splitlines()
    if len(lines) != 3:
        raise GitError("git rev-parse gave an answer devenv cannot read",
                       hint="check the repository with `git status`")
    toplevel, git_dir, common = (Path(x) for x in lines)
    return GitPlace(toplevel, linked=git_dir.resolve() != common.resolve())


def hooks_dir(project_dir: Path) -> Path:
    """Where git runs this repository's hooks from (core.hooksPath respected)."""
    return Path(_git(project_dir, "rev-parse", "--path-format=absolute",
                     "--git-path", "hooks").strip())
