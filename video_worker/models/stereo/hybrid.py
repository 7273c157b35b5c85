"""The default depth (``STEREO_DEPTH=hybrid``): a small learned network fused with the position prior and motion
parallax, smoothed in space and time like ``heuristic``.

The network is FastDepth (Wofk et al., ICRA 2019, MIT licence; ``weights/``), trained on indoor scenes: indoors
it orders depth far better than any monocular cue, outdoors it does worse than the position prior ("lower in the
picture is nearer"), which is strong on open ground and streets (BENCHMARKS.md, "Depth quality on real data").
So each supplies what it is good at: the prior the vertical layout, the network which of two things at the same
height is nearer (its deviation from its own row mean). Sharpness, a cue of ``heuristic``, is left out: on real
photographs it orders depth worse than chance.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import cv2
import numpy as np

from ._types import F32, U8
from .depth import DepthEstimator, Depths, Frames
from .heuristic import HeuristicDepth

WEIGHTS = Path(__file__).resolve().parent / "weights"
FASTDEPTH = WEIGHTS / "fastdepth-nyu-f32.onnx"
"""FastDepth, NYU Depth v2 weights, float32 ONNX: Nx3xHxW RGB 0..1 in, metric depth (larger = farther) out."""
FASTDEPTH_CONVENTIONS = {"normalize": "unit", "output": "depth", "multiple": 32}
"""Its conventions as published: 0..1 input, metric depth out, free sizes that are multiples of 32."""
NETWORK_WIDTH = 320
"""Frames are scaled to this width for the network (height keeping the aspect, rounded to 32): wide frames
(2.39:1 films, dash cams) keep enough rows, and 320 orders depth better than 192 or 256 (BENCHMARKS.md)."""

NETWORK = 0.3
"""Weight of the network's row deviation added to the position prior (0 .. 1 from top to bottom)."""
MOTION = 0.3
"""Motion parallax's share, as in ``heuristic``."""
VERSION = "hybrid-1"


class HybridDepth(HeuristicDepth):
    """FastDepth's row deviation on the position prior, plus motion parallax; ``network`` is any 0 far..1 near
    estimator (FastDepth as ``make_estimator`` builds it, or the network of ``STEREO_DEPTH_MODEL``)."""

    motion_weight = MOTION

    def __init__(self, network: DepthEstimator) -> None:
        self.network = network
        self.version = f"{VERSION}:{network.version}"
        super().__init__()

    def fork(self) -> HybridDepth:
        """A twin with fresh state sharing the network's weights, for another thread."""
        fork = getattr(self.network, "fork", None)
        return HybridDepth(fork() if fork is not None else self.network)

    def reset(self) -> None:
        super().reset()
        self.network.reset()

    def _learned(self, frames: Frames) -> Depths:
        """The network's nearness (0 far .. 1 near) at the frames' size, from frames scaled to ``NETWORK_WIDTH``."""
        h, w = frames.shape[1:3]
        size = (NETWORK_WIDTH, max(32, round(h * NETWORK_WIDTH / w / 32) * 32))
        wide = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])
        # On a CPU one frame per run is faster than a batch (27 against 36 ms a frame at 320x192: the batch falls
        # out of the cache); an accelerator gets the batch.
        step = 1 if getattr(self.network, "provider", "") == "CPUExecutionProvider" else len(wide)
        near = np.concatenate([self.network.estimate(wide[i : i + step]) for i in range(0, len(wide), step)])
        return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) for m in near]).astype(np.float32)

    def _still_cues(self, rgb: U8, gray: U8, learned: F32 | None) -> F32:
        assert learned is not None
        deviation = learned - learned.mean(axis=1, keepdims=True)  # nearer or farther than its row, -1 .. 1
        still = (self._position + np.float32(NETWORK) * deviation + np.float32(NETWORK)) / np.float32(1 + 2 * NETWORK)
        return cast(F32, np.float32(1.0 - MOTION) * still)
