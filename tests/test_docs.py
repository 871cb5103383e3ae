"""The docs stay true: README, docs/ and .env.example against the code."""

from __future__ import annotations

import re
from pathlib import Path

from devenv.cli.main import cli
from devenv.config.settings import SETTINGS
from devenv.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
COMMANDS = (DOCS / "commands.md").read_text()
SETTINGS_PAGE = (DOCS / "settings.md").read_text()
EXAMPLE = (ROOT / ".env.example").read_text()

README_MAX_LINES = 250
# A markdown link's target: `](path)` or `](path#anchor)`; the target has no spaces.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_command_is_in_the_readme_table_and_in_docs_commands():
    for name in cli.commands:
        assert f"`devenv {name}`" in README, f"README.md: {name}"
        assert f"`devenv {name}`" in COMMANDS, f"docs/commands.md: {name}"


def test_every_command_help_has_a_summary_and_an_example():
    for name, command in cli.commands.items():
        assert command.get_short_help_str(), name
        assert "Example:" in (command.help or ""), name


def test_env_example_lists_every_setting_with_its_default():
    found = dict(re.findall(r"^#?(DEVENV_[A-Z_]+)=(.*)$", EXAMPLE, re.M))
    assert found == {spec.key: spec.default for spec in SETTINGS}


def test_every_setting_is_documented_in_docs_settings():
    for spec in SETTINGS:
        assert f"`{spec.key}`" in SETTINGS_PAGE, spec.key


def test_exit_codes_table_matches_the_code():
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", COMMANDS, re.M))
    assert {int(code): text for code, text in rows.items()} == EXIT_CODES


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in README and "bash scripts/test.sh" in ci


def test_readme_is_short_and_keeps_the_two_set_up_commands():
    lines = len(README.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"
    assert "pip install . && devenv up" in README
    assert "bash scripts/test.sh" in README


def _relative_links(page: Path) -> list[tuple[str, Path]]:
    """(link as written, the file it points at) for each link that is not a URL."""
    links = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto:; an anchor on the same page
        path = target.split("#", 1)[0]
        links.append((target, (page.parent / path).resolve()))
    return links


def test_every_docs_page_is_linked_from_the_readme():
    linked = {path for _, path in _relative_links(ROOT / "README.md")}
    for page in sorted(DOCS.glob("*.md")):
        assert page.resolve() in linked, f"README.md does not link {page.relative_to(ROOT)}"


def test_every_relative_link_points_at_a_file_that_exists():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = [f"{page.relative_to(ROOT)}: {target}"
              for page in pages for target, path in _relative_links(page) if not path.exists()]
    assert not broken, broken


def test_no_test_module_basename_is_shared_between_unit_and_e2e_tests() -> None:
    # pytest imports test modules by basename (rootdir-relative, no packages): two files
    # of one name in tests/ and tests/e2e/ stop the collection of the whole suite.
    here = Path(__file__).resolve().parent
    unit = {p.name for p in here.glob("*.py")}
    e2e = {p.name for p in (here / "e2e").glob("*.py")} - {"__init__.py", "conftest.py"}
    assert not unit & e2e, f"rename one of each: {sorted(unit & e2e)}"
