"""The PostgreSQL login a snapshot carries, checked before a restore swaps it in.

A snapshot is a physical copy: the cluster keeps the user, password and database it was
made with, whatever `.env` says when it is restored. Each snapshot's manifest records them
(the user and database as they are, the password only as a salted PBKDF2 fingerprint, in a
0600 file beside a copy of the cluster that holds its own verifier of it), so that a restore
can tell before anything stops that the stack could not log in on the restored data, and say
which setting differs. `adopt` puts this project's login on restored data: the role (created
when missing) gets the project's password, the database the project's name.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from ..config.settings import Settings
from ..config.state import known_secrets
from ..engine import Engine
from ..errors import CredentialsError, DataError
from ..report import mask
from .snapshots import Snapshot

SERVICE = "postgres"
USER, PASSWORD, DATABASE = "DEVENV_POSTGRES_USER", "DEVENV_POSTGRES_PASSWORD", "DEVENV_POSTGRES_DB"
_SCHEME = "pbkdf2_sha256"
_ITERATIONS = 100_000


def fingerprint(password: str, salt: bytes | None = None,
                iterations: int = _ITERATIONS) -> str:
    """A salted PBKDF2 of the password: tells a password apart without holding it."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def same_password(recorded: str, password: str) -> bool | None:
    """Whether `password` is the one `recorded` was made from; None when unreadable."""
    try:
        scheme, iterations, salt, _digest = recorded.split("$")
        if scheme != _SCHEME or not 0 < int(iterations) <= 10_000_000:
            return None
        return hmac.compare_digest(fingerprint(password, bytes.fromhex(salt), int(iterations)),
                                   recorded)
    except ValueError:
        return None


def recorded(settings: Settings) -> dict[str, str]:
    """What a snapshot of the project's PostgreSQL data records about its login."""
    return {"user": settings[USER], "password": fingerprint(settings[PASSWORD])}


def differences(snapshot: Snapshot, settings: Settings) -> list[str]:
    """How the snapshot's login differs from the project's, in words naming the settings
    (never a password); empty when it is the same or the snapshot does not say."""
    if SERVICE not in snapshot.holds:
        return []
    found = []
    user = snapshot.login.get("user", "")
    if user and user != settings[USER]:
        found.append(f"{USER} was {user!r} (now {settings[USER]!r})")
    if snapshot.database and snapshot.database != settings[DATABASE]:
        found.append(f"{DATABASE} was {snapshot.database!r} (now {settings[DATABASE]!r})")
    password = snapshot.login.get("password", "")
    if password and same_password(password, settings[PASSWORD]) is False:
        found.append(f"{PASSWORD} is not the one it was taken with")
    return found


def refusal(snapshot: Snapshot, found: list[str]) -> DataError:
    return DataError(
        f"snapshot {snapshot.name} was taken with other PostgreSQL credentials: "
        f"{'; '.join(found)}. Restored as it is, the stack could not log in; nothing was "
        "changed",
        hint=f"restore it with this project's credentials: devenv db restore {snapshot.name} "
        "--adopt-credentials (or set the settings back to the snapshot's)")


def login_refused(snapshot: Snapshot, detail: str, way_back: str | None) -> CredentialsError:
    """The restore is done, but PostgreSQL refuses the project's login on it (a snapshot
    that did not record its login, or whose recorded login was not the data's)."""
    back = f"; the data it replaced: devenv db restore {way_back}" if way_back else ""
    return CredentialsError(
        f"restored snapshot {snapshot.name}, but PostgreSQL refuses this project's login on "
        f"it ({detail}): the data keeps the user, password and database it was taken with",
        hint=f"put this project's credentials on it: devenv db restore {snapshot.name} "
        f"--adopt-credentials{back}")


def _login(engine: Engine, settings: Settings):  # -> LoginResult | None
    """Log in to the running PostgreSQL as the project's settings say (as `up` checks
    it); None when it is not running or publishes no port."""
    from ..live.running import check_login, project_containers, url_host

    container = project_containers(engine, settings.project).get(SERVICE)
    if container is None or not container.running:
        return None
    published = container.host_port(settings.catalog[SERVICE].container_port)
    if published is None:
        return None
    return check_login(settings, SERVICE, url_host(settings, engine.remote_host),
                       published.host_port)


def check_login(engine: Engine, settings: Settings) -> str | None:
    """The server's words when it refuses the project's login, else None (let in, or not
    running)."""
    result = _login(engine, settings)
    return result.detail if result is not None and result.refused else None


def login_works(engine: Engine, settings: Settings) -> bool:
    """The project's login works on the running PostgreSQL (False: refused, not running,
    unknown): what a snapshot of its data may record."""
    result = _login(engine, settings)
    return result is not None and result.ok


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    # standard_conforming_strings is on: only the quote is special (settings refuse
    # control characters)
    return "'" + text.replace("'", "''") + "'"


def adopt(engine: Engine, settings: Settings, snapshot: Snapshot) -> None:
    """Put the project's login on the restored, running PostgreSQL: its user (created when
    the snapshot has no such role) becomes a superuser that logs in with the project's
    password, and the snapshot's database takes the project's database name. Over the
    container's local socket, as the snapshot's own user; the password goes in on stdin."""
    user, database = settings[USER], settings[DATABASE]
    old_database = snapshot.database or database
    script = "\n".join([
        # the password is in this script: never in the server's log, even on an error
        "SET log_statement = 'none';",
        "SET log_min_error_statement = 'panic';",
        f"SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(user)}) "
        "AS missing \\gset",
        "\\if :missing",
        f"CREATE ROLE {_ident(user)};",
        "\\endif",
        f"ALTER ROLE {_ident(user)} WITH SUPERUSER LOGIN PASSWORD "
        f"{_literal(settings[PASSWORD])};",
        f"SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = {_literal(database)}) "
        f"AND EXISTS (SELECT FROM pg_database WHERE datname = {_literal(old_database)}) "
        "AS rename \\gset",
        "\\if :rename",
        f"ALTER DATABASE {_ident(old_database)} RENAME TO {_ident(database)};",
        "\\endif", ""])
    compose = engine.compose(settings.project, settings.compose_file)
    errors = []
    for role in dict.fromkeys([snapshot.login.get("user", ""), user, "postgres"]):
        if not role:
            continue
        result = compose.exec(SERVICE, ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U",
                                        role, "-d", "postgres", "-f", "-"],
                              interactive=False, tty=False, capture=True,
                              stdin=script.encode())
        if result.code == 0:
            return
        said = mask(result.stderr, [*known_secrets(settings),  # also as the script quoted it
                                    settings[PASSWORD].replace("'", "''")]).strip()
        errors.append(said.splitlines()[-1] if said else f"exit {result.code}")
    raise DataError(f"could not put this project's credentials on snapshot {snapshot.name}: "
                    f"{errors[-1] if errors else 'no role to log in as'}",
                    hint="the snapshot is restored as it was taken; set the settings back "
                    "to the snapshot's")
