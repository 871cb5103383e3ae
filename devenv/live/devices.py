"""Host apps and devices: the URLs an iOS simulator, an Android emulator and a phone use to
reach the stack, this machine's LAN address, and `up --lan` (publishing chosen services on
that address while everything else stays on loopback).

Where each one finds the host:
- the iOS simulator shares the Mac's network: the host's loopback, 127.0.0.1;
- the Android emulator has its own network and reaches the host's loopback as 10.0.2.2;
- a phone on the same Wi-Fi reaches only what listens on the machine's LAN address.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from ..config.catalog import DEVICE_ENV
from ..config.settings import Settings
from ..errors import DevenvError, UsageError

DEVICES_SCHEMA = "devenv.devices/1"
ANDROID_EMULATOR_HOST = "10.0.2.2"
#: a TEST-NET-2 address: connecting a UDP socket to it picks the source address of the
#: default route without sending a packet
_ROUTE_PROBE = ("198.51.100.1", 9)


class NoLanAddressError(DevenvError):
    """No address on a network a phone could share (or DEVENV_LAN_ADDRESS is not ours)."""


def route_address() -> str | None:
    """The address this machine uses towards its default route; None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(_ROUTE_PROBE)
            address = str(sock.getsockname()[0])
    except OSError:
        return None
    ip = ipaddress.ip_address(address)
    return None if ip.is_loopback or ip.is_unspecified else address


def is_local_address(address: str) -> bool:
    """True when a socket can bind to `address` here (it belongs to an interface)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError as exc:
        return exc.errno != errno.EADDRNOTAVAIL
    return True


def lan_address(settings: Settings, find: Callable[[], str | None] | None = None) -> str:
    """DEVENV_LAN_ADDRESS, or the default route's address. Raises NoLanAddressError."""
    configured = settings["DEVENV_LAN_ADDRESS"]
    if configured:
        if not is_local_address(configured):
            raise NoLanAddressError(
                f"DEVENV_LAN_ADDRESS={configured} is not an address of this machine",
                hint="use one that `ip addr` (or `ipconfig`) lists, or leave it empty to "
                "find it")
        return configured
    found = (find or route_address)()
    if found is None:
        raise NoLanAddressError(
            "this machine has no LAN address (no network interface with a default route)",
            hint="connect to the Wi-Fi or network the phone is on, or set "
            "DEVENV_LAN_ADDRESS; simulators and emulators need none")
    return found


# --- up --lan ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LanRequest:
    address: str
    services: tuple[str, ...]
    #: named services that hold data (PostgreSQL, Redis): they need a second confirmation
    private: tuple[str, ...]


def plan_lan(settings: Settings, words: Sequence[str], started: Sequence[str],
             find: Callable[[], str | None] | None = None) -> LanRequest:
    """Which services `up --lan WORDS` publishes on which address. Only what is named:
    dependencies stay on loopback."""
    names = list(dict.fromkeys(settings.catalog.resolve(w) for w in words))
    if ipaddress.ip_address(settings.bind).is_unspecified:
        raise UsageError(f"--lan changes nothing: DEVENV_BIND={settings.bind} already "
                         "publishes every service on every address",
                         hint="remove DEVENV_BIND to keep the rest on loopback and publish "
                         "only what --lan names")
    if not names:
        raise UsageError("--lan needs service names", hint="e.g. devenv up --lan api")
    missing = [n for n in names if n not in started]
    if missing:
        raise UsageError(f"--lan {', '.join(missing)}: not started by this up",
                         hint=f"add it to --only, e.g. --only {','.join(missing)}")
    address = lan_address(settings, find)
    return LanRequest(address, tuple(names),
                      tuple(n for n in names
                            if n in settings.catalog and settings.catalog[n].private))


def private_warning(request: LanRequest, settings: Settings) -> str:
    catalog = settings.catalog
    titles = ", ".join(catalog[n].title for n in request.private)
    return (f"{titles} on the LAN at {request.address}: anyone on this network who has the "
            "password can read and change the team's data. Publish it there?")


# --- device URLs -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceURL:
    target: str  # ios-simulator | android-emulator | phone
    label: str
    url: str
    how: str  # why this address reaches the API from there
    reachable: bool


@dataclass(frozen=True)
class DeviceReport:
    api_port: int
    lan_address: str  # "" when none
    lan_problem: str  # why there is no phone URL, or ""
    api_on_lan: bool
    urls: tuple[DeviceURL, ...]
    #: the mobile host apps devenv runs (Metro, Expo): where a phone loads the bundle
    apps: tuple[DeviceURL, ...] = ()

    @property
    def phone_url(self) -> str:
        return next((u.url for u in self.urls if u.target == "phone"), "")


def device_report(settings: Settings, api_port: int, published_on: Sequence[str],
                  find: Callable[[], str | None] | None = None,
                  host: str = "127.0.0.1") -> DeviceReport:
    """The API's URL from each place an app runs. published_on: the host addresses the
    API's container publishes its port on (Docker's view)."""
    try:
        lan, problem = lan_address(settings, find), ""
    except NoLanAddressError as exc:
        lan, problem = "", f"{exc.message}; {exc.hint}"
    wide = {"0.0.0.0", "::", ""}
    on_lan = bool(lan) and any(ip == lan or ip in wide for ip in published_on)
    urls = [
        DeviceURL("ios-simulator", "iOS simulator", f"http://{host}:{api_port}",
                  "the simulator shares this machine's loopback", True),
        DeviceURL("android-emulator", "Android emulator",
                  f"http://{ANDROID_EMULATOR_HOST}:{api_port}",
                  "the emulator's name for this machine's loopback", True),
    ]
    if lan:
        how = ("this machine's LAN address" if on_lan else
               "this machine's LAN address; the API is not published there yet: "
               "`devenv up --lan api`")
        urls.append(DeviceURL("phone", "phone on the LAN", f"http://{lan}:{api_port}", how,
                              on_lan))
    return DeviceReport(api_port, lan, problem, on_lan, tuple(urls))


def device_env(report: DeviceReport) -> dict[str, str]:
    """The host apps' own conventions: Expo reads EXPO_PUBLIC_* into the app bundle; Metro
    tells a phone where to load the bundle from with REACT_NATIVE_PACKAGER_HOSTNAME."""
    # the names are declared with the catalog, so that no service or tunnel takes one
    simulator, emulator, phone, packager = DEVICE_ENV
    by = {u.target: u.url for u in report.urls}
    env = {simulator: by["ios-simulator"], emulator: by["android-emulator"]}
    if report.lan_address:
        env[phone] = by["phone"]
        env[packager] = report.lan_address
    return env


def qr_text(data: str) -> str:
    """A QR code drawn with half blocks, two rows of modules per line of text."""
    import io

    import segno

    out = io.StringIO()
    segno.make(data, micro=False).terminal(out=out, compact=True)
    return out.getvalue()


def format_devices(report: DeviceReport, qr: bool = True) -> str:
    lines = ["The API from where the app runs (EXPO_PUBLIC_API_URL*):"]
    width = max(len(u.label) for u in report.urls)
    for u in report.urls:
        lines.append(f"  {u.label:<{width}}  {u.url:<28} {u.how}")
    if report.lan_problem:
        lines.append(f"  {'phone on the LAN':<{width}}  (none) {report.lan_problem}")
    if report.lan_address:
        lines.append(f"Metro/Expo for a phone: REACT_NATIVE_PACKAGER_HOSTNAME="
                     f"{report.lan_address}")
    for u in report.apps:
        lines.append(f"  {u.label:<{width}}  {u.url:<28} {u.how}")
    if qr and report.phone_url:
        lines.append(f"\nScan on the phone ({report.phone_url}):")
        lines.append(qr_text(report.phone_url).rstrip("\n"))
    return "\n".join(lines)


def format_devices_json(report: DeviceReport) -> str:
    return json.dumps({"schema": DEVICES_SCHEMA, **asdict(report)}, indent=2)
