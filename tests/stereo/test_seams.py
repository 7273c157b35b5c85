"""Segments of one video join without a jump in depth (``STEREO_CONTEXT_FRAMES``), measured on the output.

A continuous scene (textured discs moving in front of a panning backdrop) is cut at keyframes by stream copy, as
the upstream chunker cuts it. Each segment is converted on its own, as different hosts would, given the previous
segment as context; the near disc's disparity is measured by block matching in every output frame and compared
with a conversion of the whole clip as one segment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from video_worker.models.stereo.chunks import split_at_keyframes
from video_worker.models.stereo.model import StereoModel
from video_worker.models.stereo.quality import joined_disparity, jumps, near_disparity, ordinary_change
from video_worker.models.stereo.settings import load_settings
from video_worker.models.stereo.synthetic import write_clip

SECONDS, FPS, SEGMENT_SECONDS = 3.0, 25, 1.0


class Cut:
    """The clip, its segments and the whole-clip conversion's near disparity per frame."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clip = root / "clip.mp4"
        self.scene = write_clip(self.clip, seconds=SECONDS, width=320, height=180, fps=FPS, audio=True, gop=FPS)
        self.segments = split_at_keyframes(self.clip, root / "cut", seconds=SEGMENT_SECONDS)
        self.model = StereoModel(load_settings({}))
        self.model.convert(self.clip, root / "whole.mp4", "sbs")
        self.whole = np.array(near_disparity(self.scene, root / "whole.mp4"))
        self.cut_frames: list[int] = []

    def convert_segments(self, with_context: bool, order: list[int] | None = None) -> npt.NDArray[np.float64]:
        """Each segment converted on its own (in ``order``), with or without its predecessor as context."""
        outputs: dict[int, Path] = {}
        for i in order or range(len(self.segments)):
            out = self.root / f"seg{i}-{with_context}.mp4"
            context = self.segments[i - 1] if with_context and i > 0 else None
            report = self.model.convert(self.segments[i], out, "sbs", context=context)
            assert report.context_frames == (self.model.context_frames if context else 0)
            outputs[i] = out
        joined, self.cut_frames = joined_disparity(self.scene, [outputs[i] for i in sorted(outputs)])
        return joined


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory) -> Cut:
    return Cut(tmp_path_factory.mktemp("seams"))


def test_segments_converted_apart_match_the_whole_clip_at_every_frame(cut: Cut) -> None:
    assert len(cut.segments) == 3
    joined = cut.convert_segments(with_context=True, order=[2, 0, 1])  # any order, as on many hosts
    assert len(joined) == len(cut.whole) == round(SECONDS * FPS)
    assert float(np.abs(joined - cut.whole).max()) <= 0.5, "every frame within 0.5 px of the whole-clip conversion"
    assert cut.cut_frames == [25, 50]
    assert max(jumps(joined, cut.cut_frames)) <= ordinary_change(joined, cut.cut_frames)


def test_without_context_the_depth_jumps_at_the_cut(cut: Cut) -> None:
    """What the test above guards against: the first frames of a segment start from nothing."""
    apart = cut.convert_segments(with_context=False)
    assert max(jumps(apart, cut.cut_frames)) > ordinary_change(apart, cut.cut_frames)
    assert float(np.abs(apart - cut.whole).max()) > 0.5


def test_an_unreadable_or_mismatched_context_is_ignored_and_the_segment_still_converts(cut: Cut,
                                                                                      tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    other = tmp_path / "other.mp4"
    write_clip(other, seconds=0.4, width=160, height=90, fps=FPS, audio=False, gop=5)
    for context in (junk, other, tmp_path / "gone.mp4"):
        report = cut.model.convert(cut.segments[1], tmp_path / "out.mp4", "sbs", context=context)
        assert report.context_frames == 0 and report.frames == round(SEGMENT_SECONDS * FPS)


def test_context_is_read_from_its_last_frames_only(cut: Cut, tmp_path: Path) -> None:
    """A long previous segment costs a seek and the decode of its tail from the keyframe before, not of the whole
    file (200 frames, a keyframe every 25)."""
    long = tmp_path / "long.mp4"
    write_clip(long, seconds=8.0, width=320, height=180, fps=FPS, audio=False, gop=FPS)
    report = cut.model.convert(cut.segments[1], tmp_path / "out.mp4", "sbs", context=long)
    assert report.context_frames == cut.model.context_frames == 24
    assert 24 <= report.context_decoded <= 24 + 2 + FPS
