"""Import hygiene: transformers is the test oracle only, and importing blip does no extra work."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
RUNTIME_SOURCES = [*sorted((ROOT / "blip").rglob("*.py")), *sorted((ROOT / "ui").rglob("*.py"))]
if (ROOT / "app.py").exists():
    RUNTIME_SOURCES.append(ROOT / "app.py")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_code_never_imports_transformers():
    assert RUNTIME_SOURCES, "no runtime sources found"
    offenders = [str(p.relative_to(ROOT)) for p in RUNTIME_SOURCES if "transformers" in _imported_modules(p)]
    assert offenders == []


def test_importing_blip_loads_neither_transformers_nor_network_code():
    code = (
        "import sys, blip; "
        "print(sorted(m for m in ('transformers', 'huggingface_hub', 'gradio', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# The layers of blip/, lowest first: a module imports from its own layer or lower ones, never higher.
LAYERS = ("kernels", "model", "loading", "generation", "explain", "engine", "cli")


def _blip_imports(path: Path) -> set[str]:
    """The blip modules ``path`` imports (relative imports resolved), as dotted names."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            if base.split(".")[0] != "blip":
                continue
            for alias in node.names:  # `from . import tasks` names a module; `from .x import y` a name
                module = f"{base}.{alias.name}"
                found.add(module if (ROOT / Path(*module.split("."))).with_suffix(".py").exists() else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "blip")
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_blip_is_layered_and_has_no_import_circle():
    sources = {_module_name(p): p for p in sorted((ROOT / "blip").rglob("*.py"))}
    assert all(m == "blip" or m == "blip.__main__" or m.split(".")[1] in LAYERS for m in sources), sources
    graph = {m: {i for i in _blip_imports(p) if i in sources} for m, p in sources.items()}
    upward = [
        f"{m} -> {i}"
        for m, imports in graph.items()
        if m not in ("blip", "blip.__main__")
        for i in imports
        if i != "blip" and LAYERS.index(i.split(".")[1]) > LAYERS.index(m.split(".")[1])
    ]
    assert upward == [], "a lower layer imports a higher one"
    # Depth-first search for a cycle among modules (a package's __init__ counts as a module).
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        state[m] = 1
        for i in sorted(graph[m]):
            if state.get(i) == 1:
                return [*trail, m, i]
            if i not in state and (cycle := visit(i, [*trail, m])):
                return cycle
        state[m] = 2
        return None

    cycles = [c for m in sorted(graph) if m not in state and (c := visit(m, []))]
    assert cycles == [], f"import circle: {' -> '.join(cycles[0])}"


def test_no_runtime_file_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n for p in RUNTIME_SOURCES if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
