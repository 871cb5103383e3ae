from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from devenv.config.settings import SPECS
from devenv.report import ServiceRow, format_env, format_rows, format_rows_json, mask

#: the spec's default PostgreSQL password: a common word
DEFAULT = SPECS["DEVENV_POSTGRES_PASSWORD"].default


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


def test_the_default_password_is_the_word_password():
    assert DEFAULT == "password"


@pytest.mark.parametrize("line", [
    'FATAL:  password authentication failed for user "postgres"',
    "2026-11-26 17:00:00 UTC [42] FATAL:  password authentication failed for user \"app\"",
    "DETAIL:  Connection matched pg_hba.conf line 100: \"host all all all scram-sha-256\"",
    "HINT: check the password, then try again",
    "password_encryption is scram-sha-256",
    "passwords are hashed",
])
def test_the_word_password_in_prose_is_left_alone(line):
    assert mask(line, [DEFAULT]) == line


@pytest.mark.parametrize("text, masked", [
    ("postgresql://postgres:password@db/x", "postgresql://postgres:***@db/x"),
    ("redis://:password@cache:6379/0", "redis://:***@cache:6379/0"),
    ("POSTGRES_PASSWORD=password", "POSTGRES_PASSWORD=***"),
    ("-e POSTGRES_PASSWORD=password -e X=1", "-e POSTGRES_PASSWORD=*** -e X=1"),
    ('  POSTGRES_PASSWORD: "password"', '  POSTGRES_PASSWORD: "***"'),
    ("password: password", "password: ***"),
    ('{"password": "password", "x": 1}', '{"password": "***", "x": 1}'),
    ("ALTER USER app WITH PASSWORD 'password';", "ALTER USER app WITH PASSWORD '***';"),
    ("the password is password.", "the password is ***."),
    ("GF_SECURITY_ADMIN_PASSWORD=password", "GF_SECURITY_ADMIN_PASSWORD=***"),
])
def test_the_default_password_is_masked_where_it_is_a_value(text, masked):
    assert mask(text, [DEFAULT]) == masked


def test_a_generated_secret_is_masked_wherever_it_appears():
    secret = "Zq3-x_9LkP0aQ2rT5vW8"
    assert mask(f"token {secret} in prose, and{secret}glued", [secret]) == \
        "token *** in prose, and***glued"


secrets = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=3, max_size=24)


@given(secret=secrets, user=st.from_regex(r"[a-z]{1,8}", fullmatch=True))
def test_any_secret_is_masked_in_a_url_and_an_assignment(secret, user):
    assume("@" not in secret and "***" not in secret)
    url = f"postgresql://{user}:{quote(secret, safe='')}@db:5432/x"
    assert mask(url, [secret]) == f"postgresql://{user}:***@db:5432/x"
    assert mask(f"KEY={secret}\n", [secret]) == "KEY=***\n"
    assert mask(f'KEY="{secret}"', [secret]).startswith('KEY="***')


PROSE = ["password", "authentication", "failed", "for", "user", "the", "connection",
         "received", "LOG:", "FATAL:", "DETAIL:", "reset", "by", "peer", "(", ")", "postgres"]


@given(st.lists(st.sampled_from(PROSE), min_size=1, max_size=12))
def test_prose_made_of_common_words_is_never_changed(words):
    line = " ".join(words)
    # the two value positions prose can reach: a credential word right before the
    # secret, and `LABEL: password` ending the line
    assume("password password" not in line)
    assume(not (len(words) >= 2 and words[-1] == "password" and words[-2].endswith(":")))
    assert mask(line, [DEFAULT]) == line


def test_a_megabyte_line_without_blanks_is_masked_without_blowing_up():
    """The default password is masked only where it is a value, which a pattern would find
    by trying the key before it (`[\\w.-]+=`) from every position of a long run of word
    characters: quadratic, hours for one base64 blob. The masking runs in a child with a
    generous limit (it takes milliseconds), so that a blow-up fails here instead of hanging
    the suite."""
    import subprocess
    import sys

    script = (
        "import base64, hashlib\n"
        "from devenv.report import mask\n"
        "blob = base64.b64encode(b''.join(hashlib.sha256(str(i).encode()).digest()\n"
        "                                 for i in range(24576))).decode()\n"
        "blob = blob.replace('+', 'a').replace('/', 'b')\n"
        "line = '{\"password\":\"password\",\"blob\":\"' + blob + '\",\"k\":\"password\"}'\n"
        "assert len(line) > 1 << 20\n"
        "out = mask(line, ['password'])\n"
        "assert out == line.replace(':\"password\"', ':\"***\"'), out[:80]\n"
        "words = mask('password' * 131072, ['password'])\n"
        "assert words == 'password' * 131072\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_masking_bench_runs_and_compares_the_same_output():
    """bench/mask.py works (not its numbers): it checks that the mask it times masks the
    two values, and that the old regex it compares with masks as the mask does."""
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench" / "mask.py"
    done = subprocess.run([sys.executable, str(bench), "--runs", "1", "--before-sizes",
                           "512,1024", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["line_bytes"] == 1 << 20 and set(result["before_s"]) == {"512", "1024"}
    assert result["after_ms"] > 0 and result["before_1m_s"] > 0
