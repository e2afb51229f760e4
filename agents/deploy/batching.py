"""Answering what queued up together: a thread of its own takes every request waiting when it is free and
hands them to one call, so concurrent requests share a conversion, a policy run and an audit transaction.

    batcher = Batcher(answer_all, max_batch=64)   # answer_all(jobs) -> one result per job, in order
    batcher.start()
    result = await batcher.submit(job)            # from the event loop
    batcher.stop()

A lone request is answered at once (a batch of one), so batching adds no wait; under load the batches grow by
themselves, with the requests that arrived while the previous batch was being answered. A result that is an
exception is raised to its own caller only; an exception of the call itself is raised to every caller of the
batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Job = TypeVar("Job")

_STOP = object()


class BatcherStopped(RuntimeError):
    """The batcher is not running: the job was not answered."""


class Batcher(Generic[Job]):
    """Calls `answer(jobs)` on its own thread with every job queued since its last call, up to `max_batch`."""

    def __init__(self, answer: Callable[[list[Job]], Sequence[Any]], max_batch: int = 64,
                 name: str = "batcher", weight: Callable[[Job], float] | None = None,
                 max_weight: float = float("inf")) -> None:
        """`weight(job)` and `max_weight`: a batch takes jobs while their weights add up to at most max_weight
        (its first job whatever its weight), so a few big jobs do not keep many others waiting for the batch."""
        if max_batch < 1:
            raise ValueError(f"max_batch: {max_batch} is not allowed; allowed: >= 1")
        self.answer, self.max_batch, self.name = answer, max_batch, name
        self.weight, self.max_weight = weight, max_weight
        self._carry: tuple | None = None  # the job that did not fit the last batch: the next one starts with it
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0   # calls of `answer` so far ...
        self.jobs = 0      # ... and the jobs they answered

    def start(self) -> None:
        """Start the answering thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Answer what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def submit(self, job: Job) -> Any:
        """The answer to `job` (its exception raised), once its batch is answered."""
        if self._thread is None:
            raise BatcherStopped(f"{self.name} is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((job, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping or self._carry is not None:
            first, self._carry = (self._carry, None) if self._carry is not None else (self._queue.get(), None)
            if first is _STOP:
                break
            batch, load = [first], self._weight(first)
            while len(batch) < self.max_batch and not stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                load += self._weight(item)
                if load > self.max_weight:
                    self._carry = item
                    break
                batch.append(item)
            self._answer(batch)

    def _weight(self, item: tuple) -> float:
        return 0.0 if self.weight is None else self.weight(item[0])

    def _answer(self, batch: list) -> None:
        try:
            results = list(self.answer([job for job, _, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} answers to {len(batch)} jobs")
        except BaseException as error:  # noqa: BLE001 - every caller of the batch gets it, the thread goes on
            log.debug("%s: a batch of %d failed: %r", self.name, len(batch), error)
            results = [error] * len(batch)
        self.batches += 1
        self.jobs += len(batch)
        for (_, future, loop), result in zip(batch, results):
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # the caller's loop is closed: nobody waits for this answer
                pass


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():  # the caller went away (cancelled)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
