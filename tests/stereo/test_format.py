"""The output is concat-safe: H.264 yuv420p mp4, the input's time base, pts and duration, audio copied untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stereo.conftest import Convert
from tests.support.media import probe
from video_worker.models.stereo import StereoModel
from video_worker.models.stereo.synthetic import Scene

CASES = [("sbs", "full", (640, 180)), ("sbs", "half", (320, 180)), ("anaglyph", "full", (320, 180))]


@pytest.mark.parametrize(("mode", "sbs", "size"), CASES)
def test_video_stream(clip: tuple[Path, Scene], converted: Convert, mode: str, sbs: str, size: tuple[int, int]) -> None:
    src, out = probe(clip[0]), probe(converted(mode, sbs))
    assert out.codec == "h264"
    assert out.pix_fmt == "yuv420p"
    assert out.size == size
    assert len(out.pts) == len(src.pts) == 50
    assert out.time_base == src.time_base
    assert out.pts == src.pts
    assert out.duration == src.duration
    assert out.keyframes[0]


@pytest.mark.parametrize(("mode", "sbs"), [("sbs", "full"), ("anaglyph", "full")])
def test_audio_copied_untouched(clip: tuple[Path, Scene], converted: Convert, mode: str, sbs: str) -> None:
    src, out = probe(clip[0]), probe(converted(mode, sbs))
    assert out.audio_codec == src.audio_codec == "aac"
    assert len(out.audio) == len(src.audio) > 0
    assert out.audio == src.audio  # same pts, dts and bytes, packet by packet


def test_fingerprint_in_metadata(converted: Convert, model: StereoModel) -> None:
    assert probe(converted("sbs")).metadata["comment"] == f"stereo {model.fingerprint} sbs"
    assert probe(converted("sbs", "half")).metadata["comment"].endswith(" sbs-half")


def test_report(clip: tuple[Path, Scene], model: StereoModel, tmp_path: Path) -> None:
    report = model.convert(clip[0], tmp_path / "o.mp4", "anaglyph", preview=tmp_path / "p.png")
    assert report.frames == 50
    assert report.output_size == (320, 180)
    assert set(report.phases) == {"context", "decode", "depth", "render", "encode"}
    assert all(v >= 0 for v in report.phases.values())
    assert report.fps > 0 and report.fps_per_core > 0
    assert (tmp_path / "p.png").stat().st_size > 0


def test_clip_without_audio(tmp_path: Path, model: StereoModel) -> None:
    from video_worker.models.stereo.synthetic import write_clip

    write_clip(tmp_path / "mute.mp4", seconds=0.4, width=160, height=96, audio=False, gop=5)
    model.infer(tmp_path / "mute.mp4", tmp_path / "o.mp4", "sbs")
    out = probe(tmp_path / "o.mp4")
    assert out.audio_codec is None
    assert out.size == (320, 96)
    assert len(out.pts) == 10
