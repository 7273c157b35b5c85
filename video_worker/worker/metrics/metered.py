"""The metered adapters: the process's dependencies and dead-letter store, wrapped where no signal can see
(``worker/context.py`` calls ``instrument`` when ``METRICS_PORT`` is set)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from video_worker.dead_letter import DeadLetter, Received
from video_worker.limits import Deadline
from video_worker.ports import CompletionStore, DeadLetterStore, ModelRunner, ObjectInfo, ObjectStorage
from video_worker.segments import Mode, SegmentCompletion
from video_worker.stages import Dependencies
from video_worker.worker.metrics.series import WorkerMetrics


class MeteredStorage:
    """``ObjectStorage``, counting the bytes of each download (in) and upload (out)."""

    def __init__(self, inner: ObjectStorage, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics

    def head(self, uri: str) -> ObjectInfo:
        return self._inner.head(uri)

    def download(self, uri: str, dest: Path, version_id: str | None = None, size: int | None = None,
                 deadline: Deadline | None = None) -> int:
        got = self._inner.download(uri, dest, version_id, size, deadline)
        self._metrics.bytes.labels("in").inc(got)
        return got

    def upload(self, src: Path, uri: str, *, metadata: Mapping[str, str] | None = None,
               if_match: str | None = None, if_none_match: bool = False, deadline: Deadline | None = None) -> str:
        size = src.stat().st_size
        etag = self._inner.upload(src, uri, metadata=metadata, if_match=if_match, if_none_match=if_none_match,
                                  deadline=deadline)
        self._metrics.bytes.labels("out").inc(size)
        return etag

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MeteredModel:
    """``ModelRunner``, adding the seconds of each run (failed ones too: the accelerator was busy)."""

    def __init__(self, inner: ModelRunner, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics

    @property
    def fingerprint(self) -> str | None:
        return self._inner.fingerprint

    @fingerprint.setter
    def fingerprint(self, value: str | None) -> None:
        self._inner.fingerprint = value

    @property
    def context_frames(self) -> int:
        return self._inner.context_frames

    def run(self, src: Path, dst: Path, mode: Mode, deadline: Deadline, context: Path | None = None) -> None:
        started = time.perf_counter()
        try:
            self._inner.run(src, dst, mode, deadline, context)
        finally:
            self._metrics.model_seconds.inc(time.perf_counter() - started)

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MeteredCompletions:
    """``CompletionStore``: a row written is a segment ``completed``; a row already there, ``skipped``."""

    def __init__(self, inner: CompletionStore, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics

    def get(self, job_id: str, segment_index: int) -> SegmentCompletion | None:
        return self._inner.get(job_id, segment_index)

    def put(self, completion: SegmentCompletion) -> bool:
        written = self._inner.put(completion)
        self._metrics.segments.labels("completed" if written else "skipped").inc()
        return written

    def rows(self, job_id: str) -> list[SegmentCompletion]:
        return self._inner.rows(job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MeteredDeadLetters:
    """``DeadLetterStore``: each letter written is a segment (or message) ``dead_lettered``."""

    def __init__(self, inner: DeadLetterStore, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics
        self.url = inner.url

    def put(self, letter: DeadLetter) -> None:
        self._inner.put(letter)
        self._metrics.segments.labels("dead_lettered").inc()

    def receive_all(self, hold_seconds: int = 30, limit: int = 10_000) -> Iterator[Received]:
        return self._inner.receive_all(hold_seconds, limit)

    def release(self, receipt_handle: str) -> None:
        self._inner.release(receipt_handle)

    def delete(self, receipt_handle: str) -> None:
        self._inner.delete(receipt_handle)


def instrument(dependencies: Dependencies, metrics: WorkerMetrics | None) -> Dependencies:
    """The stages' dependencies, metered if metrics are on."""
    if metrics is None:
        return dependencies
    return dataclasses.replace(dependencies, storage=MeteredStorage(dependencies.storage, metrics),
                               model=MeteredModel(dependencies.model, metrics),
                               completions=MeteredCompletions(dependencies.completions, metrics))


def instrument_dead_letters(store: DeadLetterStore, metrics: WorkerMetrics | None) -> DeadLetterStore:
    return store if metrics is None else MeteredDeadLetters(store, metrics)
