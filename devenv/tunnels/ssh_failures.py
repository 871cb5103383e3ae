"""What ssh's messages mean: one typed error, with the next step, for each failure.

ssh writes why it failed to stderr (the tunnel's log). The patterns are OpenSSH's own
wording, which has been stable for many releases.
"""

from __future__ import annotations

import re

from ..errors import DevenvError, SshError

#: how long a target that refuses connections may take to start listening; a target the
#: bastion cannot even resolve fails at once
TARGET_GRACE = 5.0


class PortRaceError(DevenvError):
    """ssh could not listen on the planned port: something took it after planning."""

    def __init__(self, port: int, detail: str):
        super().__init__(f"127.0.0.1:{port} was taken after planning: {detail}")
        self.port = port


_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"Could not resolve hostname", "resolve"),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed", "changed"),
    (r"Host key verification failed|No .* host key is known", "unknown-key"),
    (r"Permission denied|Too many authentication failures", "denied"),
    (r"[Cc]onnection refused|[Cc]onnection timed out|No route to host|"
     r"Network is unreachable|Connection closed by|kex_exchange_identification", "unreachable"),
    (r"Address already in use|cannot listen to port|Could not request local forwarding",
     "port"),
)


def classify_failure(label: str, via: str, port: int, log_text: str) -> DevenvError:
    """Turn what ssh wrote before it exited into one typed error with the next step.

    label: what failed, e.g. "tunnel prod-db"; via: the ssh destination."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()
             and not line.startswith("devenv-supervisor:") and not line.startswith("@")]
    last = lines[-1] if lines else "ssh exited without a message"
    found = ""
    for pattern, kind in _PATTERNS:
        if re.search(pattern, log_text):
            found = kind
            break
    head = f"{label}: "
    if found == "resolve":
        return SshError(head + f"ssh cannot resolve the host of {via!r}",
                        hint="check `via` in devenv.toml, or the Host entry in your ssh config")
    if found == "changed":
        return SshError(head + f"the host key of {via} has CHANGED since you last "
                        "connected", hint="if the bastion was rebuilt, check its new key with "
                        "your admins, then remove the old one: ssh-keygen -R HOST; "
                        "otherwise do not connect")
    if found == "unknown-key":
        return SshError(head + f"the host key of {via} is not known",
                        hint=f"connect once by hand (ssh {via}) to check and accept it; "
                        "tunnels run without prompts (BatchMode)")
    if found == "denied":
        return SshError(head + f"{via} refused the key: {last}",
                        hint="load your key (ssh-add), or set IdentityFile for this host in "
                        "~/.ssh/config; check the user in `via`")
    if found == "unreachable":
        return SshError(head + f"cannot reach {via}: {last}",
                        hint="check that the bastion is up and that you are on its network "
                        "(VPN); ssh options: `ssh_options` in devenv.toml")
    if found == "port":
        return PortRaceError(port, last)
    return SshError(head + f"ssh failed: {last}",
                    hint=f"run `ssh -v {via}` to see why; the tunnel log is under "
                    ".devenv/tunnels/")


def target_refused(log_text: str) -> str:
    """ssh's note that the bastion could not open the target (a channel open failure)."""
    found = re.findall(r"open failed: (.+)", log_text)
    return found[-1].strip() if found else ""


def target_hopeless(reason: str, refused_for: float) -> bool:
    """Whether a channel failure is final: a name the bastion cannot resolve, or forwarding
    refused by its admin, is; a refused connection is only after TARGET_GRACE seconds (the
    service may be starting)."""
    if not reason:
        return False
    if "refused" in reason.lower() and "prohibited" not in reason.lower():
        return refused_for >= TARGET_GRACE
    return True
