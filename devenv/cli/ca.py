"""`devenv ca path|trust|untrust`: devenv's local CA, which signs the HTTPS proxy's
certificates (DEVENV_HTTPS=true). Parsing, asking and printing only; the work is in
certs/ca.py and certs/trust.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .common import err, json_option

CA_SCHEMA = "devenv.ca/1"


@click.group()
def ca() -> None:
    """devenv's local certificate authority (one per user, for DEVENV_HTTPS=true).

    Its key stays in your data directory ($XDG_DATA_HOME/devenv/ca, mode 0600), never in
    a project. `trust` makes the system and the browsers trust it; `untrust` undoes that.

    \b
    Example:
      curl --cacert "$(devenv ca path)" https://api.cirkelline.localhost/health
      devenv ca trust
    """


@ca.command("path")
@json_option
def ca_path(as_json: bool) -> None:
    """Print the CA certificate's path (the CA is made on first use).

    \b
    Example:
      curl --cacert "$(devenv ca path)" https://api.cirkelline.localhost/health
      devenv ca path --json
    """
    from ..certs.ca import ca_dir, load_ca

    local = load_ca(ca_dir(os.environ), err)
    if as_json:
        click.echo(json.dumps({"schema": CA_SCHEMA, "path": str(local.cert_path),
                               "fingerprint_sha256": local.fingerprint,
                               "expires": local.cert.not_valid_after_utc.isoformat()}))
    else:
        click.echo(str(local.cert_path))


def _stores(system: bool, nss: bool, nssdb: tuple[Path, ...]) -> tuple[Path, list]:
    from ..certs.ca import ca_dir, load_ca
    from ..certs.trust import plan

    local = load_ca(ca_dir(os.environ), err)
    return local.cert_path, plan(os.environ, system, nss, [Path(p) for p in nssdb])


_store_options = [
    click.option("--system/--no-system", default=True,
                 help="The system store (needs root). Default: yes."),
    click.option("--nss/--no-nss", default=True,
                 help="The NSS databases Chromium and Firefox read. Default: yes."),
    click.option("--nssdb", multiple=True, type=click.Path(file_okay=False, path_type=Path),
                 help="This NSS database instead of yours (repeatable)."),
    click.option("-y", "--yes", is_flag=True, help="Do not ask."),
]


def _with_store_options(f):  # type: ignore[no-untyped-def]
    for option in reversed(_store_options):
        f = option(f)
    return f


def _change(adding: bool, system: bool, nss: bool, nssdb: tuple[Path, ...], yes: bool) -> None:
    from ..certs.trust import apply

    cert, steps = _stores(system, nss, nssdb)
    for step in steps:
        err(f"will {step.describe(adding)}")
    if not yes and not click.confirm("go ahead?", default=False, err=True):
        err("nothing changed")
        return
    for line in apply(steps, cert, adding):
        click.echo(line)


@ca.command("trust")
@_with_store_options
def ca_trust(system: bool, nss: bool, nssdb: tuple[Path, ...], yes: bool) -> None:
    """Add devenv's CA to the system store and to the browsers' NSS databases.

    Says what it will change and asks first (--yes does not ask); then says what it
    changed. Without root, add --no-system and do the system store with sudo.

    \b
    Example:
      devenv ca trust --no-system          # Chromium and Firefox, as yourself
      sudo devenv ca trust --no-nss        # the system store
    """
    _change(True, system, nss, nssdb, yes)


@ca.command("untrust")
@_with_store_options
def ca_untrust(system: bool, nss: bool, nssdb: tuple[Path, ...], yes: bool) -> None:
    """Take devenv's CA out of the stores `devenv ca trust` added it to.

    \b
    Example:
      devenv ca untrust --no-system
    """
    _change(False, system, nss, nssdb, yes)
