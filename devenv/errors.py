"""Typed errors. Each carries its exit code and a hint; none of them prints.

The CLI (``cli.main``) is the one place that turns these into a message and an exit code.
The exit codes are documented in docs/commands.md and checked by tests/test_docs.py.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_READY = 3
EXIT_DOCKER = 4
EXIT_PORTS = 5
EXIT_SSH = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended

#: exit code -> meaning; docs/commands.md's table is checked against this.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILURE: "an operation failed (compose, engine, file system, lock held)",
    EXIT_USAGE: "usage error: bad flag, setting, .env file, devenv.toml, service name or template",
    EXIT_NOT_READY: "the stack started but a service did not become ready, or refuses "
                    "the configured login",
    EXIT_DOCKER: "Docker is not usable: engine unreachable, Compose v2 missing, image missing",
    EXIT_PORTS: "no usable host port: --strict-ports conflict, or ports exhausted",
    EXIT_SSH: "ssh failed: host unknown or unreachable, key refused, host key changed",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_TERMINATED: "terminated (SIGTERM), handled like Ctrl-C",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C (locks released, temp files removed)."""


class DevenvError(Exception):
    """Root of every error devenv reports to the user."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: extra lines (e.g. a container's log tail) shown under the message
        self.detail = detail


class UsageError(DevenvError):
    exit_code = EXIT_USAGE


class SettingError(UsageError):
    """A setting has a value devenv cannot use."""


class SelectionError(UsageError):
    """An unknown or empty service name."""


class TemplateError(UsageError):
    """A template (built-in or the project's override) does not render."""


class DockerUnavailableError(DevenvError):
    exit_code = EXIT_DOCKER


class ImageMissingError(DockerUnavailableError):
    def __init__(self, message: str, hint: str | None = None, detail: str | None = None,
                 image: str = ""):
        super().__init__(message, hint, detail)
        #: the image Docker named, when it named one
        self.image = image


class ComposeError(DevenvError):
    """`docker compose` failed for a reason devenv has no better words for."""


class PortConflictError(DevenvError):
    exit_code = EXIT_PORTS


class NotReadyError(DevenvError):
    exit_code = EXIT_NOT_READY


class CredentialsError(NotReadyError):
    """A service answers but refuses the credentials devenv hands to the app (PostgreSQL
    keeps the password, user and database its volume was created with)."""


class LockedError(DevenvError):
    """Another devenv holds the project lock for longer than we wait."""


class StateError(DevenvError):
    """The project's files under .devenv/ or compose/ cannot be written."""


class DataError(DevenvError):
    """A snapshot, restore, import or export failed; the current data is as it was."""


class SnapshotNameError(UsageError):
    """A snapshot name devenv refuses (a `/`, `..`, an unknown name)."""


class MigrationError(NotReadyError):
    """The API's migration command failed: the API was not started."""


class ProjectFileError(UsageError):
    """devenv.toml (or the built-in catalog) declares something devenv cannot use.

    The message names the file, the table and the field, e.g.
    `devenv.toml: [services.mailpit] port: 70000 is outside 1-65535`.
    """

    def __init__(self, file: str, table: str, field: str, problem: str,
                 hint: str | None = None):
        where = file + (f": [{table}]" if table else "") + (f" {field}" if field else "")
        super().__init__(f"{where}: {problem}",
                         hint=hint or "fix it in the file; docs/settings.md "
                         "lists the fields")
        self.file = file
        self.table = table
        self.field = field


class TrustError(DevenvError):
    """devenv's CA could not be added to (or taken out of) a certificate store: no
    permission, or no certutil."""


class SshError(DevenvError):
    """ssh could not open a tunnel: the host, the key or the host key is wrong."""

    exit_code = EXIT_SSH
