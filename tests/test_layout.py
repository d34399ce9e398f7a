"""The package's layout: every module imports on its own, and no two modules import each other.

An import cycle works or breaks depending on which module is imported first (a half-initialised
module is handed to the other), so (a) imports each module alone in a fresh interpreter and
(b) checks the graph of all import statements of src/msgpp, including those inside functions,
which run later but close the same loop.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "src" / "msgpp"


def module_files() -> dict[str, Path]:
    """{"msgpp.separators.base": path, "msgpp.separators": .../__init__.py, ...}. Links are not
    followed (separators/shipped links to the weights folder, which holds Spleeter's venv)."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for path in sorted(Path(folder) / name for name in files if name.endswith(".py")):
            parts = ("msgpp",) + path.relative_to(PACKAGE).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return dict(sorted(modules.items()))


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The msgpp modules that `name` imports: `import a.b`, `from a import b` (a submodule b counts
    as b itself, any other name as a), relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles_and_resolves_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text("def f():\n    from . import two\n    from .two import helper\n")
    (package / "two.py").write_text("from pkg import one\nimport pkg.one\n")
    modules = {"pkg": package / "__init__.py", "pkg.one": package / "one.py", "pkg.two": package / "two.py"}
    assert imported_modules("pkg.one", modules["pkg.one"], modules) == {"pkg.two"}
    assert imported_modules("pkg.two", modules["pkg.two"], modules) == {"pkg.one"}


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


# Run in a fresh interpreter: preload the third-party packages msgpp imports (the slow part), then
# fork once per module, so that each child imports its msgpp module into a clean msgpp state.
_IMPORT_EACH = r"""
import importlib, json, os, sys, traceback
modules, external = json.load(sys.stdin)
for name in external:
    try:
        importlib.import_module(name)
    except Exception:
        pass
failures = {}
for name in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc(limit=-3).encode()[-2000:])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        message = stream.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status:
        failures[name] = message or f"exit status {status}"
print(json.dumps(failures))
"""


def _external_imports() -> list[str]:
    """Top-level third-party imports of the package (preloaded before the forks)."""
    names = set()
    for path in module_files().values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module)
    return sorted(name for name in names if name.split(".")[0] not in ("msgpp", "__future__"))


def test_every_module_imports_on_its_own():
    modules = sorted(module_files())
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH],
        input=json.dumps([modules, _external_imports()]),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{name}:\n{message}" for name, message in failures.items())
