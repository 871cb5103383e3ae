from __future__ import annotations

from devenv.config.settings import load_settings
from devenv.live.running import checks_login, in_catalog_order


def test_catalog_order_puts_what_the_catalog_does_not_know_last(tmp_path):
    settings = load_settings(tmp_path, {}, {})
    assert in_catalog_order(["zeta", "redis", "api", "alpha"], settings) == \
        ["api", "redis", "alpha", "zeta"]


def test_which_services_check_their_login_is_declared(tmp_path):
    (tmp_path / "devenv.toml").write_text(
        '[services.pg2]\nimage = "postgres:16"\nport = 5432\nhost_port = 15432\n'
        'probe = "postgres"\nlogin = ["DEVENV_POSTGRES_USER", "DEVENV_POSTGRES_PASSWORD"]\n'
        'check_login = true\n')
    settings = load_settings(tmp_path, {}, {})
    assert [n for n in settings.catalog if checks_login(settings, n)] == ["postgres", "pg2"]
