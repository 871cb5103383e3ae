"""DEVENV_HTTPS: devenv's CA and leaf certificates (certs/ca.py), the proxy's place in the
catalog and the settings, its Caddyfile, the rows' URLs, and `up` turning it off. The real
proxy, curl and Chromium are in tests/e2e/test_https.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fake_engine import running

from devenv.certs import ca as certs
from devenv.config.settings import load_settings
from devenv.engine import Container, Published
from devenv.errors import SettingError
from devenv.render.templates import caddy_token
from devenv.stack import usecases as stack


def _notes() -> tuple[list[str], object]:
    notes: list[str] = []
    return notes, notes.append


def test_the_ca_is_made_once_per_user_with_a_private_key(tmp_path: Path) -> None:
    root = certs.ca_dir({"XDG_DATA_HOME": str(tmp_path / "data")})
    assert root == tmp_path / "data" / "devenv" / "ca"
    notes, say = _notes()
    first = certs.load_ca(root, say)
    assert stat.S_IMODE(os.stat(first.key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert len(notes) == 1 and "made devenv's local CA" in notes[0]
    again = certs.load_ca(root, say)
    assert again.fingerprint == first.fingerprint and len(notes) == 1


def test_a_damaged_ca_key_is_set_aside_and_a_new_ca_is_said(tmp_path: Path) -> None:
    notes, say = _notes()
    old = certs.load_ca(tmp_path, say)
    (tmp_path / certs.CA_KEY).write_text("-----BEGIN PRIVATE KEY-----\nbroken\n")
    new = certs.load_ca(tmp_path, say)
    assert new.fingerprint != old.fingerprint
    aside = sorted(p.name for p in tmp_path.glob("*.damaged-*"))
    assert len(aside) == 2 and "is damaged" in notes[-1] and "devenv ca trust" in notes[-1]
    assert (tmp_path / aside[0]).read_text().endswith("broken\n")  # nothing destroyed


def test_a_leaf_is_kept_renewed_near_its_end_and_reissued_for_a_new_ca(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography import x509

    notes, say = _notes()
    project = tmp_path / "p"
    first = certs.ensure_leaf(tmp_path / "ca", "unit.localhost", "unit", project, say)
    cert = x509.load_pem_x509_certificate((first.directory / certs.LEAF_CERT).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sorted(names.value.get_values_for_type(x509.DNSName)) == \
        ["*.unit.localhost", "unit.localhost"]
    assert stat.S_IMODE(os.stat(first.directory / certs.LEAF_KEY).st_mode) == 0o600
    assert certs.ensure_leaf(tmp_path / "ca", "unit.localhost", "unit", project,
                             say).digest == first.digest
    monkeypatch.setattr(certs, "LEAF_DAYS", 10)  # issue one that ends within RENEW_DAYS
    (first.directory / certs.LEAF_CERT).unlink()
    short = certs.ensure_leaf(tmp_path / "ca", "unit.localhost", "unit", project, say)
    monkeypatch.setattr(certs, "LEAF_DAYS", 397)
    renewed = certs.ensure_leaf(tmp_path / "ca", "unit.localhost", "unit", project, say)
    assert renewed.digest != short.digest and "expires on" in notes[-1]
    # two checkouts with one project name get two certificates (and two keys)
    other = certs.ensure_leaf(tmp_path / "ca", "unit.localhost", "unit", tmp_path / "q", say)
    assert other.directory != renewed.directory


@pytest.mark.parametrize("value", ['api" {', "a b", "{$HOME}", "x\nrespond 1", "", "-x"])
def test_no_value_reaches_the_caddyfile_unless_it_is_a_plain_token(value: str) -> None:
    with pytest.raises(ValueError):
        caddy_token(value)
    assert caddy_token("api.unit.localhost:443") == '"api.unit.localhost:443"'


def test_https_is_a_boolean_setting_and_off_by_default(tmp_path: Path) -> None:
    off = load_settings(tmp_path, {})
    assert not off.https and "proxy" not in off.catalog and off.disabled == ("proxy",)
    assert "DEVENV_PROXY_IMAGE" in off.values  # a setting all the same
    on = load_settings(tmp_path, {"DEVENV_HTTPS": "true"})
    assert on.https and on.catalog.proxy == "proxy"
    assert on.catalog.select(["backend"]).services == ("api", "postgres", "redis", "proxy")
    with pytest.raises(SettingError) as info:
        load_settings(tmp_path, {"DEVENV_HTTPS": "maybe"})
    assert info.value.exit_code == 2 and "DEVENV_HTTPS=true" in (info.value.hint or "")


def test_rows_carry_the_https_url_and_the_direct_one(tmp_path: Path) -> None:
    from devenv.live.running import app_env, make_row, probe_targets

    settings = load_settings(tmp_path, {"DEVENV_HTTPS": "true", "DEVENV_PROJECT": "shop",
                                        "XDG_DATA_HOME": str(tmp_path)})
    rows = [make_row(settings, name, "127.0.0.1", port, "running", proxy_port=8443)
            for name, port in (("api", 7001), ("redis", 7002), ("proxy", 8443))]
    assert [(r.url, r.direct_url) for r in rows] == [
        ("https://api.shop.localhost:8443", "http://127.0.0.1:7001"),
        ("redis://127.0.0.1:7002", "redis://127.0.0.1:7002"),
        ("https://shop.localhost:8443", "https://127.0.0.1:8443")]
    on_443 = make_row(settings, "api", "127.0.0.1", 7001, "running", proxy_port=443)
    assert on_443.url == "https://api.shop.localhost"
    env = app_env(settings, rows)
    assert env["API_URL"] == env["EXPO_PUBLIC_API_URL"] == "https://api.shop.localhost:8443"
    api, redis, _proxy = probe_targets(settings, rows, 8443)
    assert api.tls is not None and api.tls.server_name == "api.shop.localhost"
    assert (api.host, api.tls.port) == ("127.0.0.1", 8443) and redis.tls is None


def test_turning_https_off_stops_and_removes_the_proxy(fake_context, fake_engine) -> None:
    ctx = fake_context()
    proxy = Container(id="cproxy", name="unit-proxy-1", project="unit", service="proxy",
                      state="running", health="", status="Up 1 minute",
                      ports=(Published("127.0.0.1", 443, 443),),
                      working_dir=str(ctx.project_dir / "compose"))
    fake_engine.containers_.append(proxy)
    stack.up(ctx, ["cache"])
    assert "proxy" not in running(fake_engine)
    assert ("stop", "cproxy") in fake_engine.calls
    assert "DEVENV_HTTPS is off: removing proxy" in fake_context.notes
