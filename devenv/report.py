"""Pure formatters: tables, JSON and dotenv lines. They return strings and print nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from .rows import Check, ConfigRow, PlanRow, ServiceRow, StatusRow

#: versioned JSON schemas; bump the number on an incompatible change
PORTS_SCHEMA = "devenv.ports/1"


#: a secret made of letters (and single hyphens, apostrophes or spaces) could be a word of
#: prose, like the spec's default `password`: it is masked only where it is a value
_WORDLIKE = re.compile(r"[A-Za-z]+(?:[-' ][A-Za-z]+)*")

# Where a word-like secret stands as a value. Each kind is a pattern of what comes before
# the secret, written backwards and matched on the reversed text at the secret's start,
# and a pattern of what follows it, matched at its end. Both are anchored, so a line is
# searched only where the secret occurs: a regular expression with the key (`[\w.-]+=`)
# in front of the secret would be tried from every position of a long run of word
# characters (a base64 blob, a JSON body), quadratic in its length.
#
#     url     scheme://user:SECRET@
#     assign  key=SECRET, key="SECRET"
#     colon   key: SECRET as the whole value (to the end of the line, or a , or } after it)
#     word    PASSWORD 'SECRET', password is SECRET (after a credential word)
#     quote   "SECRET", not a "key":
#
#: where a value ends: whitespace, a quote, a delimiter, a full stop, the end of the line
_VALUE_END = re.compile(r"$|[\s\"'`,;&)}\]>]|\.(?:\s|$)", re.MULTILINE)
#: the credential words (password, passwd, pwd, pass, secret, token, api key), reversed
_CREDENTIAL_WORD_REVERSED = r"(?i:\b(?:drowssap|dwssap|dwp|ssap|terces|nekot|yek[_-]?ipa)\b)"
_VALUE_KINDS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(before), re.compile(after, re.MULTILINE)) for before, after in (
        (r":[^\s/@:]*//:", r"@"),
        (r"[\"']?\s*=\s*[\w.-]", _VALUE_END.pattern),
        (r"[\"']?[ \t]*:[ \t]*[\"']?[\w.-]", r"[\"']?[ \t]*(?:$|[,}])"),
        (r"[\"'`]?(?:[ \t]*[:=][ \t]*|[ \t]+(?:si[ \t]+)?)[\"']?"
         + _CREDENTIAL_WORD_REVERSED, _VALUE_END.pattern),
    ))
_QUOTES = "\"'`"
_KEY_AFTER = re.compile(r"[ \t]*:")


def _stands_as_value(text: str, reversed_text: str, start: int, end: int) -> bool:
    """Whether text[start:end] stands where a value does (see _VALUE_KINDS)."""
    back = len(text) - start
    for before, after in _VALUE_KINDS:
        if before.match(reversed_text, back) and after.match(text, end):
            return True
    # "SECRET" quoted exactly, and not a "key": of a mapping
    return (start > 0 and text[start - 1] in _QUOTES and text[end:end + 1] == text[start - 1]
            and not _KEY_AFTER.match(text, end + 1))


def _mask_values(text: str, form: str) -> str:
    """Every occurrence of `form` that stands as a value, replaced with ***. Linear in the
    length of the text: each occurrence is judged by anchored matches around it."""
    found = text.find(form)
    if found < 0:
        return text
    reversed_text = text[::-1]
    pieces, kept = [], 0
    while found >= 0:
        end = found + len(form)
        if _stands_as_value(text, reversed_text, found, end):
            pieces += (text[kept:found], "***")
            kept = end
            found = text.find(form, end)
        else:
            found = text.find(form, found + 1)
    return "".join(pieces) + text[kept:] if pieces else text


def mask(text: str, secrets: Iterable[str], cut: bool = False) -> str:
    """Replace each secret (plain, URL-encoded, `$$`-escaped for Compose) with ***.

    A secret that could be a word of prose (`password`) is replaced only where it stands as
    a value: in a URL's user part, after `key=` or `key:`, after a credential word, or
    quoted exactly; so `FATAL:  password authentication failed` stays readable. Any other
    secret (a generated one, anything with digits or symbols) is replaced wherever it is.
    `cut`: the text is the head of a longer line, so a secret may have been cut in two at
    its end; the beginning of one there is replaced too.
    Linear in the length of the text, whatever it holds (bench/mask.py)."""
    forms: list[str] = []
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        anywhere = len(secret) >= 8 and not _WORDLIKE.fullmatch(secret)
        for form in sorted({secret, quote(secret, safe=""), secret.replace("$", "$$")},
                           key=len, reverse=True):
            text = text.replace(form, "***") if anywhere else _mask_values(text, form)
            forms.append(form)
    if cut:
        begun = max((k for form in forms for k in range(1, len(form))
                     if text.endswith(form[:k])), default=0)
        if begun:
            text = text[:-begun] + "***"
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                         strict=False)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def state_text(row: ServiceRow) -> str:
    words = [row.state]
    if row.seconds_to_ready is not None:
        words.append(f"{row.seconds_to_ready:.1f}s")
    if row.moved:
        words.append(f"(was {row.configured_port})")
    return " ".join(words)


def format_rows(rows: Sequence[ServiceRow]) -> str:
    return table(("SERVICE", "URL", "STATE"),
                 [(r.service, r.url if r.running else "-", state_text(r)) for r in rows])


def format_rows_json(rows: Sequence[ServiceRow], tunnels: Sequence[Any] = ()) -> str:
    items = []
    for row in rows:
        item = {"schema": PORTS_SCHEMA, **asdict(row)}
        item["moved"] = row.moved
        items.append(item)
    return json.dumps(items + tunnel_service_items(tunnels, PORTS_SCHEMA), indent=2)


def format_env(values: Mapping[str, str]) -> str:
    """dotenv lines, single-quoted so both dotenv parsers and `source` in a shell read them.

    The values are URLs whose user parts are percent-encoded, so they hold no quote.
    """
    lines = []
    for key, value in values.items():
        if "'" in value:
            raise ValueError(f"{key} holds a quote; URLs must be percent-encoded")
        lines.append(f"{key}='{value}'")
    return "\n".join(lines) + ("\n" if lines else "")


STATUS_SCHEMA = "devenv.status/1"
DOCTOR_SCHEMA = "devenv.doctor/1"
CONFIG_SCHEMA = "devenv.config/1"
PLAN_SCHEMA = "devenv.plan/1"


def duration(seconds: float | None) -> str:
    """12s, 5m03s, 2h07m, 3d04h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_status(rows: Sequence[StatusRow]) -> str:
    return table(("SERVICE", "STATE", "HEALTH", "URL", "UPTIME", "RESTARTS"),
                 [(r.service, r.state if r.exit_code is None else f"{r.state} ({r.exit_code})",
                   r.health, r.url or "-", duration(r.uptime_seconds), str(r.restarts))
                  for r in rows])


def format_status_json(rows: Sequence[StatusRow], tunnels: Sequence[Any] = ()) -> str:
    return json.dumps([{"schema": STATUS_SCHEMA, **asdict(r)} for r in rows]
                      + tunnel_service_items(tunnels, STATUS_SCHEMA), indent=2)


def format_checks(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<24} {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"      {'':<24} fix: {c.fix}")
    return "\n".join(lines)


def format_checks_json(checks: Sequence[Check]) -> str:
    return json.dumps({"schema": DOCTOR_SCHEMA,
                       "ok": not any(c.status == "fail" for c in checks),
                       "checks": [asdict(c) for c in checks]}, indent=2)


def format_config(rows: Sequence[ConfigRow]) -> str:
    return table(("SETTING", "VALUE", "FROM"), [(k, v if v else "''", src) for k, v, src in rows])


def format_config_json(rows: Sequence[ConfigRow]) -> str:
    return json.dumps({"schema": CONFIG_SCHEMA,
                       "settings": [{"key": k, "value": v, "source": s} for k, v, s in rows]},
                      indent=2)


def format_plan(rows: Sequence[PlanRow]) -> str:
    def port(value: Any) -> str:
        return "N/A" if value is None else str(value)

    body = [(r["service"], r["title"], port(r["dev"]), port(r["staging"]), port(r["prod"]),
             port(r["here"]), r["note"]) for r in rows]
    return table(("SERVICE", "WHAT", "DEV", "STAGING", "PROD", "HERE", "NOTE"), body)


TUNNELS_SCHEMA = "devenv.tunnels/1"


def _tunnel_state(row: Any) -> str:
    words = [row.state]
    if row.port and row.port != row.configured_port:
        words.append(f"(was {row.configured_port})")
    if row.restarts:
        words.append(f"[{row.restarts} reconnect{'s' if row.restarts > 1 else ''}]")
    return " ".join([*words, *_drift_words(row)])


def _drift_words(row: Any) -> list[str]:
    """A running tunnel that is not what devenv.toml declares now says so."""
    if not row.declared:
        return ["[not declared]"]
    return [f"[devenv.toml changed: {row.changed}]"] if row.changed else []


def format_tunnels(rows: Sequence[Any]) -> str:
    """TUNNEL / URL / STATE / VIA -> TARGET; production tunnels carry a PROD tag."""
    return table(("TUNNEL", "URL", "STATE", "VIA -> TARGET"),
                 [(r.label, r.url or "-", _tunnel_state(r), f"{r.via} -> {r.target}")
                  for r in rows])


def format_tunnel_status(rows: Sequence[Any]) -> str:
    return table(("TUNNEL", "STATE", "URL", "UPTIME", "RECONNECTS"),
                 [(r.label, " ".join([r.state, *_drift_words(r)]), r.url or "-",
                   duration(r.uptime_seconds),
                   str(r.restarts)) for r in rows])


def tunnel_items(rows: Sequence[Any], schema: str = TUNNELS_SCHEMA) -> list[dict[str, Any]]:
    return [{"schema": schema, **asdict(r), "tags": ["PROD"] if r.production else []}
            for r in rows]


def format_tunnels_json(rows: Sequence[Any]) -> str:
    return json.dumps(tunnel_items(rows), indent=2)


def tunnel_service_items(rows: Sequence[Any], schema: str) -> list[dict[str, Any]]:
    """Tunnels in the `ports`/`status` JSON lists: `service` is "tunnel:NAME", the tunnel's
    own fields sit under `tunnel`."""
    return [{"schema": schema, "service": f"tunnel:{r.name}", "url": r.url,
             "host": "127.0.0.1", "port": r.port, "state": r.state,
             "production": r.production, "tags": ["PROD"] if r.production else [],
             "tunnel": asdict(r)} for r in rows]
