"""P identities x K images batches over identity folders, reproducible from (seed, step).

A batch is a pure function of the global step, so a resumed run draws the same batches as an
uninterrupted one, every worker can cut its own share out of the same global batch, and the
run can list in advance every image it will read (only those get prepared).
People with a single image cannot be anchors; they fill some groups as negatives only, in
proportion to the images they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    indices: np.ndarray  # [P*K] image indices, grouped by identity
    labels: np.ndarray  # [P*K] int32 identity labels

    def share(self, worker: int, workers: int) -> Batch:
        """Worker `worker`'s contiguous slice of the global batch."""
        size = len(self.indices) // workers
        part = slice(worker * size, (worker + 1) * size)
        return Batch(self.indices[part], self.labels[part])


class PKSampler:
    def __init__(self, labels: np.ndarray, identities_per_batch: int, images_per_identity: int, seed: int = 0):
        self.labels = np.asarray(labels, dtype=np.int32)
        self.p = identities_per_batch
        self.k = images_per_identity
        self.seed = seed
        by_identity: dict[int, list[int]] = {}
        for index, label in enumerate(self.labels):
            by_identity.setdefault(int(label), []).append(index)
        self.groups = [np.array(v) for v in by_identity.values() if len(v) >= 2]
        self.singletons = np.array([v[0] for v in by_identity.values() if len(v) == 1], dtype=np.int64)
        if len(self.groups) < 2:
            raise ValueError(
                f"training needs at least 2 identities with 2+ images; found {len(self.groups)} "
                "(raise --max-identities or check --data)"
            )
        singleton_share = len(self.singletons) / max(len(self.labels), 1)
        self.singleton_groups = min(round(self.p * singleton_share), self.p - 2, len(self.singletons) // self.k)

    def batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, step])
        anchor_groups = self.p - self.singleton_groups
        chosen = rng.choice(len(self.groups), size=anchor_groups, replace=anchor_groups > len(self.groups))
        parts = [self._draw(rng, self.groups[g]) for g in chosen]
        if self.singleton_groups:
            parts.append(rng.choice(self.singletons, size=self.singleton_groups * self.k, replace=False))
        indices = np.concatenate(parts)
        return Batch(indices, self.labels[indices])

    def _draw(self, rng: np.random.Generator, members: np.ndarray) -> np.ndarray:
        if len(members) >= self.k:
            return rng.choice(members, size=self.k, replace=False)
        # Fewer images than K: all of them, then repeats (augmentation makes the repeats differ).
        return np.concatenate([members, rng.choice(members, size=self.k - len(members))])

    def planned_indices(self, first_step: int, last_step: int) -> np.ndarray:
        """Every image index the steps [first_step, last_step) will read."""
        steps = range(first_step, last_step)
        return np.unique(np.concatenate([self.batch(s).indices for s in steps])) if steps else np.array([], int)
