"""Device URLs, the LAN address, `up --lan` planning and the QR code."""

from __future__ import annotations

import pytest

from devenv.config.settings import load_settings
from devenv.errors import EXIT_FAILURE, UsageError
from devenv.live.devices import (
    NoLanAddressError,
    device_env,
    device_report,
    format_devices,
    is_local_address,
    lan_address,
    plan_lan,
    qr_text,
)


def no_route() -> None:
    return None


def lan() -> str:
    return "192.168.1.20"


def test_no_lan_address_is_said_clearly(tmp_path):
    with pytest.raises(NoLanAddressError) as caught:
        lan_address(load_settings(tmp_path, {}, {}), no_route)
    assert caught.value.exit_code == EXIT_FAILURE
    assert "no LAN address" in caught.value.message
    assert "DEVENV_LAN_ADDRESS" in caught.value.hint


def test_configured_lan_address_wins_but_must_be_ours(tmp_path):
    assert is_local_address("127.0.0.1")
    assert not is_local_address("198.51.100.254")  # TEST-NET-2: on no interface here
    settings = load_settings(tmp_path, {"DEVENV_LAN_ADDRESS": "198.51.100.254"}, {})
    with pytest.raises(NoLanAddressError, match="is not an address of this machine"):
        lan_address(settings, lan)
    assert lan_address(load_settings(tmp_path, {}, {}), lan) == "192.168.1.20"


def test_loopback_is_no_lan_address(tmp_path):
    from devenv.errors import SettingError

    with pytest.raises(SettingError, match="not reachable from a phone"):
        load_settings(tmp_path, {"DEVENV_LAN_ADDRESS": "127.0.0.1"}, {})


def test_device_urls_say_which_is_which(tmp_path):
    settings = load_settings(tmp_path, {}, {})
    report = device_report(settings, 7778, ["127.0.0.1"], lan)
    urls = {u.target: (u.url, u.reachable) for u in report.urls}
    assert urls == {"ios-simulator": ("http://127.0.0.1:7778", True),
                    "android-emulator": ("http://10.0.2.2:7778", True),
                    "phone": ("http://192.168.1.20:7778", False)}
    assert not report.api_on_lan
    text = format_devices(report, qr=False)
    assert "iOS simulator     http://127.0.0.1:7778" in text
    assert "`devenv up --lan api`" in text
    assert device_env(report) == {
        "EXPO_PUBLIC_API_URL": "http://127.0.0.1:7778",
        "EXPO_PUBLIC_API_URL_ANDROID": "http://10.0.2.2:7778",
        "EXPO_PUBLIC_API_URL_LAN": "http://192.168.1.20:7778",
        "REACT_NATIVE_PACKAGER_HOSTNAME": "192.168.1.20",
    }
    on_lan = device_report(settings, 7778, ["127.0.0.1", "192.168.1.20"], lan)
    assert on_lan.api_on_lan and on_lan.phone_url == "http://192.168.1.20:7778"
    assert "Scan on the phone (http://192.168.1.20:7778)" in format_devices(on_lan)


def test_without_lan_the_phone_row_says_why(tmp_path):
    report = device_report(load_settings(tmp_path, {}, {}), 7777, ["127.0.0.1"], no_route)
    assert [u.target for u in report.urls] == ["ios-simulator", "android-emulator"]
    assert "no LAN address" in format_devices(report)
    assert "EXPO_PUBLIC_API_URL_LAN" not in device_env(report)


def test_lan_takes_only_what_is_named_and_flags_the_data(tmp_path):
    settings = load_settings(tmp_path, {}, {})
    started = ("api", "postgres", "redis")
    request = plan_lan(settings, ["backend"], started, lan)
    assert request.services == ("api",) and request.private == ()
    both = plan_lan(settings, ["api", "db", "cache"], started, lan)
    assert both.private == ("postgres", "redis")
    with pytest.raises(UsageError, match="--lan grafana: not started by this up"):
        plan_lan(settings, ["grafana"], started, lan)
    with pytest.raises(NoLanAddressError):
        plan_lan(settings, ["api"], started, no_route)


def test_qr_code_is_a_square_of_blocks():
    lines = qr_text("http://192.168.1.20:7777").splitlines()
    assert len(lines) >= 10
    assert len({len(line) for line in lines}) == 1  # every line equally wide
    assert set("".join(lines)) <= set("█▀▄ ")


def test_lan_with_a_wildcard_bind_is_refused_as_moot(tmp_path):
    settings = load_settings(tmp_path, {"DEVENV_BIND": "0.0.0.0"}, {})
    with pytest.raises(UsageError, match="--lan changes nothing: DEVENV_BIND=0.0.0.0"):
        plan_lan(settings, ["api"], ("api",), lan)


def test_device_urls_with_no_api_running_say_how_to_start_it(fake_context, fake_engine):
    from fake_engine import stop

    from devenv.live.status import devices
    from devenv.stack import usecases as stack

    ctx = fake_context()
    expected = ("the Backend API of project unit is not running",
                "start it: devenv up --only api (and --lan api for a phone)")
    with pytest.raises(UsageError) as nothing:  # nothing of the project runs
        devices(ctx)
    assert (nothing.value.message, nothing.value.hint) == expected
    assert nothing.value.exit_code == 2
    stack.up(ctx, ["api"])
    assert devices(ctx).urls  # running: the URLs
    stop(fake_engine, "api")  # the database and cache still run
    with pytest.raises(UsageError) as stopped:
        devices(ctx)
    assert (stopped.value.message, stopped.value.hint) == expected
