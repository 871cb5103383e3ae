"""devenv's local CA (one per user) and the leaf certificates it issues for the HTTPS proxy.

The CA lives in the user's data directory ($XDG_DATA_HOME/devenv/ca, else
~/.local/share/devenv/ca; mode 0700, its key 0600), never in a project. Each project gets a
leaf certificate for `PROJECT.localhost` and `*.PROJECT.localhost` in a directory of its
own below it (keyed by the project's name and directory, so two checkouts with one name do
not share a key). Everything read back is checked: a CA key that cannot be read or does not
match its certificate is set aside and a new CA made (said); a leaf that is damaged, not
issued by the current CA, for other names or within RENEW_DAYS of its end is issued anew.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StateError
from ..files import write_atomic
from .paths import CA_CERT, ca_dir  # noqa: F401 - callers import them from here too

CA_KEY = "ca-key.pem"
LEAF_CERT = "cert.pem"
LEAF_KEY = "key.pem"
CA_COMMON_NAME = "devenv local CA"
CA_DAYS = 3650
#: browsers refuse a leaf valid for more than 398 days
LEAF_DAYS = 397
#: a leaf with less left than this is issued anew by `up`
RENEW_DAYS = 30


def ca_cert_path(environ: Mapping[str, str]) -> Path:
    return ca_dir(environ) / CA_CERT


@dataclass(frozen=True)
class LocalCA:
    cert_path: Path
    key_path: Path
    cert: Any  # cryptography.x509.Certificate
    key: Any  # an EC private key

    @property
    def fingerprint(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self.cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class Leaf:
    """A project's certificate for the proxy: its directory (mounted into the proxy) and
    a digest that changes whenever the certificate does (so the proxy reloads)."""

    directory: Path
    digest: str


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _same_key(cert: Any, key: Any) -> bool:
    from cryptography.hazmat.primitives import serialization

    form = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cert.public_key().public_bytes(*form) == key.public_key().public_bytes(*form))


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}",
                         hint="check that your data directory ($XDG_DATA_HOME or "
                         "~/.local/share) is writable") from exc


def _read_ca(directory: Path) -> LocalCA | str:
    """The CA as stored, or why it cannot be used ("" when there is none yet)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() and not key_path.exists():
        return ""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    except (ValueError, TypeError) as exc:
        return f"is damaged ({str(exc).splitlines()[0][:80] if str(exc) else 'not PEM'})"
    if not _same_key(cert, key):
        return "does not match its certificate"
    if cert.not_valid_after_utc - _now() < datetime.timedelta(days=RENEW_DAYS):
        return "expires within 30 days"
    return LocalCA(cert_path, key_path, cert, key)


def _set_aside(directory: Path) -> list[str]:
    """Rename the CA's files to NAME.damaged-<UTC time>; the names they got."""
    stamp = _stamp()
    moved = []
    for name in (CA_KEY, CA_CERT):
        path = directory / name
        if path.exists() or path.is_symlink():
            aside = directory / f"{name}.damaged-{stamp}"
            try:
                os.rename(path, aside)
            except OSError as exc:
                raise StateError(f"cannot set {path} aside: {exc.strerror}",
                                 hint=f"move it away yourself; devenv then makes a new CA "
                                 f"in {directory}") from exc
            moved.append(aside.name)
    return moved


def _create_ca(directory: Path) -> LocalCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key()
    user = os.environ.get("USER") or str(os.getuid())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                         f"{user} {_stamp()}")])
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    # The key first: a certificate without its key would read as damaged next time.
    write_atomic(directory / CA_KEY, _key_pem(key), 0o600)
    write_atomic(directory / CA_CERT, _cert_pem(cert), 0o644)
    return LocalCA(directory / CA_CERT, directory / CA_KEY, cert, key)


def load_ca(directory: Path, notify: Callable[[str], None]) -> LocalCA:
    """The user's CA in `directory`, created on first use; an unusable one is set aside
    and replaced."""
    _make_dir(directory)
    found = _read_ca(directory)
    if isinstance(found, LocalCA):
        return found
    if found:
        moved = _set_aside(directory)
        ca = _create_ca(directory)
        notify(f"https: devenv's CA in {directory} {found}: set aside as "
               f"{', '.join(moved)}; made a new CA (run `devenv ca trust` again so browsers "
               "trust it)")
        return ca
    ca = _create_ca(directory)
    notify(f"https: made devenv's local CA in {directory} (once per user; "
           "`devenv ca trust` makes browsers trust it)")
    return ca


def leaf_dir(directory: Path, project: str, project_dir: Path) -> Path:
    """Below the CA: one directory per project name and checkout."""
    where = hashlib.sha256(os.path.realpath(project_dir).encode()).hexdigest()[:10]
    return directory / "leaves" / f"{project}-{where}"


def _names(domain: str) -> list[str]:
    return [domain, f"*.{domain}"]


def _leaf_problem(ca: LocalCA, directory: Path, domain: str) -> str:
    """Why the stored leaf cannot serve `domain` ("" when it can)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate((directory / LEAF_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / LEAF_KEY).read_bytes(),
                                                 password=None)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    except (ValueError, TypeError):
        return "is damaged"
    if not _same_key(cert, key):
        return "does not match its key"
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(ca.cert)
    except (InvalidSignature, ValueError, TypeError):
        return "was issued by another CA"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = sorted(sans.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    if names != sorted(_names(domain)):
        return "names other hosts"
    if cert.not_valid_after_utc - _now() < datetime.timedelta(days=RENEW_DAYS):
        return f"expires on {cert.not_valid_after_utc:%Y-%m-%d}"
    return ""


def _issue(ca: LocalCA, directory: Path, domain: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in _names(domain)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    write_atomic(directory / LEAF_KEY, _key_pem(key), 0o600)
    write_atomic(directory / LEAF_CERT, _cert_pem(cert) + _cert_pem(ca.cert), 0o644)


def ensure_leaf(root: Path, domain: str, project: str, project_dir: Path,
                notify: Callable[[str], None]) -> Leaf:
    """The project's leaf certificate for `domain` and `*.domain`, issued (or renewed)
    when it cannot serve; the CA in `root` is made first when there is none."""
    ca = load_ca(root, notify)
    directory = leaf_dir(root, project, project_dir)
    _make_dir(directory)
    problem = _leaf_problem(ca, directory, domain)
    if problem:
        _issue(ca, directory, domain)
        if problem != "missing":
            notify(f"https: the certificate for *.{domain} {problem}: issued a new one")
    digest = hashlib.sha256((directory / LEAF_CERT).read_bytes()).hexdigest()[:16]
    return Leaf(directory, digest)
