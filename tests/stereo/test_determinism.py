"""Same input and settings give the same bytes: twice, with any STEREO_BATCH, any OpenCV thread count, any history."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.stereo.conftest import Convert
from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.synthetic import Scene, write_clip


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_bytes_twice(clip: tuple[Path, Scene], converted: Convert, model: StereoModel, tmp_path: Path) -> None:
    model.convert(clip[0], tmp_path / "again.mp4", "sbs")
    assert digest(tmp_path / "again.mp4") == digest(converted("sbs"))


def test_batch_size_does_not_change_output(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    for mode in ("sbs", "anaglyph"):
        outs = []
        for batch in ("1", "8"):
            dst = tmp_path / f"b{batch}_{mode}.mp4"
            StereoModel(load_settings({"STEREO_BATCH": batch})).convert(clip[0], dst, mode)
            outs.append(digest(dst))
        assert outs[0] == outs[1], mode


def test_history_and_opencv_threads_do_not_change_output(
    clip: tuple[Path, Scene], converted: Convert, tmp_path: Path
) -> None:
    other = tmp_path / "other.mp4"
    write_clip(other, seconds=0.4, width=160, height=96, gop=5, seed=9)
    fresh = StereoModel(load_settings({}))
    fresh.convert(other, tmp_path / "other_out.mp4", "anaglyph")  # different size and mode first
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2 if threads == 1 else 1)
        fresh.convert(clip[0], tmp_path / "after.mp4", "sbs")
    finally:
        cv2.setNumThreads(threads)
    assert digest(tmp_path / "after.mp4") == digest(converted("sbs"))


def test_settings_that_shape_output_change_bytes(clip: tuple[Path, Scene], converted: Convert, tmp_path: Path) -> None:
    StereoModel(load_settings({"STEREO_DIVERGENCE": "3"})).convert(clip[0], tmp_path / "d3.mp4", "sbs")
    assert digest(tmp_path / "d3.mp4") != digest(converted("sbs"))


def test_concurrent_conversions_in_threads(clip: tuple[Path, Scene], converted: Convert, tmp_path: Path) -> None:
    """One model, several threads (the host may run a threads pool): each output is still the reference bytes."""
    from concurrent.futures import ThreadPoolExecutor

    shared = StereoModel(load_settings({}))
    dsts = [tmp_path / f"t{i}.mp4" for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda d: shared.convert(clip[0], d, "sbs"), dsts))
    assert {digest(d) for d in dsts} == {digest(converted("sbs"))}


class _NoFork:
    """An estimator without fork(): the model must serialise conversions that use it."""

    version = "heuristic-1"

    def __init__(self) -> None:
        from video_worker.models.stereo import HeuristicDepth

        self._inner = HeuristicDepth()

    def estimate(self, frames: np.ndarray) -> np.ndarray:
        return self._inner.estimate(frames)

    def reset(self) -> None:
        self._inner.reset()


def test_estimator_without_fork_is_serialised(clip: tuple[Path, Scene], converted: Convert, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    heuristic = load_settings({"STEREO_DEPTH": "heuristic"})
    StereoModel(heuristic).convert(clip[0], tmp_path / "reference.mp4", "sbs")
    shared = StereoModel(heuristic, estimator=_NoFork())
    dsts = [tmp_path / f"n{i}.mp4" for i in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda d: shared.convert(clip[0], d, "sbs"), dsts))
    assert {digest(d) for d in dsts} == {digest(tmp_path / "reference.mp4")}


def test_conversions_sharing_one_model_process_give_the_reference_bytes(
        clip: tuple[Path, Scene], converted: Convert, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``INFER_PER_PROCESS=2``: two segments at once in one model process (the GPU layout), one loaded model."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.stack import REPO
    from video_worker.adapters.model_process import ProcessRunner
    from video_worker.limits import Deadline
    from video_worker.settings import Settings

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    settings = Settings(input_bucket_name="in-b", output_bucket_name="out-b", segment_completions_table_name="tbl",
                        model="stereo", configured_infer_concurrency=2, configured_infer_per_process=2)
    runner = ProcessRunner(settings, settings.infer_concurrency, start_timeout=120)
    try:
        runner.start()
        assert len(runner.children) == 1
        dsts = [tmp_path / f"p{i}.mp4" for i in range(2)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda d: runner.run(clip[0], d, "sbs", Deadline.start("video_worker.infer", 120)), dsts))
        assert {digest(d) for d in dsts} == {digest(converted("sbs"))}
    finally:
        runner.close()
