"""Slow, obvious NumPy references for the triplet losses: loops over anchors, positives, negatives."""

from __future__ import annotations

import numpy as np


def squared_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def semi_hard_reference(labels: np.ndarray, embeddings: np.ndarray, margin: float) -> float:
    losses = []
    n = len(labels)
    for a in range(n):
        negatives = [j for j in range(n) if labels[j] != labels[a]]
        if not negatives:
            continue
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            d_ap = squared_distance(embeddings[a], embeddings[p])
            d_an = [squared_distance(embeddings[a], embeddings[j]) for j in negatives]
            farther = [d for d in d_an if d > d_ap]
            chosen = min(farther) if farther else max(d_an)
            losses.append(max(d_ap - chosen + margin, 0.0))
    return float(np.mean(losses)) if losses else 0.0


def batch_hard_reference(labels: np.ndarray, embeddings: np.ndarray, margin: float) -> float:
    losses = []
    n = len(labels)
    for a in range(n):
        d_ap = [squared_distance(embeddings[a], embeddings[p]) for p in range(n) if p != a and labels[p] == labels[a]]
        d_an = [squared_distance(embeddings[a], embeddings[j]) for j in range(n) if labels[j] != labels[a]]
        if d_ap and d_an:
            losses.append(max(max(d_ap) - min(d_an) + margin, 0.0))
    return float(np.mean(losses)) if losses else 0.0
