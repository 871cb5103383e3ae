"""A plain-SQL dump on its way to psql (data/plainsql.py): it stays on the database being
imported, leaves out what belongs to the server it came from, and is read as psql reads it
(quotes, dollar quotes, comments and COPY data are never mistaken for statements)."""

from __future__ import annotations

import io
import random

import pytest

from devenv.data import plainsql
from devenv.errors import DataError

#: the head of what `pg_dump --create --clean teamdb` (PostgreSQL 15) writes, as it writes it
CREATE_CLEAN = b"""--
-- PostgreSQL database dump
--

\\restrict aryjxNtaIUj9tNAkfe

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);

DROP DATABASE teamdb;
--
-- Name: teamdb; Type: DATABASE; Schema: -; Owner: postgres
--

CREATE DATABASE teamdb WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'C.UTF-8';


ALTER DATABASE teamdb OWNER TO postgres;

\\unrestrict aryjxNtaIUj9tNAkfe
\\connect teamdb
\\restrict aryjxNtaIUj9tNAkfe

SET statement_timeout = 0;

--
-- Name: DATABASE teamdb; Type: COMMENT; Schema: -; Owner: postgres
--

COMMENT ON DATABASE teamdb IS 'team';

ALTER DATABASE teamdb SET work_mem TO '8MB';
ALTER ROLE app IN DATABASE teamdb SET search_path TO 'x';

\\unrestrict aryjxNtaIUj9tNAkfe
\\connect -reuse-previous=on "dbname='teamdb'"
\\restrict aryjxNtaIUj9tNAkfe

SET default_tablespace = 'fast_disk';

CREATE TABLE public.items (
    n integer NOT NULL
);


ALTER TABLE public.items OWNER TO app_owner;

COPY public.items (n) FROM stdin;
1
2
\\.


GRANT CONNECT ON DATABASE teamdb TO reader;
GRANT SELECT ON TABLE public.items TO reader;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA public GRANT SELECT ON TABLES TO reader;

\\unrestrict aryjxNtaIUj9tNAkfe
"""


def run(script: bytes, chunk: int = 1 << 20) -> tuple[bytes, plainsql.SqlFilter]:
    sql_filter = plainsql.SqlFilter()
    reader = plainsql.FilteredReader(io.BytesIO(script), sql_filter, chunk)
    out = b""
    while data := reader.read(chunk):
        out += data
    return out, sql_filter


def statements(out: bytes) -> list[str]:
    return [line for line in out.decode().splitlines()
            if line.strip() and not line.startswith("--")]


def test_a_create_clean_dump_stays_on_the_database_being_imported():
    out, found = run(CREATE_CLEAN)
    text = out.decode()
    assert found.database == "teamdb"
    for gone in ("DROP DATABASE", "CREATE DATABASE", "\\connect", "OWNER TO", "GRANT",
                 "DEFAULT PRIVILEGES", "fast_disk", "ALTER ROLE"):
        assert gone not in text, gone
    # the database's own comment and settings go to the target, through a psql variable
    assert 'COMMENT ON DATABASE :"devenv_database" IS \'team\';' in text
    assert 'ALTER DATABASE :"devenv_database" SET work_mem TO \'8MB\';' in text
    assert "CREATE TABLE public.items (\n    n integer NOT NULL\n);" in text
    assert "COPY public.items (n) FROM stdin;\n1\n2\n\\.\n" in text
    assert "\\restrict aryjxNtaIUj9tNAkfe" in text and "\\unrestrict" in text
    assert found.left_out("postgres") == [
        "the owner app_owner (everything belongs to postgres here)",
        "3 GRANT/REVOKE statements (privileges of the dump's roles)",
        "tablespace fast_disk (the default tablespace is used)",
        "1 setting of the dump's roles in its database (ALTER ROLE ... IN DATABASE)"]


def test_any_chunking_gives_the_same_script():
    whole, _ = run(CREATE_CLEAN)
    rng = random.Random(7)
    for _ in range(20):
        assert run(CREATE_CLEAN, chunk=rng.randint(1, 40))[0] == whole


@pytest.mark.parametrize("script, words", [
    (b"\\connect a\nCREATE TABLE t (n int);\n\\connect b\nCREATE TABLE u (n int);\n",
     "connects to a second database, b (after a): is it a pg_dumpall file?"),
    (b"CREATE DATABASE a;\nCREATE DATABASE b;\n", "creates a second database, b"),
    (b"DROP DATABASE other;\nCREATE DATABASE mine;\n\\connect mine\n",
     "drops database other, which it does not create"),
    (b"CREATE TABLE t (n int);\nDROP DATABASE IF EXISTS production;\n",
     "drops database production, which it does not create"),
    (b"\\connect mine admin\n", "connects as another user or to another server"),
    (b"\\c \"host=db.example.com dbname=mine\"\n", "another user or to another server"),
    (b"CREATE DATABASE mine;\nALTER DATABASE mine RENAME TO old;\n", "renames database mine"),
    (b"CREATE DATABASE mine;\nCOMMENT ON DATABASE prod IS 'x';\n", "a second database, prod"),
])
def test_a_script_that_would_act_on_another_database_is_refused(script, words):
    with pytest.raises(DataError, match="devenv imports one database") as error:
        run(script)
    assert words in error.value.message
    assert "unchanged" in (error.value.hint or "")


def test_the_dumps_database_is_one_name_however_it_is_written():
    script = (b'CREATE DATABASE "Team ""DB""";\n'
              b'\\connect -reuse-previous=on "dbname=\'Team ""DB""\'"\n'  # as pg_dump writes it
              b"\\connect postgresql:///Team%20%22DB%22\n"
              b'ALTER DATABASE "Team ""DB""" SET timezone TO \'UTC\';\n')
    out, found = run(script)
    assert found.database == 'Team "DB"'
    assert statements(out) == ['ALTER DATABASE :"devenv_database" SET timezone TO \'UTC\';']
    assert run(b"CREATE DATABASE Team;\n\\connect team\n")[1].database == "team"


def test_quotes_comments_and_copy_data_are_never_statements():
    script = b"""CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN
\\connect elsewhere
DROP DATABASE production;
ALTER TABLE t OWNER TO nobody;
END $body$;
INSERT INTO notes VALUES ('it''s; DROP DATABASE x;
\\connect y'), (E'a\\' GRANT x TO y;'), ($$GRANT$$), ("a;b");
/* a comment /* nested; */ GRANT ALL ON t TO x; */ SELECT 1;
-- GRANT ALL ON t TO x;
SELECT $1, a$b$c FROM t; -- $1 and a$b$c are no dollar quotes
INSERT INTO t VALUES (E'x\\'; GRANT ALL ON t TO x; --', 'y');
INSERT INTO t VALUES ('a', 'b'); GRANT ALL ON t TO x; -- two on a line: one is a grant
COPY public.t (line) FROM stdin;
DROP DATABASE production;
\\\\connect elsewhere
GRANT ALL ON t TO x;
\\.
SELECT 2;
"""
    out, found = run(script)
    # nothing in there is about a database, an owner or a grant, but the last grant
    assert out == script.replace(b" GRANT ALL ON t TO x; -- two", b" -- two")
    assert found.database is None and found.grants == 1


def test_ordinary_sql_goes_through_unchanged():
    script = (b"CREATE TABLE items (n int);\nINSERT INTO items VALUES (7);\n"
              b"CREATE ROLE helper;\nSELECT 'no newline at the end'")
    assert run(script)[0] == script


def test_cleans_drops_are_no_error_on_the_fresh_database():
    script = (b"SET statement_timeout = 0;\n"
              b"ALTER TABLE ONLY public.items DROP CONSTRAINT items_pkey;\n"
              b"DROP TABLE public.items;\n"
              b"CREATE TABLE public.items (n int);\n"
              b"DROP TABLE public.items;\n")
    lines = statements(run(script)[0])
    assert lines[1] == ("DO $devenv_do$ BEGIN EXECUTE $devenv_drop$ALTER TABLE ONLY "
                        "public.items DROP CONSTRAINT items_pkey$devenv_drop$; EXCEPTION "
                        "WHEN OTHERS THEN NULL; END $devenv_do$;")
    assert lines[2].startswith("DO $devenv_do$ BEGIN EXECUTE $devenv_drop$DROP TABLE")
    # after the first CREATE, a DROP is the script's own and fails as it would
    assert lines[3:] == ["CREATE TABLE public.items (n int);", "DROP TABLE public.items;"]


def test_scan_reads_to_the_end_before_anything_runs():
    script = CREATE_CLEAN + b"\\connect postgres\nDROP TABLE important;\n"
    with pytest.raises(DataError, match="a second database, postgres"):
        plainsql.scan(io.BytesIO(script), size=64)
