"""The depth estimator ``STEREO_DEPTH`` names: ``heuristic`` (default, CPU, no weights) or ``onnx``."""

from __future__ import annotations

from .depth import DepthEstimator
from .heuristic import HeuristicDepth
from .settings import StereoSettings


def make_estimator(settings: StereoSettings) -> DepthEstimator:
    """The estimator named by ``STEREO_DEPTH`` (onnxruntime is imported only for ``onnx``).

    An ONNX network is tried on a dummy frame here: a mismatch is a one-line ``ConfigError`` at start-up."""
    if settings.depth == "onnx":
        from .onnx_depth import OnnxDepth

        assert settings.depth_model is not None  # enforced by the settings
        return OnnxDepth(settings.depth_model, threads=settings.onnx_threads, normalize=settings.depth_normalize,
                         output=settings.depth_output, input_size=settings.depth_input_size,
                         multiple=settings.depth_multiple, work_width=settings.depth_width)
    return HeuristicDepth()
