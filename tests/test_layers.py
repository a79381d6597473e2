"""The layout's rules that import-linter can't see: the core reaches the notebook and analysis
layers only from inside a function (the lazy one-liners), and no module grows past a size a
reader can hold."""

import ast
from pathlib import Path

import mjq_notebook

PACKAGE = Path(mjq_notebook.__file__).parent
CORE = [p for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "cli", "demo"}]
CORE += list((PACKAGE / "server").glob("*.py"))
UPPER = ("notebook", "analysis")
MAX_LINES = 450
# modules over MAX_LINES, each with why (README "How it works" says the same)
OVER = {
    "queue.py": "JobQueue, the entry point: every public method, most a docstring and a call "
    "to a helper it owns (due, leases, owned, reads, requeue, ring, sweep)",
}


def _upper_imports(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, module, inside a function) for every import of an upper layer."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                module = ("." * child.level) + (child.module or "")
                if (child.module or "").removeprefix("mjq_notebook.").split(".")[0] in UPPER:
                    found.append((child.lineno, module, in_function))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # annotations only
            visit(child, inner)

    visit(tree, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def test_the_core_imports_upper_layers_only_inside_functions():
    assert len(CORE) >= 10, CORE  # the glob found the core
    at_module_level = [
        f"{path.name}:{line} imports {module}"
        for path in CORE
        for line, module, inside in _upper_imports(ast.parse(path.read_text()))
        if not inside
    ]
    assert at_module_level == []


def test_the_check_sees_a_module_level_import():
    """The walk above would catch the import it exists for (and not the lazy one)."""
    source = "from .notebook.display import x\ndef f():\n    from .analysis import y\n"
    assert _upper_imports(ast.parse(source)) == [
        (1, ".notebook.display", False),
        (3, ".analysis", True),
    ]


def test_no_module_is_over_the_size_a_reader_can_hold():
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in OVER}
    assert over == {}
