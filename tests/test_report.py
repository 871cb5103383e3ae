from __future__ import annotations

import json

from devenv.report import ServiceRow, format_env, format_rows, format_rows_json, mask


def row(**kw):
    base = dict(service="postgres", url="postgresql://postgres:***@127.0.0.1:5433/db",
                host="127.0.0.1", port=5433, state="ready", container_port=5432,
                configured_port=5432, seconds_to_ready=2.41)
    return ServiceRow(**{**base, **kw})


def test_table_shows_moves_and_time():
    text = format_rows([row()])
    assert text.splitlines()[0].split() == ["SERVICE", "URL", "STATE"]
    assert text.splitlines()[1].endswith("ready 2.4s (was 5432)")


def test_json_rows_carry_schema_and_integer_port():
    [item] = json.loads(format_rows_json([row()]))
    assert item["schema"] == "devenv.ports/1"
    assert item["port"] == 5433 and item["moved"] is True
    assert {"service", "url", "host", "port", "state"} <= set(item)


def test_mask_hides_plain_encoded_and_compose_escaped_forms():
    text = "pw=p@ss$1 url=p%40ss%241 yaml=p@ss$$1"
    assert mask(text, ["p@ss$1"]) == "pw=*** url=*** yaml=***"
    assert mask("nothing", ["", "ab"]) == "nothing"


def test_env_lines_are_single_quoted():
    assert format_env({"REDIS_URL": "redis://127.0.0.1:6380"}) == \
        "REDIS_URL='redis://127.0.0.1:6380'\n"
