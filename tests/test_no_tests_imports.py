"""The product, its benchmarks and the docs' image scripts stand without tests/: a helper they
need lives in the package (an installed wheel or a checkout without tests/ still runs them)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports_of_tests(path: Path) -> list[str]:
    """``file:line`` of every import of the ``tests`` package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(name == "tests" or name.startswith("tests.") for name in names):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_product_benchmarks_and_docs_scripts_import_nothing_from_tests() -> None:
    folders = [REPO / "appliance", REPO / "benchmarks", REPO / "docs"]
    scripts = [path for folder in folders for path in folder.rglob("*.py")]
    assert any(p.name == "make_screen_images.py" for p in scripts)
    offenders = [where for path in scripts for where in _imports_of_tests(path)]
    assert offenders == [], f"move what these import from tests/ into appliance/: {offenders}"
