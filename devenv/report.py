"""Pure formatters: tables, JSON and dotenv lines. They return strings and print nothing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import quote

#: versioned JSON schemas; bump the number on an incompatible change
PORTS_SCHEMA = "devenv.ports/1"


@dataclass(frozen=True)
class ServiceRow:
    service: str
    url: str
    host: str
    port: int
    state: str
    container_port: int
    configured_port: int
    seconds_to_ready: float | None = None

    @property
    def moved(self) -> bool:
        return self.port != self.configured_port


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and its URL-encoded form) in `text` with ***."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), secret.replace("$", "$$")}:
            text = text.replace(form, "***")
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
                 [(r.service, r.url, state_text(r)) for r in rows])


def format_rows_json(rows: Sequence[ServiceRow]) -> str:
    items = []
    for row in rows:
        item = {"schema": PORTS_SCHEMA, **asdict(row)}
        item["moved"] = row.moved
        items.append(item)
    return json.dumps(items, indent=2)


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
