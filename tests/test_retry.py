from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path

import pytest

from video_worker.errors import ConfigError, ObjectNotFound, TransientError
from video_worker.inference import SimulatedAccelerator, load_model
from video_worker.retry import SQS_MAX_DELAY_SECONDS, RetryPolicy, RetryRule
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


def test_model_by_import_path(tmp_path: Path) -> None:
    model = load_model("video_worker.inference:PassthroughModel")
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"xyz")
    model.infer(src, dst, "sbs")
    assert dst.read_bytes() == b"xyz"
    with pytest.raises(ConfigError, match="failed to load"):
        load_model("video_worker.inference:NoSuchFactory")
    with pytest.raises(ValueError, match="not importable"):
        Settings(**BASE, model="no_such_package.models:Factory")


def test_simulated_accelerator_runs_one_inference_per_host_at_a_time(tmp_path: Path) -> None:
    spans: list[tuple[float, float]] = []
    lock = tmp_path / "scratch" / ".accelerator.lock"
    src = tmp_path / "in"
    src.write_bytes(b"frame" * 100)

    def run(i: int) -> None:
        model = SimulatedAccelerator(0.15, lock)  # separate instances, as separate processes would have
        model.infer(src, tmp_path / f"out{i}", "sbs")
        spans.append((time.monotonic() - 0.15, time.monotonic()))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all((tmp_path / f"out{i}").read_bytes() == src.read_bytes() for i in range(3))
    spans.sort()
    assert all(a_end <= b_start + 0.01 for (_, a_end), (b_start, _) in itertools.pairwise(spans))
