from __future__ import annotations

import random

import pytest

from video_worker.errors import ConfigError, ObjectNotFound, TransientError
from video_worker.retry_policy import SQS_MAX_DELAY_SECONDS, RetryPolicy, RetryRule
from video_worker.settings import Settings, load_settings

BASE = {"input_bucket_name": "in-b", "output_bucket_name": "out-b", "segment_completions_table_name": "tbl"}


def test_only_transient_errors_are_retried_within_the_bound() -> None:
    policy = RetryPolicy(RetryRule(max_retries=2), {"video_worker.infer": RetryRule(max_retries=0)})
    assert policy.should_retry("video_worker.download", TransientError("503"), 0)
    assert policy.should_retry("video_worker.download", TransientError("503"), 1)
    assert not policy.should_retry("video_worker.download", TransientError("503"), 2)
    assert not policy.should_retry("video_worker.download", ObjectNotFound("404"), 0)
    assert not policy.should_retry("video_worker.download", ValueError("bug"), 0)
    assert not policy.should_retry("video_worker.infer", TransientError("oom"), 0)


def test_delays_grow_exponentially_with_jitter_and_stay_within_sqs_limits() -> None:
    policy = RetryPolicy(RetryRule(base_seconds=2, max_delay_seconds=900), {})
    rng = random.Random(7)
    for retries, ceiling in [(0, 2), (1, 4), (3, 16), (8, 512), (12, 900), (40, 900)]:
        delays = {policy.delay_seconds("t", retries, rng) for _ in range(200)}
        assert max(delays) <= ceiling and min(delays) >= ceiling // 2 - 1, (retries, delays)
        assert max(delays) <= SQS_MAX_DELAY_SECONDS
    assert len({policy.delay_seconds("t", 8, rng) for _ in range(50)}) > 5, "jittered"


def test_per_task_retry_overrides_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_RETRY_OVERRIDES", '{"video_worker.infer": {"max_retries": 1, "base_seconds": 30}}')
    monkeypatch.setenv("TASK_MAX_RETRIES", "7")
    policy = Settings(**BASE).retry_policy
    assert policy.rule("video_worker.infer").max_retries == 1
    assert policy.rule("video_worker.infer").base_seconds == 30
    assert policy.rule("video_worker.upload").max_retries == 7


def test_retry_delays_beyond_sqs_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in BASE.items():
        monkeypatch.setenv(key.upper(), value)
    monkeypatch.setenv("TASK_RETRY_MAX_DELAY_SECONDS", "901")
    with pytest.raises(ConfigError, match="TASK_RETRY_MAX_DELAY_SECONDS Input should be less than or equal to 900"):
        load_settings()
