"""The layout's rules that import-linter can't see: only the bottom modules sit at the
package's top level (every other module lives in its layer's folder); the core reaches the
notebook and analysis layers only from inside a function (the lazy one-liners); and no module
grows past a size a reader can hold."""

import ast
from pathlib import Path

import mjq_notebook

PACKAGE = Path(mjq_notebook.__file__).parent
CORE = list((PACKAGE / "core").rglob("*.py")) + list((PACKAGE / "server").glob("*.py"))
UPPER = ("notebook", "analysis", "live", "cli")
MAX_LINES = 450
# the bottom of the layers, the only modules at the top level (pyproject's contracts)
BOTTOM = {"__init__", "_version", "errors", "signals", "text"}


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
    assert len(sizes) > 50  # the walk found the package
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_only_the_bottom_modules_sit_at_the_top_level():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top >= BOTTOM  # the check looks where the modules are
    assert top - BOTTOM == set(), "a module of a layer belongs in its folder"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == {"cli", "notebook", "live", "analysis", "core", "server"}
