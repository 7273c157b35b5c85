"""The fingerprint of everything that shapes the converter's output bytes: settings, code and library versions."""

from __future__ import annotations

import hashlib
import json

import av
import cv2
import numpy as np

from .settings import MODEL_VERSION, StereoSettings


def fingerprint(settings: StereoSettings, estimator_version: str) -> str:
    """A 16-hex-digit hash of the output-shaping settings, the estimator, the code and library versions."""
    payload = {
        "model": MODEL_VERSION,
        "estimator": estimator_version,
        "settings": settings.output_fields(),
        "libs": {"av": av.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
