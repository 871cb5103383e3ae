"""The two steps `up` takes for data: a fresh volume starts from the `seed` snapshot, and the
API's migration runs (then the API starts); plus reading a failed seed from the log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ..config.settings import Settings
from ..config.state import known_secrets
from ..engine import Engine
from ..errors import DataError, MigrationError
from ..report import mask
from . import credentials, snapshots
from .ops import check_major, compose_of, copy_volumes, create_volumes
from .volumes import volume_name


# --- the steps `up` takes ------------------------------------------------------------------
def prepare_volumes(engine: Engine, settings: Settings, services: Sequence[str],
                    notify: Callable[[str], None]) -> bool:
    """A fresh PostgreSQL volume starts from the `seed` snapshot when there is one (its
    Redis data too, if Redis is fresh as well). True when it did."""
    if "postgres" not in services or engine.remote_host:
        return False
    if engine.volume_exists(volume_name(settings, "postgres")):
        return False
    seed_dir = settings.snapshot_dir / snapshots.SEED
    if not seed_dir.is_dir():
        return False
    seed = snapshots.load(settings.snapshot_dir, snapshots.SEED)
    check_major(engine, settings, seed)
    found = credentials.differences(seed, settings)
    if found:  # the fresh volume would keep them: the stack could not log in
        raise DataError(
            f"snapshot seed was taken with other PostgreSQL credentials: {'; '.join(found)}. "
            "A fresh volume started from it would refuse this project's login; nothing was "
            "created",
            hint="set the settings back to the snapshot's; or rename the folder "
            f"{seed.path} (the fresh volume then starts from the seed folder), run "
            "`devenv up`, and `devenv db restore NEW-NAME --adopt-credentials`")
    fresh = [s for s in seed.holds if s in services
             and not engine.volume_exists(volume_name(settings, s))]
    notify(f"{', '.join(fresh)}: fresh volume{'s' * (len(fresh) > 1)}, starting from "
           "snapshot seed")
    create_volumes(engine, settings, fresh)
    copy_volumes(engine, settings, src=seed, copy_in=fresh)
    return True


_SEED_ERROR = re.compile(r"psql:(?:/docker-entrypoint-initdb\.d/)?(?P<file>[^:/]+):"
                         r"(?P<line>\d+): (?P<error>(?:ERROR|FATAL):.*)")
_SEED_RUNNING = re.compile(r"running /docker-entrypoint-initdb\.d/(\S+)")


def seed_failure(log: str, settings: Settings) -> tuple[str, str] | None:
    """(message, hint) when PostgreSQL's log shows a seed file that failed, else None."""
    match = _SEED_ERROR.search(log)
    if match is None:
        return None
    name = match["file"]
    if name == "<stdin>":  # a .sql.gz goes through a pipe: the entrypoint named it before
        ran = _SEED_RUNNING.findall(log[: match.start()])
        name = ran[-1] if ran else "(a compressed file)"
    error = " ".join(match["error"].split())
    return (f"seed file {settings['DEVENV_SEED_DIR'].rstrip('/')}/{name} failed at "
            f"line {match['line']}: {error}",
            "fix the file, then `devenv db reset --yes` creates the database again and runs "
            "the seed folder")


def migrate(engine: Engine, settings: Settings, build: bool,
            notify: Callable[[str], None]) -> None:
    """Run DEVENV_API_MIGRATE once in the API's image; MigrationError (the API is then not
    started) with its output when it fails."""
    command = settings["DEVENV_API_MIGRATE"]
    notify(f"api: migrating ({command})")
    result = compose_of(engine, settings).run("api", ["sh", "-c", command], tty=False,
                                            capture=True, build=build)
    if result.code:
        secrets = known_secrets(settings)
        text = (result.stdout.rstrip() + "\n" + result.stderr.rstrip()).strip()
        output = "\n".join(mask(text, secrets).splitlines()[-30:])
        raise MigrationError(
            f"the migration `{mask(command, secrets)}` failed (exit {result.code}); "
            "the API was not started",
            detail=f"its output:\n{output}" if output else "(it printed nothing)",
            hint="fix the migration and run `devenv up` again; the database and cache keep "
            "running")
