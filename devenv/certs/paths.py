"""Where devenv keeps its per-user CA: only os and pathlib, because every command's
settings name the folder (nothing is read or created here; ca.py does that)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: the CA certificate's file name in ca_dir (the proxy's probes trust only it)
CA_CERT = "ca.pem"


def ca_dir(environ: Mapping[str, str]) -> Path:
    """$XDG_DATA_HOME/devenv/ca, else ~/.local/share/devenv/ca."""
    base = environ.get("XDG_DATA_HOME") or ""
    if not base or not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "share")
    return Path(base) / "devenv" / "ca"
