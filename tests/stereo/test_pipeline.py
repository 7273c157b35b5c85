"""The pipelined converter: the same bytes as the serial one, errors and threads handled as a serial loop would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from video_worker.errors import ModelRejected
from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.depth import Depths, Frames
from video_worker.models.stereo.pipeline import Pipeline, Stage
from video_worker.models.stereo.synthetic import Scene, write_clip
from video_worker.models.stereo.timing import PhaseClock


def converter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stereo-")]


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two consecutive 1.2 s segments with audio (30 frames: batches of 4 leave a short last one)."""
    root = tmp_path_factory.mktemp("pipe")
    first, second = root / "first.mp4", root / "second.mp4"
    write_clip(first, seconds=1.2, width=320, height=180, fps=25, audio=True, gop=25, seed=4)
    write_clip(second, seconds=1.2, width=320, height=180, fps=25, audio=True, gop=25, seed=5)
    return first, second


@pytest.mark.parametrize("mode", ["sbs", "anaglyph"])
def test_pipelined_output_is_byte_identical_to_serial(segments: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    outputs = {}
    for pipeline in ("off", "on"):
        model = StereoModel(load_settings({"STEREO_PIPELINE": pipeline, "STEREO_CONTEXT_FRAMES": "6"}))
        dst, preview = tmp_path / f"{pipeline}.mp4", tmp_path / f"{pipeline}.png"
        report = model.convert(segments[1], dst, mode, preview=preview, context=segments[0])  # type: ignore[arg-type]
        assert report.frames == 30 and report.context_frames == 6 and report.pipelined == (pipeline == "on")
        outputs[pipeline] = (dst.read_bytes(), preview.read_bytes())
    assert outputs["on"] == outputs["off"]
    assert converter_threads() == []


def test_phases_are_busy_time_per_stage(segments: tuple[Path, Path], tmp_path: Path) -> None:
    report = StereoModel(load_settings({})).convert(segments[0], tmp_path / "out.mp4", "sbs")
    assert all(report.phases[p] > 0 for p in ("decode", "depth", "render", "encode"))
    assert all(report.phases_cpu[p] > 0 for p in ("decode", "render", "encode"))
    assert max(report.phases.values()) <= report.seconds


class FailingAt:
    """Depth like the gradient plug-in, until batch ``at`` (counted from 0), where it raises or returns a bad shape."""

    version = "failing"

    def __init__(self, at: int, bad_shape: bool = False) -> None:
        self.at, self.bad_shape, self.calls = at, bad_shape, 0

    def estimate(self, frames: Frames) -> Depths:
        self.calls += 1
        n, h, w = frames.shape[:3]
        if self.calls - 1 == self.at:
            if self.bad_shape:
                return np.zeros((n, h + 2, w), np.float32)
            raise RuntimeError("device lost")
        return np.zeros((n, h, w), np.float32)

    def reset(self) -> None:
        self.calls = 0


@pytest.mark.parametrize("pipeline", ["on", "off"])
def test_an_estimator_error_reaches_the_caller_and_no_thread_is_left(
        segments: tuple[Path, Path], tmp_path: Path, pipeline: str) -> None:
    settings = load_settings({"STEREO_PIPELINE": pipeline})
    dst = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match=r"^device lost$"):
        StereoModel(settings, FailingAt(3)).convert(segments[0], dst, "sbs")
    assert not dst.exists() and converter_threads() == []
    with pytest.raises(ValueError, match=r"depth estimator returned shape \(4, 110, 192\), expected \(4, 108, 192\)"):
        StereoModel(settings, FailingAt(0, bad_shape=True)).convert(segments[0], dst, "sbs")
    assert not dst.exists() and converter_threads() == []


def test_a_decode_error_is_the_serial_one(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    data = bytearray(clip[0].read_bytes())
    mdat = data.find(b"mdat") + 8
    at = mdat + int((len(data) - mdat) * 0.6)
    data[at : at + 2000] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    src = tmp_path / "corrupt.mp4"
    src.write_bytes(bytes(data))
    messages = []
    for pipeline in ("off", "on"):
        dst = tmp_path / f"{pipeline}.mp4"
        with pytest.raises(ModelRejected) as info:
            StereoModel(load_settings({"STEREO_PIPELINE": pipeline})).infer(src, dst, "sbs")
        assert not dst.exists()
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "corrupt" in messages[0]
    assert converter_threads() == []


def test_progress_is_reported_per_frame_and_batch(segments: tuple[Path, Path], tmp_path: Path) -> None:
    calls: list[str] = []
    model = StereoModel(load_settings({"STEREO_CONTEXT_FRAMES": "8"}))
    assert StereoModel.reports_progress is True
    model.infer(segments[1], tmp_path / "out.mp4", "sbs", context=segments[0],
                progress=lambda: calls.append(threading.current_thread().name))
    # 30 frames decoded, 8 batches of depth (4 x 7 + 2), 2 batches of context, 30 frames encoded
    assert len(calls) == 30 + 8 + 2 + 30
    assert calls.count("stereo-decode") == 30 and calls.count("stereo-encode") == 30
    assert calls.count("stereo-depth") == 10


def test_a_failing_progress_callback_fails_the_conversion(segments: tuple[Path, Path], tmp_path: Path) -> None:
    def progress() -> None:
        raise KeyError("monitor gone")

    with pytest.raises(KeyError):
        StereoModel(load_settings({})).infer(segments[0], tmp_path / "out.mp4", "sbs", progress=progress)
    assert not (tmp_path / "out.mp4").exists() and converter_threads() == []


def numbers(count: int, fail_at: int | None = None) -> object:
    def source(clock: PhaseClock) -> Iterator[int]:
        for i in range(count):
            if i == fail_at:
                raise ModelRejected(f"source failed at {i}")
            yield i
    return source


def test_the_furthest_failing_stage_wins_and_earlier_batches_get_through() -> None:
    seen: list[int] = []

    def check(i: int, clock: PhaseClock) -> int:
        if i == 2:
            raise ValueError("stage failed at 2")
        return i

    def collect(i: int, clock: PhaseClock) -> int:
        seen.append(i)
        return i

    pipeline = Pipeline(numbers(10, fail_at=6), [Stage("check", check), Stage("collect", collect)],  # type: ignore[arg-type]
                        name="stereo")
    with pytest.raises(ValueError, match="stage failed at 2"):
        pipeline.run()
    assert seen == [0, 1] and converter_threads() == []
    finished: list[str] = []
    ok = Pipeline(numbers(10, fail_at=6), [Stage("collect", collect, finish=lambda c: finished.append("x"))],  # type: ignore[arg-type]
                  name="stereo")
    seen.clear()
    with pytest.raises(ModelRejected, match="source failed at 6"):
        ok.run()
    assert seen == [0, 1, 2, 3, 4, 5] and finished == []  # what the source made went through; no finish


def test_batches_in_flight_are_bounded() -> None:
    made: list[int] = []
    too_many = threading.Event()

    def source(clock: PhaseClock) -> Iterator[int]:
        for i in range(8):
            made.append(i)
            if len(made) > 3:
                too_many.set()
            yield i

    def last(i: int, clock: PhaseClock) -> int:
        if i == 0:  # hold the first batch: the source must stop at 3 batches in flight
            assert not too_many.wait(0.3)
        return i

    Pipeline(source, [Stage("pass", lambda i, c: i), Stage("last", last)], in_flight=3, name="stereo").run()
    assert made == list(range(8))
