"""A plain-SQL dump on its way to psql: it loads into the one database devenv imports into.

psql obeys what a script says about databases: `pg_dump --create --clean` writes
`DROP DATABASE x`, `CREATE DATABASE x` and `\\connect x`, so fed as it is, the dump would drop
and refill a database beside the one being imported (and a pg_dumpall file would touch every
database of the server). SqlFilter reads the script statement by statement (quotes, dollar
quotes, comments and COPY data skipped over, as psql reads them) and:

- leaves out the statements about the dump's own database as a whole (its DROP, CREATE, owner
  and options, and the `\\connect` to it): the import target is that database; its settings
  and comment (`ALTER DATABASE x SET`, `COMMENT ON DATABASE x`) are applied to the target;
- refuses (DataError) a script that drops, creates or connects to any other database, or
  connects as another user or to another server;
- leaves out what only makes sense on the server the dump came from, as pg_restore's
  --no-owner --no-privileges --no-tablespaces do: owners, GRANT/REVOKE, default privileges,
  session authorization, tablespaces, its roles' settings in the database. `left_out()`
  says what was left out;
- runs `--clean`'s leading DROPs so that an object missing from the fresh database is no
  error (the import always starts from an empty database).

Pure: bytes in, bytes out, nothing here talks to Docker.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from ..errors import DataError

#: the psql variable that names the import's target database
TARGET_VAR = "devenv_database"
_TARGET = b':"' + TARGET_VAR.encode() + b'"'

_IDENT = rb'(?:"(?:[^"]|"")+"|[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)'
_WS = rb"\s+"


def _rx(pattern: bytes) -> re.Pattern[bytes]:
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


_DROP_DB = _rx(rb"DROP\s+DATABASE\s+(?:IF\s+EXISTS\s+)?(?P<name>" + _IDENT + rb")")
_CREATE_DB = _rx(rb"CREATE\s+DATABASE\s+(?P<name>" + _IDENT + rb")")
_ALTER_DB = _rx(rb"ALTER\s+DATABASE\s+(?P<name>" + _IDENT + rb")\s+(?P<rest>\S+)")
_ROLE_IN_DB = _rx(rb"ALTER\s+ROLE\s+" + _IDENT + rb"\s+IN\s+DATABASE\s+(?P<name>" + _IDENT
                  + rb")")
_COMMENT_DB = _rx(rb"COMMENT\s+ON\s+DATABASE\s+(?P<name>" + _IDENT + rb")\s+IS\b")
_LABEL = _rx(rb"SECURITY\s+LABEL\b")
_GRANT = _rx(rb"(?:GRANT|REVOKE)\b")
_DEFAULT_ACL = _rx(rb"ALTER\s+DEFAULT\s+PRIVILEGES\b")
_OWNER = _rx(rb"ALTER\s.*\sOWNER\s+TO\s+(?P<role>" + _IDENT + rb")\s*;\s*$")
_SESSION = _rx(rb"(?:SET|RESET)\s+(?:SESSION\s+AUTHORIZATION|ROLE)\b")
_TABLESPACE = _rx(rb"SET\s+default_tablespace\s*(?:=|TO)\s*'(?P<name>(?:[^']|'')+)'\s*;")
_COPY_STDIN = _rx(rb"COPY\s.*\sFROM\s+stdin\b")
_PREAMBLE = _rx(rb"(?:SET\s|SELECT\s+pg_catalog\.set_config\s*\()")
_CLEAN = _rx(rb"(?:DROP\s|ALTER\s+(?:TABLE|FOREIGN\s+TABLE|DOMAIN|TYPE)\s.*\sDROP\s)")
_DB_NAMED = _rx(rb"(?P<head>\bDATABASE\s+)" + _IDENT)
_DOLLAR = re.compile(rb"\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")
_NORMAL_SPECIAL = re.compile(rb"""[;'"$]|--|/\*""")
_IDENT_CHAR = re.compile(rb"[A-Za-z0-9_\x80-\xff]")
_EQUOTE_SPECIAL = re.compile(rb"['\\]")
#: a line that is one whole statement with nothing to track beyond plain '...' strings (an
#: INSERT of `pg_dump --inserts`): read in one step
_SIMPLE_LINE = re.compile(rb"(?:[^;'\"$\-/\\\n]++|-(?!-)|/(?!\*)|'[^']*+')*+;[ \t\r]*\n\Z")
_ESCAPE_STRING = re.compile(rb"(?<![A-Za-z0-9_\x80-\xff])[Ee]'")
_FIRST_WORD = re.compile(rb"[A-Za-z]+")
#: the first words of the statements _decide looks into; any other statement goes through
_WATCHED = frozenset({b"DROP", b"CREATE", b"ALTER", b"COMMENT", b"GRANT", b"REVOKE", b"SET",
                      b"RESET", b"SECURITY", b"COPY", b"SELECT"})
_BLOCK_SPECIAL = re.compile(rb"/\*|\*/")


def _name(token: bytes) -> str:
    """An SQL identifier as PostgreSQL reads it: quoted as written, else lower case."""
    text = token.decode("utf-8", "replace")
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def _skip_comments(statement: bytes) -> bytes:
    """The statement without the whitespace and comments before its first word."""
    if statement[:1] not in b" \t\r\n\f\v-/":
        return statement
    i, n = 0, len(statement)
    while i < n:
        if statement[i:i + 1].isspace():
            i += 1
        elif statement.startswith(b"--", i):
            end = statement.find(b"\n", i)
            i = n if end < 0 else end + 1
        elif statement.startswith(b"/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if statement.startswith(b"/*", i):
                    depth, i = depth + 1, i + 2
                elif statement.startswith(b"*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    return statement[i:]


class SqlFilter:
    """Feed a plain-SQL script in chunks; what comes out is what psql should run."""

    def __init__(self) -> None:
        self._buf = b""
        self._stmt = bytearray()  # the statement read so far (with what precedes it)
        self._code = False  # the statement has begun (more than whitespace and comments)
        self._state = "normal"  # normal | quote | equote | ident | dollar | block
        self._tag = b""  # the dollar quote's tag
        self._depth = 0  # nesting of block comments
        self._copy = False  # inside COPY ... FROM stdin data
        self._clean = True  # still in the DROPs that --clean writes before everything
        #: the dump's own database (what it creates or connects to), once named
        self.database: str | None = None
        self._dropped: list[str] = []
        self.owners: set[str] = set()
        self.grants = 0
        self.tablespaces: set[str] = set()
        self.database_options: list[str] = []
        self.session_roles = 0
        self.labels = 0
        self.role_settings = 0

    # --- what was left out ------------------------------------------------------------
    def left_out(self, user: str) -> list[str]:
        """What the import leaves out, in words (empty: nothing)."""
        out = []
        owners = sorted(self.owners - {user})
        if owners:
            out.append(f"the owner{'s' * (len(owners) > 1)} {', '.join(owners)} (everything "
                       f"belongs to {user} here)")
        if self.session_roles:
            out.append("SET ROLE / SESSION AUTHORIZATION (everything is created as "
                       f"{user})")
        if self.grants:
            out.append(f"{self.grants} GRANT/REVOKE statement{'s' * (self.grants > 1)} "
                       "(privileges of the dump's roles)")
        if self.tablespaces:
            out.append(f"tablespace {', '.join(sorted(self.tablespaces))} (the default "
                       "tablespace is used)")
        if self.labels:
            out.append(f"{self.labels} security label{'s' * (self.labels > 1)}")
        if self.role_settings:
            out.append(f"{self.role_settings} setting{'s' * (self.role_settings > 1)} of the "
                       "dump's roles in its database (ALTER ROLE ... IN DATABASE)")
        if self.database_options:
            out.append("the database's own options ("
                       f"{', '.join(sorted(set(self.database_options)))})")
        return out

    # --- the stream ---------------------------------------------------------------------
    def feed(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk if self._buf else chunk
        out = bytearray()
        pos, n = 0, len(buf)
        while pos < n:
            if self._copy:
                end = self._copy_data(buf, pos, out)
                if end is None:
                    break
                pos = end
                continue
            newline = buf.find(b"\n", pos)
            if newline < 0:
                break
            self._line(buf[pos:newline + 1], out)
            pos = newline + 1
        self._buf = buf[pos:]
        return bytes(out)

    def close(self) -> bytes:
        """The end of the script: what is left (a last line without a newline)."""
        out = bytearray()
        rest, self._buf = self._buf, b""
        if rest and not self._copy:
            self._line(rest, out)
        elif rest:
            out += rest
        if self._stmt:
            if self._code and self._state == "normal":
                self._decide(bytes(self._stmt), out)  # a last statement without `;`
            else:
                out += self._stmt
            self._stmt.clear()
        if self._dropped and self.database is None:
            self._refuse_drop(self._dropped[0])
        return bytes(out)

    def _copy_data(self, buf: bytes, pos: int, out: bytearray) -> int | None:
        """Pass COPY data through up to its `\\.` line (at a line start at `pos`); where to
        go on, None when more input is needed."""
        for end in (b"\\.\n", b"\\.\r\n"):
            if buf.startswith(end, pos):
                out += end
                self._copy = False
                return pos + len(end)
        found = [i for i in (buf.find(b"\n\\.\n", pos), buf.find(b"\n\\.\r\n", pos))
                 if i >= 0]
        cut = min(found) + 1 if found else buf.rfind(b"\n", pos) + 1
        if cut <= pos:
            return None
        out += buf[pos:cut]
        return cut

    def _line(self, line: bytes, out: bytearray) -> None:
        if self._state == "normal" and not self._code:
            if line.lstrip().startswith(b"\\"):
                self._meta(line, out)
                return
            if _SIMPLE_LINE.match(line) and not ((b"E'" in line or b"e'" in line)
                                                 and _ESCAPE_STRING.search(line)):
                end = line.rindex(b";") + 1
                if self._decide(line[:end], out):
                    self._copy = True
                out += line[end:]
                return
        i, n, start = 0, len(line), 0
        while i < n:
            state = self._state
            if state == "normal":
                match = _NORMAL_SPECIAL.search(line, i)
                stop = match.start() if match else n
                if not self._code and line[i:stop].strip():
                    self._code = True
                if match is None:
                    break
                i, token = match.start(), match.group()
                if token == b"--":  # a comment to the end of the line
                    break
                if token == b"/*":
                    self._state, self._depth, i = "block", 1, i + 2
                    continue
                self._code = True
                if token == b";":
                    self._stmt += line[start:i + 1]
                    start = i = i + 1
                    statement = bytes(self._stmt)
                    self._stmt.clear()
                    self._code = False
                    if self._decide(statement, out):  # COPY data starts on the next line
                        out += line[start:]
                        self._copy = True
                        return
                elif token == b"'":
                    escaped = i > 0 and line[i - 1:i] in (b"e", b"E") and not (
                        i > 1 and _IDENT_CHAR.match(line, i - 2))
                    self._state, i = ("equote" if escaped else "quote"), i + 1
                elif token == b'"':
                    self._state, i = "ident", i + 1
                else:  # $: a dollar quote, or a parameter ($1) or part of a name (a$b)
                    dollar = _DOLLAR.match(line, i)
                    if dollar and not (i > 0 and _IDENT_CHAR.match(line, i - 1)):
                        self._state, self._tag, i = "dollar", dollar.group(), dollar.end()
                    else:
                        i += 1
            elif state in ("quote", "ident"):
                mark = b"'" if state == "quote" else b'"'
                end = line.find(mark, i)
                if end < 0:
                    break
                if line.startswith(mark * 2, end):
                    i = end + 2
                else:
                    self._state, i = "normal", end + 1
            elif state == "equote":
                match = _EQUOTE_SPECIAL.search(line, i)
                if match is None:
                    break
                if match.group() == b"\\" or line.startswith(b"''", match.start()):
                    i = match.start() + 2
                else:
                    self._state, i = "normal", match.start() + 1
            elif state == "dollar":
                end = line.find(self._tag, i)
                if end < 0:
                    break
                self._state, i = "normal", end + len(self._tag)
            else:  # a block comment, nested as PostgreSQL nests them
                match = _BLOCK_SPECIAL.search(line, i)
                if match is None:
                    break
                self._depth += 1 if match.group() == b"/*" else -1
                i = match.end()
                if self._depth == 0:
                    self._state = "normal"
        self._stmt += line[start:]
        if not self._code:  # only whitespace and comments so far: nothing to decide
            out += self._stmt
            self._stmt.clear()

    # --- decisions ----------------------------------------------------------------------
    def _refuse(self, what: str) -> DataError:
        return DataError(f"the dump {what}; devenv imports one database and changes no other",
                         hint="export just the database (`pg_dump -Fc DBNAME`, or a plain "
                         "pg_dump of it); the current data is unchanged")

    def _refuse_drop(self, name: str) -> None:
        raise self._refuse(f"drops database {name}, which it does not create")

    def _own(self, name: str, what: str) -> None:
        """`name` must be the dump's database (the first one named becomes it)."""
        if self.database is None:
            self.database = name
            for dropped in self._dropped:
                if dropped != name:
                    self._refuse_drop(dropped)
        elif name != self.database:
            raise self._refuse(f"{what} a second database, {name} (after {self.database}): "
                               "is it a pg_dumpall file?")

    def _decide(self, statement: bytes, out: bytearray) -> bool:
        """Write what psql runs for one whole statement; True when COPY data follows."""
        code = _skip_comments(statement)
        word = _FIRST_WORD.match(code)
        if word is None or word.group().upper() not in _WATCHED:
            self._clean = False
            out += statement
            return False
        if self._clean and not (_PREAMBLE.match(code) or _CLEAN.match(code)):
            self._clean = False
        if _LABEL.match(code):
            self.labels += 1
            return False
        match = _DROP_DB.match(code)
        if match:
            name = _name(match["name"])
            if self.database is not None and name != self.database:
                self._refuse_drop(name)
            self._dropped.append(name)
            return False
        match = _CREATE_DB.match(code)
        if match:
            self._own(_name(match["name"]), "creates")
            return False  # the target database is there already
        match = _ALTER_DB.match(code)
        if match:
            self._own(_name(match["name"]), "changes")
            rest = match["rest"].upper()
            if rest in (b"SET", b"RESET"):
                out += self._retarget(statement)
            elif rest == b"OWNER":
                owner = _OWNER.match(code)
                if owner:
                    self.owners.add(_name(owner["role"]))
            elif rest == b"RENAME":
                raise self._refuse(f"renames database {self.database}")
            else:
                self.database_options.append(rest.decode("ascii", "replace").rstrip(";"))
            return False
        match = _ROLE_IN_DB.match(code)
        if match:  # roles are the server's: like their grants, not imported
            self._own(_name(match["name"]), "changes")
            self.role_settings += 1
            return False
        match = _COMMENT_DB.match(code)
        if match:
            self._own(_name(match["name"]), "comments on")
            out += self._retarget(statement)
            return False
        if _GRANT.match(code) or _DEFAULT_ACL.match(code):
            self.grants += 1
            return False
        match = _OWNER.match(code)
        if match:
            self.owners.add(_name(match["role"]))
            return False
        if _SESSION.match(code):
            self.session_roles += 1
            return False
        match = _TABLESPACE.match(code)
        if match:
            self.tablespaces.add(match["name"].decode("utf-8", "replace").replace("''", "'"))
            return False
        if self._clean and _CLEAN.match(code):
            out += self._forgiving(statement, code)
            return False
        out += statement
        return bool(_COPY_STDIN.match(code))

    def _retarget(self, statement: bytes) -> bytes:
        """The statement about the dump's database, about the import's target instead."""
        return _DB_NAMED.sub(lambda m: m["head"] + _TARGET, statement, count=1)

    def _forgiving(self, statement: bytes, code: bytes) -> bytes:
        """A DROP of --clean's, run so that an object missing from the fresh database (they
        all are) is no error."""
        body = code.rstrip().rstrip(b";")
        outer, inner = _unused_tag(b"devenv_do", body), _unused_tag(b"devenv_drop", body)
        head = statement[: len(statement) - len(code)]
        return (head + b"DO " + outer + b" BEGIN EXECUTE " + inner + body + inner
                + b"; EXCEPTION WHEN OTHERS THEN NULL; END " + outer + b";")

    def _meta(self, line: bytes, out: bytearray) -> None:
        """A psql meta-command line at a statement's start."""
        text = line.strip().decode("utf-8", "replace")
        command, _, args = text.partition(" ")
        if command not in ("\\c", "\\connect"):
            out += line  # \restrict, \unrestrict, \set ...: psql's business
            return
        words = _meta_args(args)
        if words and words[0].startswith("-reuse-previous"):
            words = words[1:]
        dbname, others = (words[0] if words else "-"), words[1:]
        if "=" in dbname or dbname.startswith(("postgres://", "postgresql://")):
            fields = _conninfo(dbname)
            others += [f"{k}={v}" for k, v in fields.items() if k != "dbname"]
            dbname = fields.get("dbname", "-")
        if any(word != "-" for word in others):
            raise self._refuse(f"connects as another user or to another server ({text})")
        if dbname != "-":
            self._own(dbname, "connects to")
        # the connection stays on the import's target database


def _unused_tag(name: bytes, text: bytes) -> bytes:
    """A dollar-quote tag that `text` does not contain."""
    tag, n = b"$" + name + b"$", 0
    while tag in text:
        n += 1
        tag = b"$%s_%d$" % (name, n)
    return tag


def _meta_args(args: str) -> list[str]:
    """psql's meta-command arguments: words, double quotes keep spaces ("" is a quote)."""
    words: list[str] = []
    for match in re.finditer(r'"((?:[^"]|"")*)"|(\S+)', args):
        words.append(match[1].replace('""', '"') if match[1] is not None else match[2])
    return words


def _conninfo(text: str) -> dict[str, str]:
    """key=value pairs of a libpq connection string (values may be single-quoted)."""
    if text.startswith(("postgres://", "postgresql://")):
        from urllib.parse import unquote, urlsplit

        url = urlsplit(text)
        fields = {"dbname": unquote(url.path.lstrip("/"))} if url.path.strip("/") else {}
        if url.hostname:
            fields["host"] = url.hostname
        if url.username:
            fields["user"] = unquote(url.username)
        return fields
    fields = {}
    for match in re.finditer(r"(\w+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))", text):
        value = match[2] if match[2] is not None else match[3]
        fields[match[1]] = re.sub(r"\\(.)", r"\1", value)
    return fields


class FilteredReader:
    """A binary file that reads a plain-SQL file through a SqlFilter (what _stream feeds
    to psql); errors of the filter (a refusal) come out of read()."""

    def __init__(self, raw: BinaryIO, sql_filter: SqlFilter, size: int = 1 << 20) -> None:
        self._raw, self._filter, self._size = raw, sql_filter, size
        self._pending = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        want = self._size if size is None or size < 0 else size
        while len(self._pending) < want and not self._done:
            chunk = self._raw.read(self._size)
            if chunk:
                self._pending += self._filter.feed(chunk)
            else:
                self._pending += self._filter.close()
                self._done = True
        data, self._pending = self._pending[:want], self._pending[want:]
        return data


def scan(raw: BinaryIO, size: int = 1 << 20) -> SqlFilter:
    """Read a whole plain-SQL file through a SqlFilter, output thrown away: its findings,
    or its refusal before anything is changed."""
    sql_filter = SqlFilter()
    reader = FilteredReader(raw, sql_filter, size)
    while reader.read(size):
        pass
    return sql_filter
