"""Still-image depth estimators scored by ``bench.depth_quality``: baselines, the product's cues, FastDepth, blends.

Each one is a product ``DepthEstimator`` (``version``, ``estimate(frames) -> Nxhxw`` nearness 0 far .. 1 near,
``reset``), so a candidate can be injected into ``StereoModel`` as it is. ``depth_width`` is the working width the
bench (and the product, ``STEREO_DEPTH_WIDTH``) hands it frames at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from video_worker.models.stereo.depth import Depths, Frames
from video_worker.models.stereo.estimators import make_estimator
from video_worker.models.stereo.guided import guided_filter
from video_worker.models.stereo.heuristic import GUIDED_EPS, HeuristicDepth
from video_worker.models.stereo.hybrid import FASTDEPTH as SHIPPED_FASTDEPTH
from video_worker.models.stereo.settings import load_settings

F32 = npt.NDArray[np.float32]
Norm = Literal["rank", "pct"]
Cue = Literal["position", "sharpness"]

FASTDEPTH = SHIPPED_FASTDEPTH
"""The FastDepth ONNX file the package ships (the same bytes as ``../shared/models/fastdepth``)."""
PRODUCT_DEPTH_WIDTH = 192
"""The product's default ``STEREO_DEPTH_WIDTH``."""
STILL_FRAMES = 3
"""A still image is given to temporal estimators as this many identical frames (the last depth is kept)."""


def position_prior(h: int, w: int) -> F32:
    """Row index scaled to 0 (top, far) .. 1 (bottom, near)."""
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(rows[:, None], (h, w)))


def normalise(x: F32, norm: Norm) -> F32:
    """Map a map to 0..1 per image: by rank (uniform histogram) or by its 2nd..98th percentile range (clipped)."""
    if norm == "rank":
        order = np.argsort(x, axis=None, kind="stable")
        ranks = np.empty(x.size, np.float32)
        ranks[order] = np.linspace(0.0, 1.0, x.size, dtype=np.float32)
        return np.asarray(ranks.reshape(x.shape), np.float32)
    lo, hi = (float(v) for v in np.percentile(x, (2.0, 98.0)))
    scaled: F32 = (x - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def blend(metric_depth: F32, weight: float, norm: Norm) -> F32:
    """``weight`` x normalised inverse network depth + (1 - weight) x position prior (0 far .. 1 near)."""
    inverse = (1.0 / np.maximum(metric_depth, np.float32(1e-3))).astype(np.float32)
    h, w = metric_depth.shape
    return (np.float32(weight) * normalise(inverse, norm)
            + np.float32(1.0 - weight) * position_prior(h, w)).astype(np.float32)


def _guided(rgb: npt.NDArray[np.uint8], src: F32) -> F32:
    """The heuristic's edge-aware smoothing (same radius and eps) of ``src`` guided by ``rgb``'s grey."""
    guide = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1.0 / 255.0)
    radius = max(2, rgb.shape[1] // 32)
    return np.clip(guided_filter(guide, src, radius, GUIDED_EPS), 0.0, 1.0).astype(np.float32)


class _Stateless:
    depth_width = PRODUCT_DEPTH_WIDTH
    version = "bench"

    def reset(self) -> None:
        """Nothing carried between frames."""


class Flat(_Stateless):
    """The same depth everywhere: every pair is a tie."""

    version = "bench-flat"

    def estimate(self, frames: Frames) -> Depths:
        return np.full(frames.shape[:3], 0.5, np.float32)


class Position(_Stateless):
    """Lower in the picture = nearer."""

    version = "bench-position"

    def estimate(self, frames: Frames) -> Depths:
        n, h, w = frames.shape[:3]
        return np.repeat(position_prior(h, w)[None], n, axis=0)


class HeuristicCue(_Stateless):
    """One cue of ``HeuristicDepth`` alone, through its fixed curve and its guided filter."""

    def __init__(self, cue: Cue) -> None:
        self.cue = cue
        self.version = f"bench-heuristic-{cue}"

    def estimate(self, frames: Frames) -> Depths:
        n, h, w = frames.shape[:3]
        out = np.empty((n, h, w), np.float32)
        for i in range(n):
            if self.cue == "position":
                raw = position_prior(h, w)
            else:
                grey = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
                raw = _sharpness(grey)
            out[i] = _guided(frames[i], raw)
        return out


def _sharpness(grey: npt.NDArray[np.uint8]) -> F32:
    """The heuristic's sharpness cue at this frame size (its own code, via a fresh estimator)."""
    est = HeuristicDepth()
    est._setup(*grey.shape)  # the window radius depends on the frame width
    return est._focus(grey)


class Product:
    """A ``STEREO_DEPTH`` estimator as ``StereoModel`` builds it from ``env`` (its temporal state kept across a
    clip), at the settings' working width."""

    def __init__(self, env: dict[str, str]) -> None:
        settings = load_settings(env)
        self.inner = make_estimator(settings)
        self.depth_width = settings.depth_width
        self.version = self.inner.version

    def estimate(self, frames: Frames) -> Depths:
        return self.inner.estimate(frames)

    def reset(self) -> None:
        self.inner.reset()


class StillProduct(Product):
    """``Product`` given each image as a short still clip (``STILL_FRAMES`` copies; motion is zero)."""

    def estimate(self, frames: Frames) -> Depths:
        out = np.empty(frames.shape[:3], np.float32)
        for i in range(len(frames)):
            self.inner.reset()
            out[i] = self.inner.estimate(np.repeat(frames[i : i + 1], STILL_FRAMES, axis=0))[-1]
        return out


class FastDepth:
    """FastDepth (NYU, metric depth, larger = farther) on CPU; ``size`` None keeps the aspect ratio.

    Input N x 3 x H x W RGB 0..1 (no mean/std), H and W multiples of 32: fixed ``size`` (w, h), or ``width`` with
    the height rounded to a multiple of 32. ``metric_depth`` is the network's output resized to the frame.
    """

    def __init__(self, width: int, size: tuple[int, int] | None = None, model: Path = FASTDEPTH) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        self._session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.width, self.size = width, size
        self.depth_width = width
        self.version = f"bench-fastdepth-{size[0]}x{size[1]}" if size else f"bench-fastdepth-w{width}"

    def input_size(self, w: int, h: int) -> tuple[int, int]:
        """The network's (width, height) for a frame of (w, h)."""
        if self.size is not None:
            return self.size
        return self.width, max(32, round(h * self.width / w / 32) * 32)

    def metric_depth(self, rgb: npt.NDArray[np.uint8]) -> F32:
        """Metres (as the network sees them) at ``rgb``'s size."""
        h, w = rgb.shape[:2]
        nw, nh = self.input_size(w, h)
        img = rgb if (nw, nh) == (w, h) else cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        blob = (img.astype(np.float32) * np.float32(1.0 / 255.0)).transpose(2, 0, 1)[None]
        out = np.asarray(self._session.run(None, {self._input: np.ascontiguousarray(blob)})[0], np.float32)
        return np.asarray(cv2.resize(out[0, 0], (w, h), interpolation=cv2.INTER_LINEAR), np.float32)

    def reset(self) -> None:
        """Nothing carried between frames."""

    def estimate(self, frames: Frames) -> Depths:
        """Inverse network depth, percentile-normalised per frame (nearness 0..1)."""
        out = np.empty(frames.shape[:3], np.float32)
        for i in range(len(frames)):
            inverse = 1.0 / np.maximum(self.metric_depth(frames[i]), np.float32(1e-3))
            out[i] = normalise(inverse.astype(np.float32), "pct")
        return out


class Blend:
    """A candidate default: ``blend`` of FastDepth and the position prior, optionally through the guided filter."""

    def __init__(self, network: FastDepth, weight: float, norm: Norm, guided: bool = False) -> None:
        self.network, self.weight, self.norm, self.guided = network, weight, norm, guided
        self.depth_width = network.depth_width
        self.version = f"{network.version}-blend{weight:.1f}-{norm}{'-guided' if guided else ''}"

    def reset(self) -> None:
        """Nothing carried between frames."""

    def estimate(self, frames: Frames) -> Depths:
        out = np.empty(frames.shape[:3], np.float32)
        for i in range(len(frames)):
            near = blend(self.network.metric_depth(frames[i]), self.weight, self.norm)
            out[i] = _guided(frames[i], near) if self.guided else near
        return out
