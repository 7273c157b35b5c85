"""The depth-estimator interface, batch-shaped so accelerators can be fed efficiently (``estimators`` builds one)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Frames = npt.NDArray[np.uint8]
"""Nxhxwx3 uint8 RGB frames at the working resolution (``working_size``), consecutive frames of one segment."""
Depths = npt.NDArray[np.float32]
"""Nxhxw float32 depth maps at the same resolution, 0 = far .. 1 = near (the renderer clips to 0..1)."""


@runtime_checkable
class DepthEstimator(Protocol):
    """Estimates depth for batches of consecutive frames of one segment.

    ``estimate`` is called with the segment's frames in order, in batches of ``STEREO_BATCH`` (the last one may be
    shorter); the result for a frame must not depend on how the frames were batched (temporal state is carried per
    frame). ``reset`` is called before each segment. ``version`` names everything that changes the output (weights,
    provider) and goes into the fingerprint. Optionally ``fork()`` returns a twin with fresh state that shares heavy
    resources; ``StereoModel`` then gives each converting thread its own twin (else it serialises conversions).
    """

    @property
    def version(self) -> str: ...

    def estimate(self, frames: Frames) -> Depths: ...

    def reset(self) -> None: ...


def working_size(width: int, height: int, depth_width: int) -> tuple[int, int]:
    """(w, h) of the frames given to the estimator: ``depth_width`` wide (never wider than the input), even sizes."""
    w = min(depth_width, width)
    w -= w % 2
    h = max(2, round(height * w / width / 2.0) * 2)
    return w, h
