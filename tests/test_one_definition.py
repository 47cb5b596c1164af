"""Squared L2 and the threshold at a false-accept rate are defined once, in facesim.contract.metrics
(issue 19): this greps the code of every component (comments and strings aside) for another definition."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from tests.test_layering import ALLOWED, REPO

HOME = Path("contract/metrics.py")
# The triplet loss's pairwise distances are TensorFlow ops that training differentiates through, on
# the batch's tensors: not a NumPy metric, and named here so that it is the only one.
EXEMPT = {Path("training/losses.py"): "pairwise_squared_distances (TensorFlow, differentiated)"}

COPIES = {
    "squared L2": [
        r"\*\* 2\b",  # (a - b) ** 2, x ** 2
        r"\b(np|tf|torch)\s*\.\s*square\b",
        r"\b2(\.0*)? - 2(\.0*)? \*",  # 2 - 2 * cosine
        r"- 2(\.0*)? \* \w+ (\.|@)",  # |a|^2 - 2 * a.b + |b|^2
        r"\blinalg \. norm \( [^)]* - ",  # |a - b|, squared later
        r"\bdef \w*(squared|sq|l2)_?\w*dist",
    ],
    "threshold at a FAR": [
        r"\bnextafter\b",
        r"\b\w*far\w* \* len \(",  # allowed false accepts = FAR x impostor pairs
        r"\bdef \w*(far_threshold|threshold_at_far)\b",
        r"\bnp \. partition \(",
    ],
}


def code_lines(source: str) -> dict[int, str]:
    """Each line's code tokens joined by single spaces: no comments, no strings (docstrings included)."""
    lines: dict[int, list[str]] = {}
    skipped = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skipped and token.type != tokenize.ENDMARKER:
            lines.setdefault(token.start[0], []).append(token.string)
    return {number: " ".join(tokens) for number, tokens in lines.items()}


def copies(repo: Path) -> list[str]:
    """`path:line: concept` for every line outside contract/metrics.py that defines one of them again."""
    found = []
    for component in [*ALLOWED, "facesim"]:
        for path in sorted((repo / component).rglob("*.py")):
            relative = path.relative_to(repo)
            if relative == HOME or relative in EXEMPT:
                continue
            for number, line in code_lines(path.read_text()).items():
                for concept, patterns in COPIES.items():
                    if any(re.search(pattern, line) for pattern in patterns):
                        found.append(f"{relative}:{number}: {concept}")
    return found


def test_squared_l2_and_the_threshold_at_a_far_are_defined_once() -> None:
    assert copies(REPO) == []
    home = code_lines((REPO / HOME).read_text()).values()
    for concept, patterns in COPIES.items():  # the patterns do find the one definition
        assert any(re.search(pattern, line) for pattern in patterns for line in home), concept


def test_a_copy_is_caught(tmp_path: Path) -> None:
    for component in [*ALLOWED, "facesim"]:
        (tmp_path / component).mkdir()
    (tmp_path / "inference" / "predictor.py").write_text(
        '"""2 - 2 * cosine in a docstring is fine."""\n'
        "import numpy as np\n"
        "def distance(a, b):\n"
        "    # so is a ** 2 in a comment\n"
        "    return float(np.sum((a - b)**2))\n"
    )
    (tmp_path / "gallery" / "index.py").write_text("d = max(0.0, 2.0 - 2.0 * float(similarity))\n")
    (tmp_path / "gallery" / "calibrate.py").write_text(
        "def pick(impostor, target_far):\n    allowed = int(target_far * len(impostor))\n"
    )
    (tmp_path / "training" / "gram.py").write_text("d = norms[:, None] - 2 * gram @ x\n")
    (tmp_path / "benchmarks" / "accuracy.py").write_text("t = np.nextafter(limit, -np.inf)\n")
    assert copies(tmp_path) == [
        "gallery/calibrate.py:2: threshold at a FAR",
        "gallery/index.py:1: squared L2",
        "training/gram.py:1: squared L2",
        "inference/predictor.py:5: squared L2",
        "benchmarks/accuracy.py:1: threshold at a FAR",
    ]
