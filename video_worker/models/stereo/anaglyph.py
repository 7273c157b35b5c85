"""Red/cyan anaglyph composed directly in Y'CbCr: red from the left view, green and blue from the right."""

from __future__ import annotations

import cv2
import numpy as np

from .planes import Plane

# In R'G'B' the anaglyph is right + (dR, 0, 0) with dR = R_left - R_right, so in Y'CbCr it is the right view plus dR
# times the Y'CbCr of unit red; dR depends only on dY and dCr. No RGB round trip and no clipping are needed:
# (R_left, G_right, B_right) is in gamut whenever both views are.

# (Kr, Kb) by FFmpeg colorspace number: 1 BT.709, 5/6 BT.601, 9/10 BT.2020.
_COEFFS = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


def luma_coefficients(colorspace: int, height: int) -> tuple[float, float]:
    """(Kr, Kb) of the stream's matrix; unspecified streams follow the usual guess: HD is BT.709, SD is BT.601."""
    if colorspace in _COEFFS:
        return _COEFFS[colorspace]
    return _COEFFS[1] if height >= 720 else _COEFFS[5]


class AnaglyphMixer:
    """Mixes two rendered yuv420p views into an anaglyph frame, with scratch buffers reused across frames."""

    def __init__(self, width: int, height: int, colorspace: int, full_range: bool) -> None:
        kr, kb = luma_coefficients(colorspace, height)
        ky, kc = (255.0, 255.0) if full_range else (219.0, 224.0)
        self._size, self._half = (width, height), (width // 2, height // 2)
        self._kr = kr
        self._y_from_dv = ky * kr * 2.0 * (1.0 - kr) / kc  # ΔY' of the output per unit ΔCr
        self._r_from_dy, self._r_from_dv = 1.0 / ky, 2.0 * (1.0 - kr) / kc  # ΔR from ΔY', ΔCr
        self._u_from_r = -kc * kr / (2.0 * (1.0 - kb))
        self._v_from_r = kc * (1.0 - kr) / (2.0 * (1.0 - kr))
        full, half = (height, width), (height // 2, width // 2)
        # Scratch planes, reused: ΔY, ΔCr, ΔCr upsampled, luma change, ΔY at chroma size, ΔR at chroma size.
        self._buffers = tuple(np.empty(shape, np.float32) for shape in (full, half, full, full, half, half))

    def mix(self, left: tuple[Plane, Plane, Plane], right: tuple[Plane, Plane, Plane],
            out: tuple[Plane, Plane, Plane]) -> None:
        """Write the anaglyph of ``left`` and ``right`` into the planes ``out`` (which may alias ``right``)."""
        yl, _, vl = left
        yr, ur, vr = right
        yo, uo, vo = out
        dy, dv, dv_full, ty, dy_half, dr = self._buffers
        cv2.subtract(yl, yr, dst=dy, dtype=cv2.CV_32F)
        cv2.subtract(vl, vr, dst=dv, dtype=cv2.CV_32F)
        cv2.resize(dv, self._size, dst=dv_full, interpolation=cv2.INTER_LINEAR)
        cv2.addWeighted(dy, self._kr, dv_full, self._y_from_dv, 0.0, dst=ty)
        cv2.resize(dy, self._half, dst=dy_half, interpolation=cv2.INTER_AREA)
        cv2.addWeighted(dy_half, self._r_from_dy, dv, self._r_from_dv, 0.0, dst=dr)
        # The chroma outputs depend on vr/ur; compute them before luma in case ``out`` aliases ``right``.
        cv2.addWeighted(ur, 1.0, dr, self._u_from_r, 0.0, dst=uo, dtype=cv2.CV_8U)
        cv2.addWeighted(vr, 1.0, dr, self._v_from_r, 0.0, dst=vo, dtype=cv2.CV_8U)
        cv2.add(yr, ty, dst=yo, dtype=cv2.CV_8U)


def red_cyan_rgb(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Reference anaglyph of two RGB images (HxWx3 uint8): red of ``left``, green and blue of ``right``."""
    out = right.copy()
    out[..., 0] = left[..., 0]
    return out
