"""What happens to a message when something fails: the one place that decides.

The rule: a message is deleted only once its work is durably recorded
elsewhere: a completion row, a re-published task (a retry, or the rest of a
chain handed on), or a dead letter. Otherwise it goes back to its queue and
comes again. Every point that receives, publishes, acknowledges or deletes
asks this module:

* a failed stage (``decide``): retried after a backoff (``RetryPolicy``) while
  it is transient and under its bound, else dead-lettered; a model process
  that died, or was killed because its model stopped making progress
  (``WorkerLost``, ``ModelStalled``), counts against ``MAX_DELIVERIES``, like a
  worker that died (a segment killed only because it shared that process,
  ``SharedProcessKilled``, is an ordinary transient failure);
* a publish that fails (a retry, a hand-off, a dead letter, the bridge's
  chains, ``dlq replay``) is tried again with backoff for ``patience``
  seconds (``patiently``); if it still fails, ``Undelivered`` is raised and
  the message it came from goes back instead of being deleted;
* a receive that fails (a 5xx, a reset connection) is retried with backoff
  (``ReceiveBackoff``): the receiver keeps going;
* a message delivered more than ``MAX_DELIVERIES`` times (its workers died
  while holding it) is dead-lettered (``too_many_deliveries``).

Pure: no Celery, no boto3. ``tasks``, ``affinity``, ``consumer``,
``worker/transport.py``, ``bridge`` and ``replay`` apply what it decides.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from video_worker.errors import Undelivered, VideoWorkerError, WorkerLost, classify
from video_worker.retry_policy import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds of backoff between publish attempts: doubles from the first, capped.
PUBLISH_BACKOFF = (0.5, 8.0)
#: Seconds between receive attempts after failures: doubles from the first, capped at SQS's long poll.
RECEIVE_BACKOFF = (0.5, 20.0)


@dataclass(frozen=True)
class RetryLater:
    """Re-publish the stage (same task id, ``retries`` + 1) with this SQS delay."""

    delay_seconds: int


@dataclass(frozen=True)
class DeadLetterIt:
    """Give up: write a dead letter with this reason."""

    reason: str


Decision = RetryLater | DeadLetterIt


def decide(policy: RetryPolicy, stage: str, exc: BaseException, retries: int, max_deliveries: int) -> Decision:
    """What a failed stage does next. ``retries``: how many retries already ran (Celery's ``request.retries``)."""
    error = classify(exc)
    if isinstance(error, WorkerLost) and retries + 1 >= max_deliveries:
        return DeadLetterIt(f"{error} ({retries + 1} times; MAX_DELIVERIES={max_deliveries})")
    if policy.should_retry(stage, error, retries):
        return RetryLater(policy.delay_seconds(stage, retries))
    return DeadLetterIt(str(error) if isinstance(error, VideoWorkerError) else f"{type(error).__name__}: {error}")


def too_many_deliveries(receive_count: int | None, max_deliveries: int) -> str | None:
    """Why a message received ``receive_count`` times is poison (its workers kept dying), or None."""
    if receive_count is None or receive_count <= max_deliveries:
        return None
    return (f"delivered {receive_count} times without finishing: the worker holding it was lost "
            f"{receive_count - 1} times (MAX_DELIVERIES={max_deliveries})")


def backoff(attempt: int, bounds: tuple[float, float], rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ``attempt`` 0 waits about ``bounds[0]``, never more than ``bounds[1]``."""
    first, cap = bounds
    ceiling = min(cap, first * (2**attempt))
    return (rng or random).uniform(ceiling / 2, ceiling)


def patiently(action: Callable[[], T], what: str, *, patience: float,
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """Run ``action`` (a publish, a dead-letter write), retrying any failure with backoff for ``patience`` seconds.

    The last attempt is made when the patience runs out (a backoff is cut short to reach it, whatever the
    jitter); a failure then raises ``Undelivered`` (naming ``what`` and the last error): the caller hands its
    message back rather than deleting it.
    """
    deadline = clock() + patience
    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            remaining = deadline - clock()
            if remaining <= 0:
                raise Undelivered(f"{what} failed for {patience:g}s: {type(exc).__name__}: {exc}") from exc
            if attempt == 0:
                log.warning("%s failed (%s: %s); trying again for up to %gs", what, type(exc).__name__, exc, patience)
            attempt += 1
            sleep(min(backoff(attempt - 1, PUBLISH_BACKOFF), remaining))


class ReceiveBackoff:
    """Delays between receives after failures: grows while they fail, resets on the first success."""

    def __init__(self, bounds: tuple[float, float] = RECEIVE_BACKOFF) -> None:
        self.bounds = bounds
        self.failures = 0

    def failed(self, what: str, exc: BaseException | str) -> float:
        """Record a failed receive; return how long to wait before the next one."""
        delay = backoff(self.failures, self.bounds)
        self.failures += 1
        level = logging.WARNING if self.failures == 1 or self.failures % 10 == 0 else logging.DEBUG
        log.log(level, "%s failed (%s); receiving again in %.1fs (failure %d in a row)",
                what, exc, delay, self.failures)
        return delay

    def succeeded(self, what: str) -> None:
        if self.failures:
            log.warning("%s works again after %d failure(s)", what, self.failures)
        self.failures = 0
