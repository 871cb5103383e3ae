"""DEVENV_HTTPS against the real engine: the proxy (the offline Caddy image) moved off a
held 443, the API at https://api.PROJECT.localhost:PORT trusted by curl with devenv's CA
alone and by headless Chromium with the CA in a throwaway NSS database, the direct URL
still answering, and `down` leaving no container. Only the API's stack runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Project, new_project
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

pytestmark = pytest.mark.e2e


@dataclass
class Https:
    project: Project
    up: subprocess.CompletedProcess[str]
    rows: dict[str, dict]
    ca: str
    home: Path


def _hold(port: int) -> socket.socket | None:
    """Hold a port like another program would; None when something holds it already."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", port))
    except OSError:
        holder.close()
        return None
    holder.listen()
    return holder


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Https]:
    home = tmp_path_factory.mktemp("https-home")
    project = new_project(tmp_path_factory.mktemp("https"), DEVENV_HTTPS="true",
                          XDG_DATA_HOME=str(home / "data"))
    holder = _hold(443)
    try:
        up = project.run("up", "--only", "backend")
        ca = project.run("ca", "path").stdout.strip()
        yield Https(project, up, project.ports(), ca, home)
    finally:
        project.cleanup()
        if holder is not None:
            holder.close()


def test_the_api_answers_at_its_name_through_the_moved_proxy(https: Https) -> None:
    name = https.project.name
    assert "proxy: 443 is taken by" in https.up.stderr
    proxy = https.rows["proxy"]
    port = proxy["port"]
    assert port != 443 and proxy["moved"]
    api = https.rows["api"]
    assert api["url"] == f"https://api.{name}.localhost:{port}"
    assert api["direct_url"] == f"http://127.0.0.1:{api['port']}"
    assert api["state"] == "ready"
    # curl resolves *.localhost to loopback; only devenv's CA is trusted (no -k)
    curl = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                           "--cacert", https.ca, f"{api['url']}/health"],
                          capture_output=True, text=True, timeout=30)
    assert curl.stdout == "200", curl.stderr
    # the certificate is devenv's: without its CA, curl refuses it
    untrusted = subprocess.run(["curl", "-sS", "-o", "/dev/null", f"{api['url']}/health"],
                               capture_output=True, text=True, timeout=30)
    assert untrusted.returncode == 60, untrusted.stderr
    with urllib.request.urlopen(f"{api['direct_url']}/health", timeout=10) as answer:
        assert answer.status == 200
    env = https.project.run("ports", "--env").stdout
    assert f"API_URL='{api['url']}'" in env and f"EXPO_PUBLIC_API_URL='{api['url']}'" in env
    key = Path(https.ca).with_name("ca-key.pem")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert https.home in key.parents and https.project.path not in key.parents


def test_chromium_loads_the_page_with_no_certificate_warning(https: Https) -> None:
    assert shutil.which("certutil"), "run `bash scripts/install-browser.sh`"
    nssdb = https.home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    trusted = https.project.run("ca", "trust", "--no-system", "--nssdb", str(nssdb), "--yes")
    assert f"added devenv's CA to the NSS database {nssdb}" in trusted.stdout
    url = f"{https.rows['api']['url']}/health"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={https.home / 'chromium'}"):
        options.add_argument(arg)
    # Chromium on Linux reads $HOME/.pki/nssdb: HOME is the throwaway one
    service = Service("/usr/bin/chromedriver", env={**os.environ, "HOME": str(https.home)})
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(url)
        text = driver.find_element("tag name", "body").text
        assert '"status": "ok"' in text, f"{driver.title}: {text[:300]}"
        assert driver.current_url.startswith(https.rows["api"]["url"])
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
    https.project.run("ca", "untrust", "--no-system", "--nssdb", str(nssdb), "--yes")
    listed = subprocess.run(["certutil", "-L", "-d", f"sql:{nssdb}"], capture_output=True,
                            text=True, check=True).stdout
    assert "devenv local CA" not in listed


def test_down_leaves_no_container(https: Https) -> None:
    https.project.run("down")
    assert https.project.containers() == []
