"""Consecutive segments cut from one clip, converted separately, join with the concat demuxer without gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.media import probe
from video_worker.models.stereo import StereoModel
from video_worker.models.stereo.chunks import concat, split_at_keyframes
from video_worker.models.stereo.synthetic import write_clip


@pytest.mark.parametrize(("mode", "reset"), [("sbs", True), ("anaglyph", True), ("sbs", False)])
def test_converted_segments_concatenate(tmp_path: Path, model: StereoModel, mode: str, reset: bool) -> None:
    src = tmp_path / "long.mp4"
    write_clip(src, seconds=2.0, width=192, height=108, fps=25, gop=25, seed=3)
    segments = split_at_keyframes(src, tmp_path / "seg", seconds=1.0, reset_timestamps=reset)
    assert len(segments) == 2
    outs = []
    for seg in segments:
        dst = seg.with_name(f"{seg.stem}_{mode}.mp4")
        model.infer(seg, dst, mode)  # type: ignore[arg-type]
        outs.append(dst)
    joined = probe(concat(outs, tmp_path / "joined.mp4"))
    reference = probe(concat(segments, tmp_path / "joined_src.mp4"))  # the 2D segments joined the same way
    parts = [probe(p) for p in outs]
    assert [p.pts for p in parts] == [probe(s).pts for s in segments]  # each segment keeps its own timestamps
    assert len(joined.pts) == sum(len(p.pts) for p in parts) == 50
    assert all(b > a for a, b in zip(joined.pts, joined.pts[1:], strict=False))
    assert joined.pts == reference.pts
    assert len(joined.audio) == len(reference.audio) > 0
    assert joined.codec == "h264"
