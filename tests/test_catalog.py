from __future__ import annotations

import pytest

from devenv.config.catalog import split_words
from devenv.config.projectfile import builtin_catalog
from devenv.config.settings import SPECS
from devenv.errors import EXIT_USAGE, SelectionError

CATALOG = builtin_catalog()
SERVICES, ALIASES = CATALOG.services, CATALOG.aliases


def test_catalog_matches_the_port_map():
    ports = {name: (s.container_port, s.dev_port) for name, s in SERVICES.items()}
    assert ports == {
        "api": (7777, 7777), "postgres": (5432, 5432), "redis": (6379, 6379),
        "adminer": (8080, 8080), "prometheus": (9090, 9090), "grafana": (3000, 3000),
    }
    assert SERVICES["grafana"].staging_port == 3100


def test_aliases_resolve():
    assert ALIASES == {"backend": "api", "db": "postgres", "cache": "redis", "admin": "adminer",
                       "metrics": "prometheus", "dashboards": "grafana"}


def test_only_db_cache_is_exactly_two():
    selection = CATALOG.select(["db", "cache"])
    assert selection.services == ("postgres", "redis")
    assert selection.added == ()


def test_dependencies_follow_and_are_reported():
    selection = CATALOG.select(["backend"])
    assert selection.services == ("api", "postgres", "redis")
    assert dict(selection.added) == {"postgres": "api", "redis": "api"}
    assert CATALOG.select(["dashboards"]).services == ("prometheus", "grafana")
    assert CATALOG.select(["admin"]).services == ("postgres", "adminer")


def test_names_are_case_insensitive_and_deduplicated():
    assert CATALOG.select(["DB", "postgres", " db "]).services == ("postgres",)


def test_nothing_selected_means_everything():
    assert CATALOG.select(None).services == tuple(SERVICES)
    assert CATALOG.select(None).everything


def test_split_words_joins_repeated_flags():
    assert split_words(["db,cache", "api"]) == ["db", "cache", "api"]


@pytest.mark.parametrize("words, bad", [(["db", "mysql"], "mysql"), (["db", ""], "")])
def test_unknown_or_empty_name_is_a_usage_error(words, bad):
    with pytest.raises(SelectionError) as info:
        CATALOG.select(words)
    assert info.value.exit_code == EXIT_USAGE
    text = info.value.message + " " + (info.value.hint or "")
    assert "postgres" in text and "db" in text  # the valid names are listed
    if bad:
        assert repr(bad) in info.value.message


def test_every_service_has_port_and_image_settings():
    for name in SERVICES:
        assert f"DEVENV_{name.upper()}_PORT" in SPECS
        assert f"DEVENV_{name.upper()}_IMAGE" in SPECS


def test_urls_mask_and_encode_credentials():
    values = {"DEVENV_POSTGRES_USER": "po st", "DEVENV_POSTGRES_PASSWORD": "p@ss:w/rd",
              "DEVENV_POSTGRES_DB": "db"}
    assert CATALOG.url("postgres", "127.0.0.1", 5433, values) == \
        "postgresql://po%20st:***@127.0.0.1:5433/db"
    assert CATALOG.url("postgres", "127.0.0.1", 5433, values, show_secrets=True) == \
        "postgresql://po%20st:p%40ss%3Aw%2Frd@127.0.0.1:5433/db"
    assert CATALOG.url("redis", "127.0.0.1", 6380, values) == "redis://127.0.0.1:6380"
    assert CATALOG.url("adminer", "127.0.0.1", 8080, values) == \
        "http://127.0.0.1:8080/?pgsql=postgres&username=po%20st&db=db"


def test_no_service_is_named_outside_the_catalog():
    """What is special about a service is declared in devenv/services.toml; the code names
    none (probes.py may name its protocols, which two services happen to share)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "devenv"
    names = set(SERVICES)
    protocols = {"postgres", "redis"}
    #: the data commands (issue 12) are PostgreSQL's and Redis' own tools (pg_dump,
    #: redis-cli, their volumes); until they become declared fields they may name them
    data_tools = {"data/", "cli/data.py"}
    #: probes speak the protocols; a tunnel's `kind` is a protocol too (issue 14: a tunnel
    #: reaches a far PostgreSQL or Redis, not a service of the stack)
    protocol_modules = {"probes.py", "tunnels/", "cli/tunnel.py"}
    found = []
    def within(rel: str, places: set[str]) -> bool:  # a module, or a package ending in /
        return any(rel == place or (place.endswith("/") and rel.startswith(place))
                   for place in places)

    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel in ("config/catalog.py", "config/projectfile.py"):
            continue
        allowed = protocols if within(rel, protocol_modules) else \
            names if within(rel, data_tools) else set()
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            words: list[str] = []
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings:
                text = node.value
                words = [n for n in names if text == n or f"DEVENV_{n.upper()}_" in text
                         or text.startswith(f"{n}/")]  # a template path
            elif isinstance(node, (ast.Name, ast.Attribute, ast.FunctionDef, ast.arg)):
                ident = getattr(node, "id", None) or getattr(node, "attr", None) or \
                    getattr(node, "name", None) or getattr(node, "arg", "")
                parts = ident.lower().strip("_").split("_")
                words = [n for n in names - {"api"} if n in parts]
            found += [f"{rel}:{node.lineno}: {w}" for w in words if w not in allowed]
    assert found == [], "\n".join(found)


def test_the_built_in_catalog_passes_the_checks_a_project_file_gets():
    """The built-in file is trusted at run time (no pattern is matched, for speed); here it
    is read as if it were a project's own, every check applied."""
    from dataclasses import replace

    from devenv.config.catalog import BUILTIN_FILE, Catalog
    from devenv.config.projectfile import check_catalog, parse_service, read_toml

    data = read_toml(BUILTIN_FILE)
    # the HTTPS proxy is the one field a project may not declare (one proxy per stack)
    specs = {name: replace(parse_service("services.toml", name, raw,
                                         builtin="https_proxy" in raw), origin="built-in")
             for name, raw in data["services"].items()}
    assert specs == {**SERVICES, **CATALOG.optional}
    check_catalog(Catalog(specs), "services.toml", list(specs))
