"""CPU depth from monocular cues with fixed weights: position prior, motion parallax (DIS flow), local sharpness."""

from __future__ import annotations

from typing import Any, cast

import cv2
import numpy as np

from ._types import F32, U8
from .depth import Depths, Frames
from .guided import guided_filter

# No per-frame or per-segment normalisation: every cue is mapped to 0..1 by a fixed curve, so the same picture gives
# the same depth in every segment of a job. Smoothing is edge-aware in space (guided filter) and motion-compensated
# in time (the previous depth, warped along the optical flow, is blended in: no flicker, no lag behind movers).

W_POSITION, W_MOTION, W_FOCUS = 0.50, 0.30, 0.20
"""Fixed cue weights (they sum to 1, so depth stays in 0..1)."""
MOTION_SCALE = 0.004
"""Residual (camera-motion-free) flow, as a fraction of the width per frame, at which the motion cue is 1 - 1/e."""
FOCUS_SCALE = 8.0
"""RMS high-pass detail in grey levels (0..255) at which the sharpness cue is 1 - 1/e."""
TEMPORAL_KEEP = 0.7
"""Weight of the flow-warped previous depth in the temporal blend (exponential moving average per frame)."""
GUIDED_EPS = 4e-3
VERSION = "heuristic-1"


class HeuristicDepth:
    """The default estimator: needs no weights; about 1 ms per frame at 192x108 on one core."""

    version = VERSION
    motion_weight = W_MOTION

    def __init__(self) -> None:
        self._shape: tuple[int, int] = (0, 0)
        self.reset()

    def fork(self) -> HeuristicDepth:
        """A new estimator with fresh state (nothing heavy to share), for another thread."""
        return HeuristicDepth()

    def reset(self) -> None:
        """Forget the previous frame and depth (call at each segment start)."""
        self._forget_frames()

    def _forget_frames(self) -> None:
        """Forget the previous frame and depth (also when the frame size changes)."""
        self._prev: U8 | None = None
        self._state: F32 | None = None
        # A fresh flow object per segment: OpenCV's DIS keeps buffers sized by earlier calls (and gets ~15x
        # slower after a size change), so a new one keeps the result and the speed independent of history.
        self._dis = _flow()

    def estimate(self, frames: Frames) -> Depths:
        """Depth (Nxhxw float32, 0 far .. 1 near) for consecutive RGB frames at the working resolution."""
        n, h, w = frames.shape[:3]
        learned = self._learned(frames)
        out = np.empty((n, h, w), np.float32)
        for i in range(n):
            out[i] = self._one(frames[i], None if learned is None else learned[i])
        return out

    def _learned(self, frames: Frames) -> Depths | None:
        """A learned depth estimate of the batch, for a subclass that fuses one (``hybrid``); None here."""
        return None

    def _still_cues(self, rgb: U8, gray: U8, learned: F32 | None) -> F32:
        """The cues of one frame on its own (no motion), weighted: position and sharpness."""
        return cast(F32, W_POSITION * self._position + W_FOCUS * self._focus(gray))

    def _setup(self, h: int, w: int) -> None:
        self._shape = (h, w)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self._gx, self._gy = xs, ys
        self._position = (ys / np.float32(max(1, h - 1))).astype(np.float32)
        self._gxn, self._gyn = xs / np.float32(w), ys / np.float32(h)
        grid = np.stack([self._gxn, self._gyn, np.ones_like(xs)], axis=-1)  # the affine camera-motion model's terms
        self._step = max(1, min(h, w) // 24)
        self._design = np.ascontiguousarray(grid[:: self._step, :: self._step].reshape(-1, 3))
        self._radius = max(2, w // 32)

    def _one(self, rgb: U8, learned: F32 | None) -> F32:
        h, w = rgb.shape[:2]
        if (h, w) != self._shape:
            self._setup(h, w)
            self._forget_frames()
        gray = cast(U8, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        guide = gray.astype(np.float32) * np.float32(1.0 / 255.0)
        raw = self._still_cues(rgb, gray, learned)
        flow: F32 | None = None
        if self._prev is not None:
            flow = cast(F32, self._dis.calc(gray, self._prev, None))  # per pixel now: where it was before
            raw += self.motion_weight * self._motion(flow, w)
        depth = guided_filter(guide, raw.astype(np.float32, copy=False), self._radius, GUIDED_EPS)
        if flow is not None and self._state is not None:
            warped = cv2.remap(self._state, self._gx + flow[..., 0], self._gy + flow[..., 1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
            depth = cast(F32, cv2.addWeighted(warped, TEMPORAL_KEEP, depth, 1.0 - TEMPORAL_KEEP, 0.0))
        np.clip(depth, 0.0, 1.0, out=depth)
        self._state, self._prev = depth, gray
        return depth

    def _focus(self, gray: U8) -> F32:
        """Local sharpness: RMS of the high-pass image over the smoothing window, through a fixed saturating curve."""
        g = gray.astype(np.float32)
        high = g - cv2.GaussianBlur(g, (0, 0), 1.0)
        k = (2 * self._radius + 1, 2 * self._radius + 1)
        energy = cv2.boxFilter(high * high, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)
        return _saturate(cast(F32, cv2.sqrt(energy)), FOCUS_SCALE)

    def _motion(self, flow: F32, width: int) -> F32:
        """Motion parallax: flow magnitude left after removing a robust affine fit of the camera's motion."""
        s = self._step
        sample = np.ascontiguousarray(flow[::s, ::s]).reshape(-1, 2)
        design = self._design
        weight = np.ones((len(sample), 1), np.float32)
        coef = np.zeros((3, 2), np.float32)
        for _ in range(2):  # least squares, then again without the outliers (the movers)
            weighted = design * weight
            normal = weighted.T @ design
            if float(weight.sum()) < 6 or abs(float(np.linalg.det(normal))) < 1e-9:
                break
            coef = np.linalg.solve(normal, weighted.T @ sample).astype(np.float32)
            err = sample - design @ coef
            err2 = err[:, 0] * err[:, 0] + err[:, 1] * err[:, 1]
            weight = (err2 <= max(2.0 * float(err2.mean()), 0.0625)).astype(np.float32)[:, None]
        fx, fy = cv2.split(flow)
        rx = fx - (coef[0, 0] * self._gxn + coef[1, 0] * self._gyn + coef[2, 0])
        ry = fy - (coef[0, 1] * self._gxn + coef[1, 1] * self._gyn + coef[2, 1])
        return _saturate(cast(F32, cv2.magnitude(rx, ry)), MOTION_SCALE * width)


def _flow() -> Any:
    """DIS optical flow tuned for the working resolution: patches down to half of it, one refinement pass.

    (The ULTRAFAST preset alone stops at a quarter of the resolution: blocky, with motion bleeding past objects.)
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)  # type: ignore[attr-defined]
    dis.setFinestScale(1)
    dis.setPatchStride(5)
    dis.setGradientDescentIterations(10)
    dis.setVariationalRefinementIterations(1)
    return dis


def _saturate(x: F32, scale: float) -> F32:
    """The fixed curve 1 - exp(-x / scale): 0 at 0, 0.63 at ``scale``, tending to 1."""
    e = cast(F32, cv2.exp(x * np.float32(-1.0 / scale)))
    return (np.float32(1.0) - e).astype(np.float32, copy=False)
