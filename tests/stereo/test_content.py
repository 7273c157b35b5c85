"""The pictures: the two sbs views differ, half sbs squeezes them, the anaglyph mixes them and resembles the input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.stereo.conftest import Convert
from tests.support.media import luma_frames, rgb_frame
from video_worker.models.stereo.synthetic import Scene


def test_sbs_halves_differ(converted: Convert) -> None:
    for y in luma_frames(converted("sbs"), limit=10):
        left, right = y[:, :320].astype(int), y[:, 320:].astype(int)
        assert np.abs(left - right).mean() > 1.0


def test_half_sbs_is_the_squeezed_full_sbs(converted: Convert) -> None:
    full, half = luma_frames(converted("sbs"), 5)[4], luma_frames(converted("sbs", "half"), 5)[4]
    squeezed = cv2.resize(full, (320, 180), interpolation=cv2.INTER_AREA)
    assert np.abs(squeezed.astype(int) - half.astype(int)).mean() < 4.0
    assert np.abs(half[:, :160].astype(int) - half[:, 160:].astype(int)).mean() > 1.0


def test_anaglyph_differs_from_input_yet_resembles_it(clip: tuple[Path, Scene], converted: Convert) -> None:
    src, out = luma_frames(clip[0]), luma_frames(converted("anaglyph"))
    assert len(src) == len(out)
    for a, b in zip(src[::10], out[::10], strict=True):
        corr = np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]
        assert corr > 0.9
    rgb_in, rgb_out = rgb_frame(clip[0], 25).astype(int), rgb_frame(converted("anaglyph"), 25).astype(int)
    assert np.abs(rgb_in - rgb_out).mean() > 1.0


def test_anaglyph_channels_come_from_the_views(converted: Convert) -> None:
    """Red of the anaglyph follows the left view, green/blue the right view (both from the full sbs output)."""
    sbs, ana = rgb_frame(converted("sbs"), 25).astype(float), rgb_frame(converted("anaglyph"), 25).astype(float)
    left, right = sbs[:, :320], sbs[:, 320:]

    def err(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).mean())

    assert err(ana[..., 0], left[..., 0]) < err(ana[..., 0], right[..., 0])
    assert err(ana[..., 1], right[..., 1]) < err(ana[..., 1], left[..., 1])
    assert err(ana[..., 2], right[..., 2]) < err(ana[..., 2], left[..., 2])
