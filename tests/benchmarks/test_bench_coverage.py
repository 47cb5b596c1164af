"""`pytest -k bench` runs every `facesim bench` subcommand: each has a smoke test that `-k bench` selects
(a module named *bench*, or a test function named *bench*, that runs `facesim bench NAME`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from facesim.benchmarks.cli import BENCHMARKS

TESTS = Path(__file__).resolve().parents[1]


def _sources_selected_by_k_bench() -> str:
    parts = []
    for path in sorted(TESTS.rglob("test_*.py")):
        source = path.read_text()
        if "bench" in path.stem:
            parts.append(source)
            continue
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and "bench" in node.name:
                parts.append(ast.get_source_segment(source, node) or "")
    return "\n".join(parts)


def test_every_bench_subcommand_has_a_smoke_test_that_k_bench_selects() -> None:
    selected = _sources_selected_by_k_bench()
    missing = [name for name in BENCHMARKS if not re.search(rf'"bench",\s*"{name}"', selected)]
    assert not missing, f"no test that `pytest -k bench` selects runs `facesim bench {' / '.join(missing)}`"
