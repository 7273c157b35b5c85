"""The depth estimator ``STEREO_DEPTH`` names: ``hybrid`` (default: a shipped network fused with cues),
``heuristic`` (cues only, no weights), ``onnx`` (a network of your own) or ``package.module:factory`` (an
estimator of your own: a TensorRT engine, a torch model, a Triton client; see ``depth.DepthEstimator``)."""

from __future__ import annotations

import importlib
from typing import Any

from video_worker.errors import ConfigError
from video_worker.inference import takes_an_argument

from .depth import DepthEstimator
from .heuristic import HeuristicDepth
from .settings import BUILTIN_ESTIMATORS, StereoSettings


def make_estimator(settings: StereoSettings) -> DepthEstimator:
    """The estimator named by ``STEREO_DEPTH`` (onnxruntime is imported only for a network).

    An ONNX network is tried on a dummy frame here, a plug-in is imported and built here: a mismatch is a
    one-line ``ConfigError`` at start-up."""
    if settings.depth not in BUILTIN_ESTIMATORS:
        return plugged_in(settings)
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


def plugged_in(settings: StereoSettings) -> DepthEstimator:
    """The estimator built by the ``package.module:factory`` that ``STEREO_DEPTH`` names: the factory is given the
    settings when it takes an argument, else nothing."""
    path = settings.depth
    where = f"STEREO_DEPTH={path!r}"
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name}: {exc}") from None
    except Exception as exc:  # the module fails while it is imported
        raise ConfigError(f"{where}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{where}: {module_name} has no attribute {attr}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{where}: {attr} is a {type(target).__name__}, not a factory")
    try:
        estimator = target(settings) if takes_an_argument(target) else target()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{where}: the factory failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(estimator, DepthEstimator):
        missing = [name for name in ("version", "estimate", "reset") if not hasattr(estimator, name)]
        raise ConfigError(f"{where}: the factory gave a {type(estimator).__name__}, not a depth estimator "
                          f"(it lacks {', '.join(missing)})")
    if not isinstance(estimator.version, str) or not estimator.version:
        raise ConfigError(f"{where}: the estimator's version must be a non-empty string (it enters the "
                          "fingerprint)")
    return estimator

