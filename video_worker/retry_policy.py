"""The retry policy, in one place.

What is retried: ``TransientError`` only (throttling, 5xx, timeouts, connection
resets; adapters map SDK errors onto it). Everything else fails the chain at
once and is dead-lettered.

How: exponential backoff with full jitter, bounded per task by settings. The
delay is applied by SQS itself (``DelaySeconds``, at most 900 s) on the
re-published message, never as a Celery ETA/countdown: an ETA task is held in
a worker's memory while its SQS message's visibility timeout runs out, so SQS
hands it to a second worker and the task runs twice (celery #3270, #4766).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, Field

from video_worker.errors import TransientError

SQS_MAX_DELAY_SECONDS = 900


class RetryRule(BaseModel):
    """Retry bounds of one task (``TASK_RETRY_OVERRIDES`` entries have this shape)."""

    max_retries: int = Field(5, ge=0, le=100)
    base_seconds: float = Field(2.0, ge=0, le=SQS_MAX_DELAY_SECONDS)
    max_delay_seconds: int = Field(300, ge=0, le=SQS_MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class RetryPolicy:
    default: RetryRule
    overrides: dict[str, RetryRule]

    def rule(self, task_name: str) -> RetryRule:
        return self.overrides.get(task_name, self.default)

    def should_retry(self, task_name: str, exc: BaseException, retries: int) -> bool:
        """``retries`` is how many retries already happened (Celery's ``request.retries``)."""
        return isinstance(exc, TransientError) and retries < self.rule(task_name).max_retries

    def delay_seconds(self, task_name: str, retries: int, rng: random.Random | None = None) -> int:
        """Full-jitter exponential backoff, whole seconds within SQS's ``DelaySeconds`` range."""
        rule = self.rule(task_name)
        ceiling = min(rule.max_delay_seconds, rule.base_seconds * (2**retries))
        jittered = (rng or random).uniform(ceiling / 2, ceiling)
        return max(0, min(SQS_MAX_DELAY_SECONDS, round(jittered)))
