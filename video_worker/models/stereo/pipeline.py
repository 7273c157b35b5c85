"""Runs a source and a chain of stages over batches, overlapped in threads (or one after another in the caller's).

Each stage runs in its own thread and hands its batches to the next through a queue; at most ``in_flight``
batches exist at once (back-pressure on the source), so memory stays bounded whatever the speed of each stage.
Order is kept (one thread per stage), so the output is what running the stages one after another gives.

An error ends the pipeline the way it would end a serial loop: the source and the stages before the one that
failed stop; the stages after it finish the batches they were given (a serial loop had done those before it
reached the failing one). The error raised is the one of the furthest stage that failed: the one a serial loop
would have hit first. Every thread is joined before ``run`` returns or raises.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from .timing import PhaseClock

T = TypeVar("T")


@dataclass(frozen=True)
class Stage(Generic[T]):
    """``work(batch, clock)`` → the batch for the next stage; ``start(clock)`` runs before the first batch,
    ``finish(clock)`` after the last (not when an earlier stage failed). ``clock`` is the thread's own."""

    name: str
    work: Callable[[T, PhaseClock], T]
    start: Callable[[PhaseClock], None] | None = None
    finish: Callable[[PhaseClock], None] | None = None


class _Aborted(Exception):
    """Raised inside a pipeline thread to end it quietly: another stage has failed."""


class _End:
    """End of a queue; ``failed``: the stage before it (or one earlier) failed."""

    def __init__(self, failed: bool) -> None:
        self.failed = failed


class _Flow(Generic[T]):
    """What the threads share: one queue before each stage, the count of batches in flight, and which threads
    are stopped (by position: 0 the source, i + 1 stage i)."""

    def __init__(self, stages: int, in_flight: int) -> None:
        self._cond = threading.Condition()
        self._queues: list[deque[T | _End]] = [deque() for _ in range(stages)]
        self._limit = in_flight
        self._in_flight = 0
        self._stopped_below = 0

    def _wait(self, position: int, ready: Callable[[], bool]) -> None:
        """Wait (the condition held) until ``ready()`` or the thread at ``position`` is stopped (``_Aborted``)."""
        while not (position < self._stopped_below or ready()):
            self._cond.wait()
        if position < self._stopped_below:
            raise _Aborted

    def admit(self) -> None:
        """Wait until one more batch may be made (the source)."""
        with self._cond:
            self._wait(0, lambda: self._in_flight < self._limit)
            self._in_flight += 1

    def release(self) -> None:
        """A batch has left the pipeline (or was never made)."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def put(self, index: int, item: T | _End) -> None:
        with self._cond:
            self._queues[index].append(item)
            self._cond.notify_all()

    def get(self, index: int) -> T | _End:
        queue = self._queues[index]
        with self._cond:
            self._wait(index + 1, lambda: bool(queue))
            return queue.popleft()

    def stop_below(self, position: int) -> None:
        """Stop the threads before ``position`` where they next wait."""
        with self._cond:
            self._stopped_below = max(self._stopped_below, position)
            self._cond.notify_all()


class Pipeline(Generic[T]):
    """``source(clock)`` yields batches; each goes through ``stages`` in order; ``run`` returns the clocks of the
    threads (the source's first; one clock when serial). Threads are named ``{name}-{source_name}``,
    ``{name}-{stage.name}``.

    ``threaded=False`` runs everything in the caller's thread, batch by batch (the serial converter).
    """

    def __init__(self, source: Callable[[PhaseClock], Iterator[T]], stages: list[Stage[T]], *,
                 in_flight: int = 4, name: str = "pipeline", source_name: str = "source") -> None:
        self.source, self.stages, self.in_flight, self.name = source, stages, max(1, in_flight), name
        self.source_name = source_name

    def run(self, threaded: bool = True) -> list[PhaseClock]:
        return self._threaded() if threaded else self._serial()

    def _serial(self) -> list[PhaseClock]:
        clock = PhaseClock()
        for stage in self.stages:
            if stage.start is not None:
                stage.start(clock)
        for batch in self.source(clock):
            for stage in self.stages:
                batch = stage.work(batch, clock)
        for stage in self.stages:
            if stage.finish is not None:
                stage.finish(clock)
        return [clock]

    def _threaded(self) -> list[PhaseClock]:
        flow: _Flow[T] = _Flow(len(self.stages), self.in_flight)
        errors: dict[int, BaseException] = {}
        clocks = [PhaseClock(thread=True) for _ in range(len(self.stages) + 1)]

        def guarded(position: int, body: Callable[[PhaseClock], None]) -> None:
            clock = clocks[position]
            clock.start()
            try:
                body(clock)
            except _Aborted:
                pass
            except BaseException as exc:  # handed to the caller's thread
                errors[position] = exc
                if position < len(self.stages):
                    flow.put(position, _End(failed=True))
                flow.stop_below(position)  # what comes after it finishes the batches it has (as a serial loop)

        bodies = [partial(self._make, flow)] + [partial(self._stage, flow, i) for i in range(len(self.stages))]
        names = [self.source_name] + [stage.name for stage in self.stages]
        threads = [threading.Thread(target=guarded, args=(position, body), name=f"{self.name}-{names[position]}")
                   for position, body in enumerate(bodies)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            flow.stop_below(len(threads))  # only matters when the caller's thread was interrupted
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
        if errors:
            raise errors[max(errors)]
        return clocks

    def _make(self, flow: _Flow[T], clock: PhaseClock) -> None:
        batches = self.source(clock)
        try:
            while True:
                flow.admit()
                clock.start()
                try:
                    batch = next(batches)
                except StopIteration:
                    flow.release()
                    break
                flow.put(0, batch)
        finally:
            if hasattr(batches, "close"):
                batches.close()  # a generator stopped early cleans up in this thread, not at garbage collection
        flow.put(0, _End(failed=False))

    def _stage(self, flow: _Flow[T], index: int, clock: PhaseClock) -> None:
        stage, last = self.stages[index], index == len(self.stages) - 1
        if stage.start is not None:
            stage.start(clock)
        while True:
            batch = flow.get(index)
            clock.start()
            if isinstance(batch, _End):
                if not batch.failed and stage.finish is not None:
                    stage.finish(clock)
                if not last:
                    flow.put(index + 1, batch)
                return
            batch = stage.work(batch, clock)
            if last:
                flow.release()
            else:
                flow.put(index + 1, batch)

