"""The package's layout holds: its modules import each other without a cycle (imports
point downward, and no import inside a function hides one), the engines import nothing
from `fares/` at run time, and each pure-Python engine module has its Cython twin."""

from __future__ import annotations

import ast
import pathlib

import cardledger

PACKAGE = pathlib.Path(cardledger.__file__).resolve().parent
CEXT = PACKAGE.parent.parent / "cext"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: pathlib.Path) -> set[str]:
    """The cardledger modules `path` imports at run time (at any depth, functions
    included; blocks under `if TYPE_CHECKING:` left out)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("cardledger"):
                    for alias in child.names:
                        sub = f"{target}.{alias.name}"
                        out.add(sub if _exists(sub) else target)
            elif isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.startswith("cardledger"))
            visit(child)

    visit(ast.parse(path.read_text()))
    out.discard(name)
    return {m for m in out if _exists(m)}


def _exists(module: str) -> bool:
    rel = pathlib.Path(*module.split(".")[1:])
    # (an extension module is known by its stub: `_core.pyi`)
    return any((PACKAGE / rel).with_suffix(ext).exists() for ext in (".py", ".pyi")) or (
        PACKAGE / rel / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_package_imports_form_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            # Importing a submodule first runs the __init__ of every package above it
            # that the importer is not already inside.
            parts = n.split(".")
            ancestors = [".".join(parts[:k]) for k in range(2, len(parts))]
            for target in [a for a in ancestors if a in graph and not (m + ".").startswith(a + ".")] + [n]:
                if state.get(target) == 1:
                    cycle = stack[stack.index(target):] + [target]
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
                if target not in state:
                    walk(target)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)


def test_the_engines_import_nothing_from_fares_at_run_time():
    for m, targets in _graph().items():
        if m.startswith("cardledger.engine"):
            assert not [t for t in targets if t.startswith("cardledger.fares")], m


def test_each_spec_module_has_its_cython_twin_of_the_same_name():
    spec = {p.stem for p in (PACKAGE / "engine" / "spec").glob("*.py") if p.stem != "__init__"}
    assert spec == {"batch", "handlers", "taps", "fares", "codec", "reports", "policies", "purchases"}
    if CEXT.exists():  # (a source checkout)
        assert spec <= {p.stem for p in CEXT.glob("*.pxi")}
