"""The tests stand on their own: a test module imports neither another test module nor
conftest (fixtures come through pytest, shared helpers from tests/support/), and no test
module writes again a helper that tests/support/ already has."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent
SUPPORT = TESTS / "support"


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every module an import names, relative ones with their dots;
    ``from . import x`` and ``from tests import x`` count as importing ``x``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.append((node.lineno, base))
            if base in (".", "tests"):
                found += [(node.lineno, f"{base}.{a.name}".replace("..", ".")) for a in node.names]
    return found


def _forbidden(module: str) -> bool:
    """Whether ``module`` is a test module or conftest (by any spelling)."""
    last = module.split(".")[-1]
    return last.startswith("test_") or last == "conftest"


def _offences(path: Path) -> list[str]:
    found = _imported(ast.parse(path.read_text()))
    return [f"{path.name}:{line} imports {name}" for line, name in found if _forbidden(name)]


def _top_level_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_no_test_module_imports_another_or_conftest():
    modules = sorted(TESTS.glob("test_*.py")) + sorted(SUPPORT.glob("*.py"))
    assert len(modules) > 40, modules  # the globs found the tests
    offences = [offence for path in modules for offence in _offences(path)]
    assert offences == [], "import helpers from tests/support/ instead:\n" + "\n".join(offences)


def test_the_check_sees_every_spelling_of_such_an_import():
    source = (
        "from .test_display import XSS\n"
        "from tests.test_server import mjq\n"
        "from . import conftest\n"
        "from tests import test_server\n"
        "import tests.test_queue\n"
        "from .conftest import wait_for\n"
        "from .support.waiting import wait_for\n"  # the one allowed
        "from . import support\n"
    )
    names = [name for _, name in _imported(ast.parse(source)) if _forbidden(name)]
    assert names == [
        ".test_display",
        "tests.test_server",
        ".conftest",
        "tests.test_server",
        "tests.test_queue",
        ".conftest",
    ]


def test_no_test_module_writes_a_support_helper_again():
    shared = set().union(*(_top_level_functions(p) for p in SUPPORT.glob("*.py")))
    shared -= {"main"}  # the programs' entry points (handlers.py, pymjq_driver.py)
    assert {"wait_for", "run_mjq", "row", "assert_escaped"} <= shared
    again = {
        f"{path.name}: {name}"
        for path in TESTS.glob("test_*.py")
        for name in _top_level_functions(path) & shared
    }
    assert again == set()
