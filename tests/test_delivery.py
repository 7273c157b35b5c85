"""``failure_policy``: the one place that decides what a failure does to a message."""

from __future__ import annotations

import errno
import itertools
import random

import pytest

from video_worker import failure_policy
from video_worker.errors import (
    DiskFull,
    ModelRejected,
    ModelStalled,
    ObjectNotFound,
    SharedProcessKilled,
    StageTimeout,
    TransientError,
    Undelivered,
    WorkerLost,
    classify,
)
from video_worker.retry_policy import RetryPolicy, RetryRule

POLICY = RetryPolicy(RetryRule(max_retries=2, base_seconds=4, max_delay_seconds=60), {})


def test_transient_failures_are_retried_until_their_bound_then_dead_lettered() -> None:
    for retries in (0, 1):
        decision = failure_policy.decide(POLICY, "video_worker.upload", TransientError("503"), retries, 3)
        assert isinstance(decision, failure_policy.RetryLater) and 0 < decision.delay_seconds <= 4 * 2**retries
    given_up = failure_policy.decide(POLICY, "video_worker.upload", TransientError("503 SlowDown"), 2, 3)
    assert given_up == failure_policy.DeadLetterIt("503 SlowDown")


def test_permanent_failures_are_dead_lettered_at_once_with_their_message() -> None:
    assert failure_policy.decide(POLICY, "video_worker.download", ObjectNotFound("gone"), 0, 3) == \
        failure_policy.DeadLetterIt("gone")
    assert failure_policy.decide(POLICY, "video_worker.infer", ModelRejected("not a video"), 0, 3) == \
        failure_policy.DeadLetterIt("not a video")
    assert failure_policy.decide(POLICY, "video_worker.infer", KeyError("bug"), 0, 3) == \
        failure_policy.DeadLetterIt("KeyError: 'bug'")


def test_a_model_process_that_died_counts_against_max_deliveries_not_max_retries() -> None:
    generous = RetryPolicy(RetryRule(max_retries=10), {})
    lost = WorkerLost("model process killed by SIGKILL while running video_worker.infer")
    assert isinstance(failure_policy.decide(generous, "video_worker.infer", lost, 1, 3), failure_policy.RetryLater)
    decision = failure_policy.decide(generous, "video_worker.infer", lost, 2, 3)
    assert decision == failure_policy.DeadLetterIt(f"{lost} (3 times; MAX_DELIVERIES=3)")


def test_a_stalled_model_counts_against_max_deliveries_and_its_collateral_against_max_retries() -> None:
    generous = RetryPolicy(RetryRule(max_retries=10), {})
    stalled = ModelStalled("the model made no progress for 120s while running video_worker.infer")
    assert isinstance(failure_policy.decide(generous, "video_worker.infer", stalled, 1, 3), failure_policy.RetryLater)
    assert failure_policy.decide(generous, "video_worker.infer", stalled, 2, 3) == \
        failure_policy.DeadLetterIt(f"{stalled} (3 times; MAX_DELIVERIES=3)")
    collateral = SharedProcessKilled("model process 7, shared with another segment, was killed for that segment")
    assert isinstance(failure_policy.decide(generous, "video_worker.infer", collateral, 2, 3),
                      failure_policy.RetryLater)
    assert isinstance(failure_policy.decide(generous, "video_worker.infer", collateral, 10, 3),
                      failure_policy.DeadLetterIt)


def test_timeouts_and_full_disks_are_transient() -> None:
    assert isinstance(failure_policy.decide(POLICY, "video_worker.infer", StageTimeout("over"), 0, 3), failure_policy.RetryLater)
    full = OSError(errno.ENOSPC, "No space left on device", "/scratch/x.mp4")
    assert isinstance(classify(full), DiskFull) and "ENOSPC" in str(classify(full))
    assert isinstance(failure_policy.decide(POLICY, "video_worker.download", full, 0, 3), failure_policy.RetryLater)


@pytest.mark.parametrize("count, poison", [(None, False), (1, False), (3, False), (4, True), (9, True)])
def test_messages_delivered_more_than_max_deliveries_times_are_poison(count: int | None, poison: bool) -> None:
    reason = failure_policy.too_many_deliveries(count, 3)
    assert (reason is not None) == poison
    if reason:
        assert f"delivered {count} times" in reason and f"lost {count - 1} times" in reason


def test_patiently_retries_until_the_action_works() -> None:
    calls, slept = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("refused")
        return "published"

    clock = iter(range(1000)).__next__
    assert failure_policy.patiently(flaky, "publish", patience=60, sleep=slept.append, clock=lambda: float(clock())) == \
        "published"
    assert len(calls) == 4 and len(slept) == 3
    # Each wait is within its doubling bound (0.5 s, 1 s, 2 s; jitter takes it down to half), so they never shrink.
    assert [ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(slept, (0.5, 1.0, 2.0), strict=True)] == [True] * 3
    assert slept == sorted(slept)


def test_patiently_gives_up_after_its_patience_with_the_last_error() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    tried: list[float] = []

    def refused() -> None:
        tried.append(now[0])
        raise ConnectionError("broker down")

    for seed in range(50):  # whatever the jitter: the whole patience is used, the last attempt at its end
        now[0] = 0.0
        tried.clear()
        random.seed(seed)
        with pytest.raises(Undelivered, match=r"publishing the retry failed for 10s: ConnectionError: broker down"):
            failure_policy.patiently(refused, "publishing the retry", patience=10, sleep=sleep, clock=lambda: now[0])
        assert tried[0] == 0.0 and tried[-1] == pytest.approx(10.0), seed
        assert now[0] == pytest.approx(10.0), seed
        gaps = [b - a for a, b in itertools.pairwise(tried)]
        assert 0.25 <= gaps[0] <= 0.5 and max(gaps) <= 8.0, seed  # the backoff's bounds (PUBLISH_BACKOFF)


def test_receive_backoff_grows_while_failing_and_resets_on_success() -> None:
    backoff = failure_policy.ReceiveBackoff((1.0, 8.0))
    delays = [backoff.failed("receive", "500") for _ in range(6)]
    assert 0.5 <= delays[0] <= 1.0 and all(4.0 <= d <= 8.0 for d in delays[3:])
    backoff.succeeded("receive")
    assert backoff.failures == 0 and backoff.failed("receive", "500") <= 1.0
