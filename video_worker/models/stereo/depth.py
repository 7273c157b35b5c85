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
    """Estimates depth for batches of consecutive frames of one segment: the interface of a GPU network.

    Plug one in with ``STEREO_DEPTH=package.module:factory``: the factory (given the ``StereoSettings`` when it
    takes an argument) returns an object with:

    - ``estimate(frames) -> depths``: a batch in, a batch out. ``frames`` is ``Frames`` (N consecutive RGB frames
      at the working size, ``STEREO_DEPTH_WIDTH`` wide; N = ``STEREO_BATCH``, the last batch may be shorter), the
      result ``Depths`` of the same N, height and width (resize on the device). The result for a frame must not
      depend on how the frames were batched (temporal state is carried per frame). The converter calls it from
      its depth thread while other threads decode, render and encode, so a device call that releases the GIL
      (CUDA, TensorRT, a network client) keeps the device busy.
    - ``reset()``: called before each segment (forget temporal state, e.g. a normalisation range).
    - ``version``: names everything that changes the output (weights, precision, provider); it enters the
      fingerprint, so outputs of another version are never taken for this one's.
    - optionally ``fork()``: a twin with fresh per-segment state that shares the heavy resources (the network in
      device memory); ``StereoModel`` gives each converting thread its own twin, so concurrent segments in one
      process share one loaded network. Without it conversions take turns.
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
