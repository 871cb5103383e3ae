"""The docs stay true: README and .env.example against the code."""

from __future__ import annotations

import re
from pathlib import Path

from devenv.cli.main import cli
from devenv.config.settings import SETTINGS
from devenv.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLE = (ROOT / ".env.example").read_text()


def test_every_command_is_in_the_readme_reference():
    for name in cli.commands:
        assert f"`devenv {name}`" in README, name


def test_every_command_help_has_a_summary_and_an_example():
    for name, command in cli.commands.items():
        assert command.get_short_help_str(), name
        assert "Example:" in (command.help or ""), name


def test_env_example_lists_every_setting_with_its_default():
    found = dict(re.findall(r"^#?(DEVENV_[A-Z_]+)=(.*)$", EXAMPLE, re.M))
    assert found == {spec.key: spec.default for spec in SETTINGS}


def test_every_setting_is_documented_in_the_readme():
    for spec in SETTINGS:
        assert f"`{spec.key}`" in README, spec.key


def test_exit_codes_table_matches_the_code():
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.M))
    assert {int(code): text for code, text in rows.items()} == EXIT_CODES


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in README and "bash scripts/test.sh" in ci


def test_no_test_module_basename_is_shared_between_unit_and_e2e_tests() -> None:
    # pytest imports test modules by basename (rootdir-relative, no packages): two files
    # of one name in tests/ and tests/e2e/ stop the collection of the whole suite.
    here = Path(__file__).resolve().parent
    unit = {p.name for p in here.glob("*.py")}
    e2e = {p.name for p in (here / "e2e").glob("*.py")} - {"__init__.py", "conftest.py"}
    assert not unit & e2e, f"rename one of each: {sorted(unit & e2e)}"
