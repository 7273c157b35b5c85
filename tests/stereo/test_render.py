"""DIBR pieces: the slope-limited shift field, the warpers' geometry, and the YUV-domain anaglyph."""

from __future__ import annotations

import av
import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from video_worker.models.stereo.anaglyph import AnaglyphMixer, red_cyan_rgb
from video_worker.models.stereo.compose import Composer
from video_worker.models.stereo.dibr import chroma_split, fatten, half_disparity
from video_worker.models.stereo.planes import yuv_views


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (6, 24), elements=st.floats(-8, 8, width=32)), st.floats(0.2, 3.0))
def test_fatten_bounds_the_slope_and_keeps_near_values(shift: np.ndarray, step: float) -> None:
    out = fatten(shift, step)
    assert np.all(out >= shift - 1e-5)  # never pulls anything farther
    assert np.all(np.abs(np.diff(out, axis=1)) <= step + 1e-4)  # the backward map cannot fold over
    peak = np.unravel_index(np.argmax(shift), shift.shape)
    assert abs(out[peak] - shift[peak]) < 1e-5  # the nearest point keeps its shift


def test_half_disparity_convention() -> None:
    depth = np.array([[0.0, 0.5, 1.0]], np.float32).repeat(2, 0).repeat(40, 1)
    s = half_disparity(depth, 1000, divergence=2.0, convergence=0.5)
    assert s.min() >= -5.0 - 1e-5 and s.max() <= 5.0 + 1e-5  # d = 2 % of 1000 px over depth 0..1, s = d/2
    assert s[0, -1] > 0 > s[0, 0]  # near: positive (in front of the screen), far: negative


def test_chroma_split() -> None:
    assert chroma_split(320, 320) == 160
    assert chroma_split(160, 160) == 80
    assert chroma_split(161, 161) == 81


def _frame(rgb: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace="itu709")


def test_zero_shift_sbs_repeats_the_input() -> None:
    rgb = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 2)
    src = _frame(rgb)
    out = Composer("sbs", "full", 64, 48, 1, False).render(src, np.zeros((12, 16), np.float32))
    y_in, y_out = yuv_views(src)[0], yuv_views(out)[0]
    assert np.array_equal(y_out[:, :64], y_in) and np.array_equal(y_out[:, 64:], y_in)


def test_constant_shift_moves_views_apart() -> None:
    rgb = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 1)
    out = Composer("sbs", "full", 64, 48, 1, False).render(_frame(rgb), np.full((12, 16), 2.0, np.float32))
    y = yuv_views(out)[0].astype(int)
    left, right = y[:, :64], y[:, 64:]
    # left(x) = src(x - 2), right(x) = src(x + 2)  →  left(x) = right(x - 4)
    assert np.abs(left[:, 10:54] - right[:, 6:50]).mean() < 1.0


def test_yuv_anaglyph_matches_rgb_reference() -> None:
    rng = np.random.default_rng(2)
    left, right = (cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 3) for _ in range(2))
    fl, fr, out = _frame(left), _frame(right), av.VideoFrame(64, 48, "yuv420p")
    AnaglyphMixer(64, 48, 1, False).mix(yuv_views(fl), yuv_views(fr), yuv_views(out))
    got = out.reformat(format="rgb24", src_colorspace="itu709").to_ndarray().astype(int)
    assert np.abs(got - red_cyan_rgb(left, right).astype(int)).mean() < 3.0
