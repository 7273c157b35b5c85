"""The depth estimator ``STEREO_DEPTH`` names: ``hybrid`` (default: a shipped network fused with cues),
``heuristic`` (cues only, no weights) or ``onnx`` (a network of your own)."""

from __future__ import annotations

from .depth import DepthEstimator
from .heuristic import HeuristicDepth
from .settings import StereoSettings


def make_estimator(settings: StereoSettings) -> DepthEstimator:
    """The estimator named by ``STEREO_DEPTH`` (onnxruntime is imported only for a network).

    An ONNX network is tried on a dummy frame here: a mismatch is a one-line ``ConfigError`` at start-up."""
    if settings.depth == "heuristic":
        return HeuristicDepth()
    from .onnx_depth import OnnxDepth
    from .ort_device import DeviceOptions

    device = DeviceOptions.from_settings(settings)  # and on a GPU, a warm-up batch of STEREO_BATCH frames

    if settings.depth == "hybrid" and settings.depth_model is None:
        from .hybrid import FASTDEPTH, FASTDEPTH_CONVENTIONS, NETWORK_WIDTH, HybridDepth

        return HybridDepth(OnnxDepth(FASTDEPTH, threads=settings.onnx_threads, work_width=settings.depth_width,
                                     device=device, warm_batch=settings.batch, warm_width=NETWORK_WIDTH,
                                     **FASTDEPTH_CONVENTIONS))  # type: ignore[arg-type]
    assert settings.depth_model is not None  # enforced by the settings
    network = OnnxDepth(settings.depth_model, threads=settings.onnx_threads, normalize=settings.depth_normalize,
                        output=settings.depth_output, input_size=settings.depth_input_size,
                        multiple=settings.depth_multiple, work_width=settings.depth_width, device=device,
                        warm_batch=settings.batch)
    if settings.depth == "hybrid":
        from .hybrid import HybridDepth

        return HybridDepth(network)
    return network
