"""``model_process``: the model in child processes, killed at its time limit or when it stalls, replaced when it
dies; several segments at once in one process sharing one model.

Real child processes running ``tests.support.models:misbehaving`` and ``:progressing``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.stack import REPO, wait_until
from video_worker.adapters.model_process import ProcessRunner
from video_worker.adapters.model_progress import ProgressBoard, StallWatch
from video_worker.errors import ConfigError, ModelStalled, SharedProcessKilled, StageTimeout, WorkerLost
from video_worker.limits import Deadline
from video_worker.settings import Settings

BASE = {"input_bucket_name": "in-b", "output_bucket_name": "out-b", "segment_completions_table_name": "tbl"}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ProcessRunner]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MISBEHAVE_STATE_DIR", str(tmp_path / "state"))
    r = ProcessRunner(Settings(**BASE, model="tests.support.models:misbehaving"), 1, start_timeout=60)
    r.start()
    yield r
    r.close()


def _run(runner: ProcessRunner, tmp_path: Path, content: bytes, limit: float = 30) -> bytes:
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    src.write_bytes(content)
    runner.run(src, dst, "sbs", Deadline.start("video_worker.infer", limit))
    return dst.read_bytes()


def _pid(runner: ProcessRunner) -> int:
    [child] = runner.children
    return child.pid


def test_the_model_runs_in_a_child_process_that_serves_many_segments(runner: ProcessRunner, tmp_path: Path) -> None:
    pid = _pid(runner)
    assert [_run(runner, tmp_path, f"segment {i}".encode()) for i in range(3)] == [b"segment 0", b"segment 1",
                                                                                     b"segment 2"]
    assert _pid(runner) == pid


@pytest.mark.parametrize("marker, signal", [(b"POISON", "SIGKILL"), (b"ABORT", "SIGABRT")])
def test_a_crash_takes_down_the_child_only_and_the_next_segment_gets_a_new_one(
        runner: ProcessRunner, tmp_path: Path, marker: bytes, signal: str) -> None:
    pid = _pid(runner)
    with pytest.raises(WorkerLost, match=f"model process killed by {signal} while running video_worker.infer"):
        _run(runner, tmp_path, marker)
    assert all(child.lost for child in runner.children)
    assert _run(runner, tmp_path, b"fine") == b"fine"
    assert _pid(runner) != pid


def test_a_hang_is_killed_at_the_time_limit(runner: ProcessRunner, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StageTimeout, match=r"video_worker\.infer exceeded its time limit of 1s; model process"):
        _run(runner, tmp_path, b"HANG", limit=1)
    assert 1 <= time.monotonic() - started < 10
    assert _run(runner, tmp_path, b"after") == b"after"


def test_errors_the_model_raises_come_back_as_our_error_tree(runner: ProcessRunner, tmp_path: Path) -> None:
    pid = _pid(runner)
    with pytest.raises(Exception, match="scratch disk full") as info:
        _run(runner, tmp_path, b"DISKFULL")
    assert type(info.value).__name__ == "DiskFull"
    assert _run(runner, tmp_path, b"DISKFULL") == b"DISKFULL"  # the second time it works
    assert _pid(runner) == pid, "an exception does not cost the process"


def test_a_model_that_cannot_load_stops_the_worker_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    runner = ProcessRunner(Settings(**BASE, model="tests.support.models:no_such_factory"), 1, start_timeout=60)
    with pytest.raises(ConfigError, match=r"MODEL 'tests.support.models:no_such_factory' failed to load: "):
        runner.start()


# Progress (``reports_progress``): a model that stops making progress is killed long before its time limit.

PROGRESSING = "tests.support.models:progressing"


def _runner(monkeypatch: pytest.MonkeyPatch, slots: int = 1, **settings: object) -> ProcessRunner:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    runner = ProcessRunner(Settings(**BASE, model=PROGRESSING, configured_infer_concurrency=slots, **settings),  # type: ignore[arg-type]
                           slots, start_timeout=60)
    runner.start()
    return runner


def _convert(runner: ProcessRunner, tmp_path: Path, name: str, content: bytes, limit: float = 60) -> bytes:
    src, dst = tmp_path / f"{name}.in", tmp_path / f"{name}.out"
    src.write_bytes(content)
    runner.run(src, dst, "sbs", Deadline.start("video_worker.infer", limit))
    return dst.read_bytes()


def _in_thread(action: Callable[[], object]) -> concurrent.futures.Future[object]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(action)
    pool.shutdown(wait=False)
    return future


def test_a_model_that_stops_making_progress_is_killed_after_the_stall_limit(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = _runner(monkeypatch, stall_seconds=1)
    try:
        pid = _pid(runner)
        started = time.monotonic()
        with pytest.raises(ModelStalled, match=r"the model made no progress for \d+s while running video_worker\.infer "
                                               r"\(STEREO_STALL_SECONDS=1\) after 3 progress report\(s\); "
                                               f"model process {pid} killed"):
            _convert(runner, tmp_path, "stall", b"STALL")
        assert 1 <= time.monotonic() - started < 6, "killed at the stall limit, not at the 60 s time limit"
        assert issubclass(ModelStalled, WorkerLost), "transient, and bounded by MAX_DELIVERIES"
        assert _convert(runner, tmp_path, "after", b"after") == b"after"
        assert _pid(runner) != pid, "the slot came back with a fresh process"
    finally:
        runner.close()


def test_a_slow_model_that_keeps_making_progress_is_not_killed(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    runner = _runner(monkeypatch, stall_seconds=1)
    try:
        pid = _pid(runner)
        started = time.monotonic()
        assert _convert(runner, tmp_path, "slow", b"SLOW 3 ") == b"SLOW 3 "
        assert time.monotonic() - started >= 3
        assert _pid(runner) == pid
    finally:
        runner.close()


def test_without_a_stall_limit_only_the_time_limit_stops_a_stalled_model(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    runner = _runner(monkeypatch, stall_seconds=0)
    try:
        with pytest.raises(StageTimeout, match="exceeded its time limit of 2s"):
            _convert(runner, tmp_path, "stall", b"STALL", limit=2)
    finally:
        runner.close()


# One process, several segments at once (``INFER_PER_PROCESS``): one loaded model, shared by threads.

def test_concurrent_segments_share_one_model_process_and_one_loaded_model(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = _runner(monkeypatch, 2, configured_infer_per_process=2)
    try:
        [child] = runner.children
        meetings = [_in_thread(lambda i=i: _convert(runner, tmp_path, f"meet-{i}", b"MEET")) for i in range(2)]
        seen = [json.loads(future.result(60)) for future in meetings]  # type: ignore[arg-type]
        assert [s["pid"] for s in seen] == [child.pid, child.pid]
        assert [s["build"] for s in seen] == [1, 1], "the model was built once in that process"
        assert seen[0]["model"] == seen[1]["model"]
        assert seen[0]["thread"] != seen[1]["thread"]
        assert [s["at_once"] for s in seen] == [2, 2], "both were converting at the same time"
        assert runner.children == [child]
    finally:
        runner.close()


def test_per_process_splits_the_slots_into_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _runner(monkeypatch, 3, configured_infer_per_process=2)
    try:
        assert len(runner.children) == 2
    finally:
        runner.close()


def test_a_stall_in_a_shared_process_fails_the_others_there_as_collateral(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = _runner(monkeypatch, 2, configured_infer_per_process=2, stall_seconds=2)
    try:
        [child] = runner.children
        slow = _in_thread(lambda: _convert(runner, tmp_path, "slow", b"SLOW 60 "))
        wait_until(lambda: child.in_flight == 1, 30, "the slow segment to be in flight")
        with pytest.raises(ModelStalled, match=r"no progress for \d+s while running video_worker.infer \(STEREO_STALL_SECONDS=2\)"):
            _convert(runner, tmp_path, "stall", b"STALL")
        with pytest.raises(SharedProcessKilled, match=f"model process {child.pid}, shared with another segment, "
                                                      r"was killed for that segment \(ModelStalled\)"):
            slow.result(10)
        assert not issubclass(SharedProcessKilled, WorkerLost), "collateral does not count as a delivery lost"
        assert _convert(runner, tmp_path, "after", b"after") == b"after"
        assert runner.children[0].pid != child.pid
    finally:
        runner.close()


def test_a_crash_of_a_shared_process_fails_every_segment_in_flight_there(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = _runner(monkeypatch, 2, configured_infer_per_process=2)
    try:
        [child] = runner.children
        slow = _in_thread(lambda: _convert(runner, tmp_path, "slow", b"SLOW 60 "))
        wait_until(lambda: child.in_flight == 1, 30, "the slow segment to be in flight")
        with pytest.raises(WorkerLost, match="model process killed by SIGKILL while running video_worker.infer "
                                             r"\(with 1 other segment\(s\) in flight there\)"):
            _convert(runner, tmp_path, "poison", b"POISON")
        with pytest.raises(WorkerLost, match="killed by SIGKILL"):
            slow.result(10)
        assert _convert(runner, tmp_path, "after", b"after") == b"after"
    finally:
        runner.close()


def test_the_stall_watch_counts_from_the_last_change_of_the_shared_counter() -> None:
    board, fd = ProgressBoard.create(2)
    os.close(fd)
    now = [100.0]
    progress = board.reporter(1)
    watch = StallWatch(board, 1, 10, board.read(1), clock=lambda: now[0])
    now[0] = 109.0
    assert not watch.stalled()
    progress()
    progress()
    assert not watch.stalled() and watch.steps == 2 and board.read(0) == 0  # the other slot is untouched
    now[0] = 118.9
    assert not watch.stalled(), "10 s from the last progress, not from the start"
    now[0] = 119.0
    assert watch.stalled() and watch.idle() == 10
    assert StallWatch(board, 1, 0, board.read(1), clock=lambda: now[0] + 1e6).stalled() is False  # 0: off
