"""``MODEL=stereo``: a CPU 2D→3D converter: batched depth estimation + depth-image-based rendering, file to file.

Importing the package loads nothing heavy: ``settings`` needs only pydantic
(the worker checks ``STEREO_*`` at start-up), the rest needs the ``stereo``
extra (PyAV, NumPy, OpenCV; onnxruntime for ``STEREO_DEPTH=onnx``).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "StereoModel": "model", "MODES": "model", "from_settings": "model",
    "StereoSettings": "settings", "load_settings": "settings", "MODEL_VERSION": "settings",
    "fingerprint": "versions", "ConversionReport": "timing", "DepthEstimator": "depth", "working_size": "depth",
    "HeuristicDepth": "heuristic",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
