"""The deadline a running stage checks: its time limit (``STAGE_TIME_LIMITS``, defaults in ``stages``).

Enforced whatever the Celery pool (the threads pool ignores ``--time-limit``):
``infer`` runs the model in a child process that is killed at the limit
(``adapters/model_process.py``); transfers check the deadline between chunks;
every AWS call has socket timeouts. A stage past its limit raises
``StageTimeout``, a ``TransientError``: retried, then dead-lettered (``failure_policy``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from video_worker.errors import StageTimeout


@dataclass(frozen=True)
class Deadline:
    """When the stage ``stage`` must be done (``time.monotonic`` seconds)."""

    stage: str
    limit: float
    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def start(cls, stage: str, limit: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(stage, limit, clock() + limit, clock)

    @classmethod
    def none(cls, stage: str) -> Deadline:
        """No limit (tests, local conversion)."""
        return cls(stage, float("inf"), float("inf"))

    def restart(self) -> Deadline:
        """The same limit from now: time spent waiting for the model's turn is not the model's."""
        return self if self.limit == float("inf") else Deadline.start(self.stage, self.limit, self.clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    def expired(self) -> StageTimeout:
        return StageTimeout(f"{self.stage} exceeded its time limit of {self.limit:g}s")

    def check(self) -> None:
        """Raise ``StageTimeout`` once the deadline has passed."""
        if self.remaining() <= 0:
            raise self.expired()
