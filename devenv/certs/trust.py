"""`devenv ca trust|untrust`: devenv's CA in the system store and in the NSS databases
Chromium and Firefox read, and out of them again.

What is planned is a list of Steps, so the command can say what it will change before it
asks, and what it changed after. Nothing here prompts or prints.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import TrustError, UsageError

NICKNAME = "devenv local CA"
#: the system stores devenv knows: (anchor directory, the command that rebuilds the bundle
#: after an add, after a removal: Debian's keeps the removed anchor's links without --fresh)
SYSTEM_STORES = (
    (Path("/usr/local/share/ca-certificates"), ("update-ca-certificates",),
     ("update-ca-certificates", "--fresh")),  # Debian, Ubuntu
    (Path("/etc/pki/ca-trust/source/anchors"), ("update-ca-trust", "extract"),
     ("update-ca-trust", "extract")),  # Fedora
)
ANCHOR_NAME = "devenv-local-ca.crt"


@dataclass(frozen=True)
class Step:
    """One store: what is done to it."""

    store: str  # "system" or "nss"
    where: str  # the anchor file or the NSS database directory
    command: tuple[str, ...] = ()

    def describe(self, adding: bool, done: bool = False) -> str:
        verb = {(True, False): "add devenv's CA to", (True, True): "added devenv's CA to",
                (False, False): "remove devenv's CA from",
                (False, True): "removed devenv's CA from"}[(adding, done)]
        what = "the system store" if self.store == "system" else "the NSS database"
        return f"{verb} {what} {self.where}"


def nss_databases(environ: Mapping[str, str]) -> list[Path]:
    """The NSS databases of this user: Chromium's ~/.pki/nssdb (made by Chromium on first
    start) and every Firefox profile's (cert9.db)."""
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    found = [home / ".pki" / "nssdb"] if (home / ".pki" / "nssdb").is_dir() else []
    for pattern in (".mozilla/firefox/*/cert9.db",
                    "snap/firefox/common/.mozilla/firefox/*/cert9.db"):
        found += [Path(p).parent for p in sorted(glob.glob(str(home / pattern)))]
    return found


def _system_store() -> tuple[Path, tuple[str, ...]] | None:
    for directory, command, _removal in SYSTEM_STORES:
        if directory.is_dir() and shutil.which(command[0]):
            return directory, command
    return None


def plan(environ: Mapping[str, str], system: bool, nss: bool,
         nssdbs: Sequence[Path] = ()) -> list[Step]:
    """The stores `trust` or `untrust` touches: the system store (when asked and found),
    the NSS databases named, else this user's."""
    steps = []
    if system:
        store = _system_store()
        if store is None:
            raise UsageError("no system certificate store devenv knows on this machine",
                             hint="use --no-system and add `devenv ca path` by hand "
                             "(docs/https.md)")
        steps.append(Step("system", str(store[0] / ANCHOR_NAME), store[1]))
    if nss:
        for db in nssdbs or nss_databases(environ):
            steps.append(Step("nss", str(db)))
    if not steps:
        raise UsageError("no certificate store to change",
                         hint="start Chromium or Firefox once (they make their NSS "
                         "database), or name one with --nssdb DIR")
    return steps


def _certutil() -> str:
    found = shutil.which("certutil")
    if not found:
        raise TrustError("certutil is not installed (needed for the browsers' NSS databases)",
                         hint="install libnss3-tools (Debian, Ubuntu) or nss-tools (Fedora), "
                         "or use --no-nss")
    return found


def _run(argv: Sequence[str], what: str) -> None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise TrustError(f"{what}: {exc.strerror}") from exc
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()
        raise TrustError(f"{what}: {words[-1] if words else f'exit {done.returncode}'}",
                         hint=_permission_hint(words))


def _permission_hint(words: Sequence[str]) -> str:
    text = " ".join(words).lower()
    if "permission" in text or "denied" in text or "read-only" in text:
        return ("no permission: run it with rights to that store, e.g. sudo for the system "
                "store (`devenv ca trust --no-nss`), and as yourself for the browsers "
                "(`devenv ca trust --no-system`)")
    return "see docs/https.md"


def apply(steps: Sequence[Step], ca_cert: Path, adding: bool) -> list[str]:
    """Add (or remove) the CA in each store; what was changed, one line per store."""
    done = []
    if adding and not ca_cert.is_file():
        raise UsageError(f"devenv's CA {ca_cert} does not exist yet",
                         hint="run `devenv up` with DEVENV_HTTPS=true once, or `devenv ca "
                         "path`, which makes it")
    for step in steps:
        if step.store == "system":
            anchor = Path(step.where)
            try:
                if adding:
                    shutil.copyfile(ca_cert, anchor)
                    os.chmod(anchor, 0o644)
                elif anchor.exists():
                    anchor.unlink()
                else:
                    continue
            except PermissionError:
                raise TrustError(f"no permission to change {anchor.parent}",
                                 hint="run `sudo devenv ca trust --no-nss` for the system "
                                 "store, and `devenv ca trust --no-system` as yourself for "
                                 "the browsers") from None
            command = step.command if adding else next(
                (r for _d, a, r in SYSTEM_STORES if a == step.command), step.command)
            _run(command, f"{' '.join(command)} failed")
        else:
            certutil = _certutil()
            db = f"sql:{step.where}"
            if adding:
                _run([certutil, "-d", db, "-A", "-t", "C,,", "-n", NICKNAME, "-i",
                      str(ca_cert)], f"certutil could not add the CA to {step.where}")
            else:
                listed = subprocess.run([certutil, "-d", db, "-L", "-n", NICKNAME],
                                        capture_output=True, text=True, timeout=60)
                if listed.returncode != 0:
                    continue  # not in this database
                _run([certutil, "-d", db, "-D", "-n", NICKNAME],
                     f"certutil could not remove the CA from {step.where}")
        done.append(step.describe(adding, done=True))
    return done
