"""The heuristic estimator: fixed scaling, batching invariance, temporal stability, cues."""

from __future__ import annotations

import numpy as np

from video_worker.models.stereo import HeuristicDepth, working_size
from video_worker.models.stereo.depth import DepthEstimator
from video_worker.models.stereo.synthetic import Scene


def scene_frames(n: int, w: int = 192, h: int = 108, start: int = 0) -> np.ndarray:
    scene = Scene(w, h, 25)
    return np.stack([scene.frame(start + i)[0] for i in range(n)])


def test_protocol_and_shapes() -> None:
    est = HeuristicDepth()
    assert isinstance(est, DepthEstimator)
    d = est.estimate(scene_frames(3))
    assert d.shape == (3, 108, 192) and d.dtype == np.float32
    assert d.min() >= 0.0 and d.max() <= 1.0


def test_batching_does_not_matter() -> None:
    frames = scene_frames(9)
    a, b = HeuristicDepth(), HeuristicDepth()
    whole = a.estimate(frames)
    parts = np.concatenate([b.estimate(frames[i : i + 2]) for i in range(0, 9, 2)])
    assert np.array_equal(whole, parts)


def test_reset_restarts_the_segment() -> None:
    est = HeuristicDepth()
    first = est.estimate(scene_frames(4))
    est.estimate(scene_frames(3, start=30))
    est.reset()
    assert np.array_equal(est.estimate(scene_frames(4)), first)


def test_fixed_scaling_no_normalisation() -> None:
    """A uniformly darker picture is not stretched back to the full range (no per-frame min/max)."""
    flat = np.full((1, 108, 192, 3), 128, np.uint8)
    depth = HeuristicDepth().estimate(flat)[0]
    rows = depth.mean(axis=1)
    assert rows[-1] > rows[0]  # position prior: lower = nearer
    assert depth.max() < 0.55  # no texture, no motion: only the position cue's half of the range
    assert np.allclose(depth, HeuristicDepth().estimate(flat // 2)[0], atol=1e-6)


def test_moving_near_object_is_nearest_and_stable() -> None:
    scene = Scene(192, 108, 25)
    est = HeuristicDepth()
    depths = est.estimate(np.stack([scene.frame(i)[0] for i in range(20)]))
    box = next(b for b in scene.frame(19)[1] if b.name == "near")
    inner = depths[19][box.y0 + 8 : box.y1 - 8, box.x0 + 8 : box.x1 - 8]
    top = depths[19][:15]
    assert inner.mean() > top.mean() + 0.3
    flicker = np.abs(np.diff(depths[10:, :15], axis=0)).mean()  # static far band: frame-to-frame change
    assert flicker < 0.01


def test_working_size() -> None:
    assert working_size(1920, 1080, 192) == (192, 108)
    assert working_size(640, 360, 192) == (192, 108)
    assert working_size(160, 96, 192) == (160, 96)
    w, h = working_size(720, 576, 192)
    assert w == 192 and h % 2 == 0
