"""What one batch of saved files means for the container, for devenv's own sync (sync.py):
which files are copied where, which are deleted, whether the image is rebuilt, and what is
left out and why (one line each). Reads the host's files, never the container's.

The rules are the develop.watch rules render/watch_rules.py renders for Compose, so both
engines sync the same paths to the same places and ignore the same files (`.dockerignore`
too, as Compose does).
"""

from __future__ import annotations

import fnmatch
import io
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: a file bigger than this is not synced (a build output or a data file, not source)
MAX_FILE = 100 * 1024 * 1024


@dataclass(frozen=True)
class SyncRule:
    """One sync rule: the host folder (or file), its place in the container, what it
    ignores."""

    source: str  # absolute, normalised host path
    target: str  # absolute container path
    ignore: tuple[str, ...] = ()


@dataclass
class Batch:
    """What one batch of changes does: copies, deletes, a rebuild, what is left out."""

    #: (host path, container path, is a directory)
    copy: list[tuple[str, str, bool]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    rebuild: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: the earliest modification time among the copied files (the save), wall clock
    saved_at: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.copy or self.delete or self.rebuild)


def rules_of(rules: Sequence[Mapping[str, Any]], compose_dir: Path
             ) -> tuple[list[SyncRule], list[str]]:
    """The rendered develop.watch rules as host paths: the sync rules, the rebuild files."""
    syncs: list[SyncRule] = []
    rebuilds: list[str] = []
    for rule in rules:
        path = os.path.normpath(os.path.join(compose_dir, str(rule["path"])))
        if rule["action"] == "rebuild":
            rebuilds.append(path)
        else:
            syncs.append(SyncRule(path, str(rule["target"]), tuple(rule.get("ignore") or ())))
    return syncs, rebuilds


# --- .dockerignore and the rules' ignore -------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regex over a relative
    path with `/` separators."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """A build context's `.dockerignore`: the last pattern that matches a path, or one of
    its parent folders, decides (`!` re-includes)."""

    def __init__(self, lines: Iterable[str]):
        self._patterns: list[tuple[bool, re.Pattern[str]]] = []
        for line in lines:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            negate = text.startswith("!")
            text = posixpath.normpath(text.lstrip("!").strip().lstrip("/"))
            if text in (".", ""):
                continue
            self._patterns.append((negate, _pattern_regex(text)))

    @classmethod
    def of(cls, context: str) -> DockerIgnore:
        try:
            with open(os.path.join(context, ".dockerignore"), encoding="utf-8",
                      errors="replace") as handle:
                return cls(handle.read(1 << 20).splitlines())
        except OSError:
            return cls(())

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for negate, regex in self._patterns:
            if any(regex.match(p) for p in prefixes):
                excluded = not negate
        return excluded


def rule_ignores(rule: SyncRule, rel: str) -> bool:
    """The rule's own ignore list (node_modules, .git, caches, the rebuild files): a name
    matches any part of the path, a pattern with a `/` the path from the rule's root."""
    parts = rel.split("/")
    for pattern in rule.ignore:
        clean = pattern.strip("/")
        if "/" in clean:
            if fnmatch.fnmatchcase(rel, clean) or rel.startswith(clean + "/"):
                return True
        elif any(fnmatch.fnmatchcase(part, clean) for part in parts):
            return True
    return False


# --- a batch -----------------------------------------------------------------------------
def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def plan_batch(paths: Iterable[str], syncs: Sequence[SyncRule], rebuilds: Sequence[str],
               context: str, ignore: DockerIgnore) -> Batch:
    """What the changed host paths (added, modified or deleted: the file system says which)
    mean. A folder that appeared is walked (files written before it was watched count). A
    symlink is copied as a link, and only when it points inside its source folder."""
    batch = Batch()
    real_context = os.path.realpath(context)
    seen: set[str] = set()
    pending = sorted(set(paths))
    while pending:
        path = os.path.normpath(pending.pop(0))
        if path in seen:
            continue
        seen.add(path)
        if path in rebuilds:
            batch.rebuild.append(os.path.relpath(path, context))
            continue
        rule = next((r for r in syncs if _within(path, r.source)), None)
        if rule is None:
            continue
        rel_context = os.path.relpath(path, context)
        rel = os.path.relpath(path, rule.source)
        rel = "" if rel == "." else rel.replace(os.sep, "/")
        if (rel and rule_ignores(rule, rel)) or (
                not rel_context.startswith("..") and ignore.excluded(rel_context)):
            continue
        target = posixpath.normpath(posixpath.join(rule.target, rel)) if rel else rule.target
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            if rel and _within(target, rule.target) and target != rule.target:
                batch.delete.append(target)
            continue
        except OSError as exc:
            batch.skipped.append(f"{rel_context}: cannot read it ({exc.strerror})")
            continue
        # A path inside a symlinked folder, or a link, must stay inside the source folder.
        real = os.path.realpath(path)
        if not _within(real, os.path.realpath(rule.source)) and not _within(real, real_context):
            link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else real
            batch.skipped.append(f"{rel_context} -> {link}: points out of the source "
                                 "folder, not synced (never followed out)")
            continue
        if stat.S_ISDIR(info.st_mode):
            if rel:
                batch.copy.append((path, target, True))
            try:
                pending.extend(os.path.join(path, name) for name in os.listdir(path))
            except OSError as exc:
                batch.skipped.append(f"{rel_context}/: cannot read it ({exc.strerror})")
            pending.sort()
            continue
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_FILE:
            batch.skipped.append(f"{rel_context}: {info.st_size / 1e6:.0f} MB, over the "
                                 f"{MAX_FILE // (1024 * 1024)} MB a sync copies; not synced "
                                 "(add it to .dockerignore)")
            continue
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            continue  # a socket, a fifo: nothing to copy
        if stat.S_ISREG(info.st_mode) and not os.access(path, os.R_OK):
            batch.skipped.append(f"{rel_context}: cannot read it (permission denied); "
                                 "not synced")
            continue
        batch.copy.append((path, target, False))
        if stat.S_ISREG(info.st_mode):
            batch.saved_at = min(batch.saved_at or info.st_mtime, info.st_mtime)
    return batch


def archive(batch: Batch, uid: int, gid: int) -> tuple[bytes, list[str]]:
    """The batch's files as one tar, names relative to `/`, owned by uid:gid (the
    container's user); and the files that vanished or could not be read meanwhile."""
    buffer = io.BytesIO()
    lost: list[str] = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for host, target, _is_dir in batch.copy:
            name = target.lstrip("/")
            assert name and ".." not in name.split("/"), target
            try:
                info = tar.gettarinfo(host, arcname=name)
                info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
                if info.isreg():
                    with open(host, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
            except OSError as exc:
                lost.append(f"{target}: {exc.strerror or exc}")
    return buffer.getvalue(), lost


def owner_of(user: str, passwd: bytes | None, group: bytes | None) -> tuple[int, int] | None:
    """The uid:gid a container's `User` ("", "name", "1000", "1000:1000", "name:group")
    means, from its /etc/passwd and /etc/group; None when a name is not found there."""
    name, _, grp = user.partition(":")
    if not name:
        return 0, 0

    def lookup(table: bytes | None, key: str) -> list[str] | None:
        for line in (table or b"").decode(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == key:
                return fields
        return None

    if name.isdigit():
        uid = int(name)
        entry = next((f for f in (line.split(":") for line in (passwd or b"").decode(
            errors="replace").splitlines()) if len(f) >= 4 and f[2] == name), None)
        gid = int(entry[3]) if entry and entry[3].isdigit() else uid
    else:
        entry = lookup(passwd, name)
        if entry is None or not entry[2].isdigit() or not entry[3].isdigit():
            return None
        uid, gid = int(entry[2]), int(entry[3])
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            found = lookup(group, grp)
            if found is None or not found[2].isdigit():
                return None
            gid = int(found[2])
    return uid, gid
