"""The house holds: what no import check sees (module paths in strings) and its size."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "devenv"
#: Python code in a string (`python -c "from devenv.x import y; ..."`)
_CODE = re.compile(r"\bfrom (devenv(?:\.\w+)+) import (\w+)")


def _trees() -> list[tuple[Path, ast.AST]]:
    return [(p.relative_to(PACKAGE), ast.parse(p.read_text())) for p in PACKAGE.rglob("*.py")]


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


def test_module_paths_in_strings_exist():
    # Two helpers are started by path: the tunnel supervisor (`python -m devenv...`) and
    # the restore's settle step (`python -c "from devenv... import settle_main"`).
    modules, code = [], []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.List):  # an argv: the item after "-m" is a module
                items = [_text(item) for item in node.elts]
                modules += [(f"{path}:{node.lineno}", after)
                            for before, after in zip(items, items[1:], strict=False)
                            if before == "-m" and after]
            text = _text(node)
            if text:
                code += [(f"{path}:{node.lineno}", m.group(1), m.group(2))
                         for m in _CODE.finditer(text)]
    assert ("devenv.tunnels.supervisor" in {text for _, text in modules}
            and "settle_main" in {name for _, _, name in code}), "the scan lost a helper"
    for where, text in modules:
        assert importlib.util.find_spec(text) is not None, f"{where}: no module {text}"
    for where, module, name in code:
        assert hasattr(importlib.import_module(module), name), f"{where}: {module}.{name}"


def test_at_most_twelve_modules_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def _names(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def test_container_output_is_read_only_through_the_one_mask():
    """Every path that shows what a container wrote reads it through live/output.py, which
    masks it: a new path that called the engine's `logs` / `follow_logs` (or Compose's
    `logs`) itself could show a password. (`stack.logs` is the use case `devenv logs`.)"""
    readers = {"logs", "follow_logs"}
    allowed = {Path("live/output.py")}
    calls = [(path, node.lineno) for path, tree in _trees()
             if path.parts[0] != "engine" and path not in allowed
             for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in readers and not _names(node.func.value, "stack")]
    assert calls == []
    output = dict(_trees())[Path("live/output.py")]
    assert {n.func.attr for n in ast.walk(output) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)} >= readers, "the scan lost the readers"
