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
