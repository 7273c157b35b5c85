"""The default depth (``STEREO_DEPTH=hybrid``): a small learned network fused with the position prior and motion
parallax, smoothed in space and time like ``heuristic``.

The network is FastDepth (Wofk et al., ICRA 2019, MIT licence; ``weights/``), trained on indoor scenes: there it
orders depth far better than any monocular cue, outdoors it is unreliable (it has never seen a sky), while the
position prior ("lower in the picture is nearer") is strong on open ground. So the network's weight follows a
sky gate: the share of the frame's top third that is bright and flat, smoothed over frames. Sharpness, a cue of
``heuristic``, is left out: on real photographs it orders depth worse than chance (BENCHMARKS.md).
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
FASTDEPTH_CONVENTIONS = {"normalize": "unit", "output": "depth", "input_size": (192, 192)}
"""Its conventions as published; 192x192 orders depth as well as 224x224 at three quarters of the cost."""

NETWORK_INDOOR, NETWORK_OUTDOOR = 0.6, 0.1
"""The network's share of the still cues (the rest is the position prior) with no sky, and with a sky."""
MOTION = 0.3
"""Motion parallax's share, as in ``heuristic``."""
SKY_LEVEL, SKY_FLAT = 150, 8.0
"""A sky pixel: grey level above ``SKY_LEVEL`` and |Laplacian| below ``SKY_FLAT`` (0..255 levels)."""
SKY_FROM, SKY_TO = 0.10, 0.25
"""Sky share of the top third at which the gate starts to move to the outdoor weight, and where it gets there."""
GATE_KEEP = 0.7
"""Weight of the previous frames' gate in its moving average (a cut to the outdoors fades in over a few frames)."""
VERSION = "hybrid-1"


class HybridDepth(HeuristicDepth):
    """FastDepth + position prior (sky-gated) + motion parallax; ``network`` is any 0 far..1 near estimator."""

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

    def _forget_frames(self) -> None:
        super()._forget_frames()
        self._gate: float | None = None

    def _learned(self, frames: Frames) -> Depths:
        return self.network.estimate(frames)

    def _still_cues(self, rgb: U8, gray: U8, learned: F32 | None) -> F32:
        assert learned is not None
        gate = sky_share(gray)
        if self._gate is not None:
            gate = GATE_KEEP * self._gate + (1.0 - GATE_KEEP) * gate
        self._gate = gate
        share = NETWORK_INDOOR + (NETWORK_OUTDOOR - NETWORK_INDOOR) * float(
            np.clip((gate - SKY_FROM) / (SKY_TO - SKY_FROM), 0.0, 1.0))
        still = np.float32(1.0 - MOTION)
        return cast(F32, still * (np.float32(share) * learned + np.float32(1.0 - share) * self._position))


def sky_share(gray: U8) -> float:
    """The share of the top third of the frame that looks like sky: bright and flat."""
    top = gray[: max(1, gray.shape[0] // 3)]
    flat = np.abs(cv2.Laplacian(top, cv2.CV_32F)) < SKY_FLAT
    return float(((top > SKY_LEVEL) & flat).mean())
