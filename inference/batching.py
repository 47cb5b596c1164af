"""Embedding calls shared by concurrent requests (continuous batching, no added wait).

While one embedding call runs, the crops of requests that arrive queue up; when it returns, all
of them go through the network as one batch. An idle server runs each request at once, so a
lone request pays nothing; under load, one MobileFaceNet call on 16 crops costs ~2.4x less per
crop than 16 calls of one (measured here). Runs on the server's event loop: no locks needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_BATCH = 64  # crops per call: bounds the latency one call adds to the requests behind it


@dataclass
class _Pending:
    crops: np.ndarray
    future: asyncio.Future


class EmbeddingBatcher:
    def __init__(self, embed: Callable[[np.ndarray], np.ndarray], max_batch: int = DEFAULT_MAX_BATCH):
        self._embed = embed
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._draining = False
        self.calls = 0  # embedding calls made (for tests and benchmarks)

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        """The embeddings of `crops` (N, S, S, 3), computed in a batch with other requests' crops."""
        if len(crops) == 0:
            return self._embed(crops)
        pending = _Pending(crops, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take_batch()
                try:
                    self.calls += 1
                    vectors = await asyncio.to_thread(self._embed, np.concatenate([p.crops for p in batch]))
                except Exception as error:  # noqa: BLE001 - handed to every request of this batch
                    for pending in batch:
                        if not pending.future.done():  # its request may have been cancelled
                            pending.future.set_exception(error)
                    continue
                start = 0
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_result(vectors[start : start + len(pending.crops)])
                    start += len(pending.crops)
        finally:
            self._draining = False

    def _take_batch(self) -> list[_Pending]:
        """Queued requests in arrival order up to max_batch crops (always at least one request)."""
        taken, crops = 0, 0
        while taken < len(self._queue) and (taken == 0 or crops + len(self._queue[taken].crops) <= self.max_batch):
            crops += len(self._queue[taken].crops)
            taken += 1
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch
