"""Data bound to git branches (`[data] branches = true`): which branch's data is in use, and
what devenv knows of each branch's data (its volumes' suffix, parent, when it was made and
last used), kept in .devenv/branches.json. Names derived from branch names are safe for
Docker and for paths: a slug plus a short hash.

The data commands and `up`'s render read the branch in use here; only `up` and `db switch`
change it (data/branches.py)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import StateError
from ..files import write_atomic
from .settings import Settings

SLUG_MAX = 32
_SAFE_SUFFIX = re.compile(r"^(|--[a-z0-9][a-z0-9-]{0,40}-[0-9a-f]{8})$")


def slug(name: str) -> str:
    """A branch name as a Docker-, path- and Compose-safe word: lowercase ASCII letters and
    digits joined by '-', at most SLUG_MAX characters, plus a hash of the whole name (so
    that `feature/a` and `feature-a`, or two long names alike at the start, stay apart)."""
    words = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:SLUG_MAX].strip("-")
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{words or 'branch'}-{digest}"


def volume_suffix(name: str) -> str:
    return f"--{slug(name)}"


@dataclass(frozen=True)
class BranchData:
    #: appended to the project's volume names ("" : the project's volumes from before
    #: branches were turned on)
    suffix: str
    parent: str | None = None
    created: float = 0.0
    last_used: float = 0.0
    #: how its data began: "copy", "seed", "fresh" or "existing"
    origin: str = "fresh"


@dataclass(frozen=True)
class BranchBook:
    in_use: str | None = None
    branches: dict[str, BranchData] = field(default_factory=dict)

    def with_branch(self, name: str, data: BranchData, use: bool = True) -> BranchBook:
        return BranchBook(name if use else self.in_use, {**self.branches, name: data})

    def used(self, name: str) -> BranchBook:
        data = replace(self.branches[name], last_used=time.time())
        return BranchBook(name, {**self.branches, name: data})

    def without(self, name: str) -> BranchBook:
        rest = {k: v for k, v in self.branches.items() if k != name}
        return BranchBook(None if self.in_use == name else self.in_use, rest)


def book_path(settings: Settings) -> Path:
    return settings.state_dir / f"branches-{settings.project}.json"


def load_book(settings: Settings) -> BranchBook:
    """The book, validated; an empty one when there is none yet."""
    path = book_path(settings)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return BranchBook()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _bad(path, str(exc)) from None
    try:
        if not isinstance(raw, dict) or raw.get("version") != 1:
            raise ValueError("not a version 1 file")
        in_use = raw.get("in_use")
        branches: dict[str, BranchData] = {}
        for name, item in dict(raw["branches"]).items():
            if not isinstance(name, str) or not name or not isinstance(item, dict):
                raise ValueError(f"bad entry {name!r}")
            suffix = item["suffix"]
            if not isinstance(suffix, str) or not _SAFE_SUFFIX.match(suffix):
                raise ValueError(f"bad volume suffix for {name!r}")
            parent = item.get("parent")
            if parent is not None and not isinstance(parent, str):
                raise ValueError(f"bad parent for {name!r}")
            branches[name] = BranchData(suffix, parent, float(item.get("created", 0)),
                                        float(item.get("last_used", 0)),
                                        str(item.get("origin", "fresh")))
        if in_use is not None and in_use not in branches:
            raise ValueError(f"the branch in use {in_use!r} has no entry")
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, str(exc)) from None
    return BranchBook(in_use, branches)


def _bad(path: Path, why: str) -> StateError:
    return StateError(f"{path} cannot be read ({why})",
                      hint="no data was touched; move the file aside and run `devenv up`: "
                      "the checked-out branch then starts again from the data in use "
                      "(`docker volume ls` lists every branch's volumes)")


def save_book(settings: Settings, book: BranchBook) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "in_use": book.in_use,
            "branches": {name: {"suffix": b.suffix, "parent": b.parent, "created": b.created,
                                "last_used": b.last_used, "origin": b.origin}
                         for name, b in sorted(book.branches.items())}}
    write_atomic(book_path(settings), json.dumps(data, indent=2) + "\n", 0o600)


def in_use_suffix(settings: Settings) -> str:
    """The volume suffix of the data in use ("" when branches are off or none is in use)."""
    if not settings.db_branches:
        return ""
    book = load_book(settings)
    if book.in_use is None:
        return ""
    return book.branches[book.in_use].suffix
