"""Slow, obvious references for facesim.contract.metrics: double loops over pairs, in Python floats."""

from __future__ import annotations

from itertools import combinations

import numpy as np

DIM = 8


def reference_pairs(identities: list[str], vectors: np.ndarray) -> tuple[list[float], list[float]]:
    """(genuine, impostor) squared distances of every pair of rows, summed one coordinate at a time."""
    genuine, impostor = [], []
    for i, j in combinations(range(len(identities)), 2):
        distance = float(sum((float(a) - float(b)) ** 2 for a, b in zip(vectors[i], vectors[j], strict=True)))
        (genuine if identities[i] == identities[j] else impostor).append(distance)
    return genuine, impostor


def people(rng: np.random.Generator, counts: list[int]) -> tuple[list[str], np.ndarray]:
    """Unit vectors, each identity's clustered around its own centre."""
    identities = [f"person {k}" for k, count in enumerate(counts) for _ in range(count)]
    centres = rng.normal(size=(len(counts), DIM))
    vectors = np.repeat(centres, counts, axis=0) + 0.6 * rng.normal(size=(len(identities), DIM))
    return identities, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
