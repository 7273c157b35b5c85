"""``model_process``: the model in child processes, killed at its time limit, replaced when it dies.

Real child processes running ``tests.support.models:misbehaving``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import REPO
from video_worker.adapters.model_process import ProcessRunner
from video_worker.errors import ConfigError, StageTimeout, WorkerLost
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
    [child] = list(runner._all)
    return child.process.pid


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
    assert not runner._all
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
