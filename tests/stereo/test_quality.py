"""Measured disparity on a scene with a known near object over a far background: sign and ordering."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.stereo.conftest import Convert
from video_worker.models.stereo.quality import Region, block_disparity, scene_disparities
from video_worker.models.stereo.synthetic import Scene


def test_block_matching_finds_a_known_shift() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 200), dtype=np.uint8)
    left = np.roll(img, 3, axis=1)  # left view: content 3 px further right → d = +3
    assert abs(block_disparity(left, img, Region(50, 10, 150, 50), 8) - 3.0) < 0.3


def test_near_object_pops_out_and_background_recedes(clip: tuple[Path, Scene], converted: Convert) -> None:
    for index in (10, 25, 40):
        d = scene_disparities(clip[1], converted("sbs"), index)
        assert d["near"] > 0.5, d  # in front of the screen: shifted right in the left view
        assert d["far"] < -0.3, d  # behind the screen
        assert d["near"] > d["beside"] + 0.8, d  # nearer than the background at the same rows
        assert d["beside"] > d["far"] - 0.3, d  # the lower background is no farther than the distant band
        assert abs(d["near"]) <= 0.02 * 320 + 0.5  # never beyond the divergence (2 % of the width)
