"""Continuous batching of embedding calls across concurrent requests."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from facesim.inference.batching import EmbeddingBatcher


def slow_embed(batch_sizes: list[int]):
    """A stand-in network: 20 ms per call, embedding = each crop's mean pixel (so rows are checkable)."""

    def embed(crops: np.ndarray) -> np.ndarray:
        batch_sizes.append(len(crops))
        time.sleep(0.02)
        return crops.reshape(len(crops), -1).mean(axis=1, keepdims=True).astype(np.float32)

    return embed


def crops_of(value: int, count: int) -> np.ndarray:
    return np.full((count, 4, 4, 3), value, np.uint8)


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    batch_sizes: list[int] = []
    batcher = EmbeddingBatcher(slow_embed(batch_sizes))

    async def requests() -> list[np.ndarray]:
        first = asyncio.create_task(batcher.embed(crops_of(0, 1)))
        await asyncio.sleep(0.005)  # its call is running now; the next nine arrive meanwhile
        rest = await asyncio.gather(*(batcher.embed(crops_of(value, 1 + value % 3)) for value in range(1, 10)))
        return [await first, *rest]

    results = asyncio.run(requests())
    for value, vectors in enumerate(results):
        np.testing.assert_array_equal(vectors, np.full((1 + value % 3, 1), value, np.float32))
    assert batch_sizes == [1, sum(1 + v % 3 for v in range(1, 10))]  # the first alone, the nine together
    assert batcher.calls == 2


def test_a_lone_request_runs_at_once_and_batches_respect_max_batch() -> None:
    batch_sizes: list[int] = []
    batcher = EmbeddingBatcher(slow_embed(batch_sizes), max_batch=4)

    async def requests() -> None:
        await batcher.embed(crops_of(1, 3))
        await asyncio.gather(*(batcher.embed(crops_of(2, 3)) for _ in range(4)))

    asyncio.run(requests())
    assert batch_sizes[0] == 3 and max(batch_sizes) <= 4 and sum(batch_sizes) == 15


def test_a_failing_call_fails_its_requests_only() -> None:
    def embed(crops: np.ndarray) -> np.ndarray:
        if (crops == 13).any():
            raise ValueError("bad crop")
        return np.zeros((len(crops), 1), np.float32)

    batcher = EmbeddingBatcher(embed, max_batch=1)

    async def requests() -> list:
        return await asyncio.gather(
            batcher.embed(crops_of(13, 1)), batcher.embed(crops_of(1, 1)), return_exceptions=True
        )

    failed, fine = asyncio.run(requests())
    assert isinstance(failed, ValueError) and fine.shape == (1, 1)
    with pytest.raises(ValueError):
        asyncio.run(batcher.embed(crops_of(13, 1)))
