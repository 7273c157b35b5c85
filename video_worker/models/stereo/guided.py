"""Edge-aware smoothing: the guided filter (He et al. 2010) built from cv2.boxFilter, for float32 images."""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np

from ._types import F32


def guided_filter(guide: F32, src: F32, radius: int, eps: float) -> F32:
    """Smooth ``src`` over (2·radius+1)² windows while following the edges of ``guide`` (both float32, 0..1).

    ``eps`` is the variance below which guide detail is smoothed away (larger = smoother).
    """
    k = (2 * radius + 1, 2 * radius + 1)

    def box(a: F32) -> F32:
        return cast(F32, cv2.boxFilter(a, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT))

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a: F32 = (cov_ip / (var_i + np.float32(eps))).astype(np.float32, copy=False)
    b: F32 = mean_p - a * mean_i
    return (box(a) * guide + box(b)).astype(np.float32, copy=False)
