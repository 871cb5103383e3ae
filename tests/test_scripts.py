"""scripts/lib: the shell helpers the test-bed scripts source, run through bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "scripts" / "lib" / "apt-mirror.sh"


def debian_mirror(apt_dir: Path) -> tuple[int, str]:
    result = subprocess.run(["bash", "-c", f'. "{LIB}" && debian_mirror "$1"', "_",
                             str(apt_dir)], capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout


def apt(tmp_path: Path, sources_list: str = "", **parts: str) -> Path:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    if sources_list:
        (d / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        (d / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return d


DEB822_SECURITY_FIRST = """\
Types: deb
URIs: http://security.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
# a comment inside a stanza
URIs: http://mirror.corp.example/debian/
Suites: bookworm bookworm-updates
Components: main
"""


@pytest.mark.parametrize("sources_list, parts, mirror", [
    ("", {"debian_sources": DEB822_SECURITY_FIRST}, "http://mirror.corp.example/debian"),
    ("deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://proxy.corp.example/deb/ "
     "bookworm main\n", {}, "https://proxy.corp.example/deb"),
    ("# deb http://commented.example/debian bookworm main\n"
     "deb-src http://src.example/debian bookworm main\n"
     "deb http://security.debian.org/debian-security bookworm-security main\n"
     "  deb http://deb.example.org/debian bookworm main contrib\n", {},
     "http://deb.example.org/debian"),
    ("", {"disabled_sources": "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\n"
          "Enabled: no\n",
          "trixie_sources": "Types: deb deb-src\nURIs: http://on.example/debian\n"
          "Suites: trixie\n"}, "http://on.example/debian"),
    ("", {"multi_sources": "Types: deb\nURIs: cdrom:/media/ http://second.example/debian\n"
          "Suites:\n bookworm\n"}, "http://second.example/debian"),
    ("deb http://apt.example.com/ubuntu jammy main\n",
     {"node_sources": "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n"
      "Suites: nodistro\n",
      "local_list": "deb file:///srv/mirror/debian bookworm main\n"}, "file:///srv/mirror/debian"),
])
def test_the_mirror_is_read_from_the_machines_apt_sources(tmp_path, sources_list, parts,
                                                          mirror):
    assert debian_mirror(apt(tmp_path, sources_list, **parts)) == (0, mirror + "\n")


@pytest.mark.parametrize("sources_list, parts", [
    ("", {}),
    ("deb http://archive.ubuntu.com/ubuntu jammy main\n", {}),
    ("", {"sec_sources": "Types: deb\nURIs: http://security.debian.org/debian-security\n"
          "Suites: bookworm-security\n"}),
])
def test_nothing_found_prints_nothing_so_the_scripts_fall_back(tmp_path, sources_list, parts):
    assert debian_mirror(apt(tmp_path, sources_list, **parts)) == (1, "")


@pytest.mark.parametrize("script", ["install-docker.sh", "build-test-images.sh"])
def test_the_scripts_take_the_mirror_from_apt_and_keep_the_override(script):
    text = (ROOT / "scripts" / script).read_text()
    assert "lib/apt-mirror.sh" in text
    assert "${DEVENV_TESTBED_MIRROR:-$(debian_mirror || echo http://deb.debian.org/debian)}" \
        in text
    assert "URIs: http://deb.debian.org" not in text
