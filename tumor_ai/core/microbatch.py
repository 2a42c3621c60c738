"""Concurrent users share forward passes: single-image requests to one model, run as one batch.

A VGG16 forward pass on 8 slices costs less than 8 passes on one, so when several people press
Predict or Compare at once, one worker thread runs their slices together: while it computes a
batch, new requests queue, and the next batch takes all of them (continuous batching). A request
that finds the worker idle runs at once, so one user alone waits for nothing; ``window`` can
add a short wait for company. Results are the same as alone, and the tests compare them.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np


class MicroBatcher:
    """A worker thread that gathers pending single images for one predictor and predicts them in one batch."""

    def __init__(self, predictor, max_batch: int = 8, window: float = 0.0) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.window = window
        self.batch_sizes: list[int] = []  # what ran together, for tests and benchmarks
        self._pending: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name=f"microbatch-{predictor.name}", daemon=True).start()

    def predict_one(self, image: np.ndarray):
        """``(Prediction, seconds)`` for one image, computed in a batch with whatever else is waiting."""
        started = time.perf_counter()
        future: Future = Future()
        self._pending.put((image, future))
        return future.result(), time.perf_counter() - started

    def _work(self) -> None:
        while True:
            waiting = [self._pending.get()]
            deadline = time.perf_counter() + self.window
            while len(waiting) < self.max_batch:
                try:
                    waiting.append(self._pending.get(timeout=max(deadline - time.perf_counter(), 0)))
                except queue.Empty:
                    break
            self.batch_sizes.append(len(waiting))
            try:
                predictions = self.predictor.predict([image for image, _ in waiting], batch_size=self.max_batch)
            except Exception as error:  # noqa: BLE001 - hand the failure to every caller, keep serving
                for _, future in waiting:
                    future.set_exception(error)
                continue
            for (_, future), prediction in zip(waiting, predictions):
                future.set_result(prediction)
