"""HDR inputs (PQ or HLG, BT.2020) tone-mapped to SDR BT.709 8-bit before depth and rendering.

Why SDR: the output is 8-bit H.264 that reassembly concatenates and any 3D player decodes; the anaglyph mixes
display-referred RGB; depth estimators are trained on SDR pictures. PQ code values merely cut to 8 bits and
shown as SDR look grey and flat (a 203-nit white becomes luma 147 of 235).

The mapping, per pixel, from the decoder's R'G'B' (swscale, 16-bit): the transfer function's inverse to linear
light relative to the BT.2408 reference white (203 nits; HLG through its OOTF for a 1000-nit display), BT.2020
to BT.709 primaries (negative, out-of-gamut components clipped), a highlight roll-off on max(R, G, B) that
keeps hue (identity up to half the reference white, an extended Reinhard curve that reaches SDR white at 1000
nits), then BT.1886's inverse (gamma 1/2.4) to 8 bits and swscale to yuv420p BT.709 limited range. Two lookup
tables and two 3x3 transforms; no per-frame statistics, so neighbouring segments match at the cut.
"""

from __future__ import annotations

from typing import Literal

import av
import av.video.reformatter
import cv2
import numpy as np
import numpy.typing as npt

Transfer = Literal["pq", "hlg"]

TRC_PQ, TRC_HLG = 16, 18
"""FFmpeg's AVCOL_TRC_SMPTE2084 and AVCOL_TRC_ARIB_STD_B67."""
BT709 = 1
"""AVCOL_PRI_BT709, AVCOL_TRC_BT709 and AVCOL_SPC_BT709 alike: the tags of the tone-mapped output."""
MPEG_RANGE = 1
BT2020_MATRIX = 9

REFERENCE_WHITE = 203.0
"""Nits of HDR reference (diffuse) white, ITU-R BT.2408: it becomes SDR white before the roll-off."""
PEAK = 1000.0
"""Nits that reach SDR peak white; brighter highlights clip."""
KNEE = 0.5
"""Relative linear level (of reference white) below which the picture is not compressed at all."""
X_MAX = 10000.0 / REFERENCE_WHITE
"""Largest relative linear level (PQ's 10 000 nits): the range of the encoding lookup table."""
HLG_DISPLAY = 1000.0
"""Nominal peak of the HLG reference display (system gamma 1.2)."""

BT2020_TO_BT709 = np.array([[1.6605, -0.5876, -0.0728],
                            [-0.1246, 1.1329, -0.0083],
                            [-0.0182, -0.1006, 1.1187]], np.float32)
"""Linear-light RGB from BT.2020 to BT.709 primaries (ITU-R BT.2087)."""
BT2020_LUMA = np.array([[0.2627, 0.6780, 0.0593]], np.float32)

F32 = npt.NDArray[np.float32]


def transfer_of(color_trc: int) -> Transfer | None:
    """The HDR transfer a stream's ``color_trc`` tag names, or None for SDR."""
    return "pq" if color_trc == TRC_PQ else "hlg" if color_trc == TRC_HLG else None


def pq_eotf(code: F32) -> F32:
    """SMPTE ST 2084: signal 0..1 to nits."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.power(np.clip(code, 0.0, 1.0), 1.0 / m2)
    return np.asarray(10000.0 * np.power(np.maximum(p - c1, 0.0) / (c2 - c3 * p), 1.0 / m1), np.float32)


def hlg_inverse_oetf(code: F32) -> F32:
    """ARIB STD-B67 / BT.2100: signal 0..1 to scene-linear 0..1."""
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    e = np.clip(code, 0.0, 1.0).astype(np.float64)
    low = e * e / 3.0
    high = (np.exp((e - c) / a) + b) / 12.0
    return np.asarray(np.where(e <= 0.5, low, high), np.float32)


def rolloff(x: F32) -> F32:
    """Relative linear level to 0..1 display level: identity to KNEE, extended Reinhard to 1 at PEAK."""
    w = (PEAK / REFERENCE_WHITE - KNEE) / (1.0 - KNEE)
    u = np.maximum(x - KNEE, 0.0) / (1.0 - KNEE)
    high = KNEE + (1.0 - KNEE) * u * (1.0 + u / (w * w)) / (1.0 + u)
    return np.asarray(np.minimum(np.where(x <= KNEE, x, high), 1.0), np.float32)


_TABLE_X = np.asarray((np.arange(65536, dtype=np.float64) / 65535.0) ** 2 * X_MAX, np.float32)
"""The relative linear level at each position of the gain table: square-root spaced, fine near black."""
STRIP = 256
"""Rows processed at a time: the intermediate arrays stay in cache (2.4x faster at 4K than whole frames)."""


class ToneMapper:
    """Turns a decoded HDR frame (any bit depth) into a yuv420p BT.709 SDR frame with the same timing."""

    def __init__(self, transfer: Transfer) -> None:
        self.transfer = transfer
        code = np.arange(65536, dtype=np.float32) / 65535.0
        if transfer == "pq":
            self._to_linear = pq_eotf(code) / np.float32(REFERENCE_WHITE)
        else:
            self._to_linear = hlg_inverse_oetf(code)
        x = _TABLE_X
        self._gain = np.where(x > 0, rolloff(x) / np.maximum(x, 1e-12), 1.0).astype(np.float32)
        """Gain that takes a pixel whose largest component is x to rolloff(x): hue and saturation kept."""
        self._encode = np.round(np.power(np.linspace(0.0, 1.0, 65536) ** 2, 1.0 / 2.4) * 255.0).astype(np.uint8)
        """BT.1886's inverse to 8 bits, indexed by the square root of the display level (0..1)."""
        self._rgb = av.video.reformatter.VideoReformatter()
        self._yuv = av.video.reformatter.VideoReformatter()

    def sdr_rgb(self, rgb16: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint8]:
        """8-bit BT.709 R'G'B' (full range) of 16-bit BT.2020 R'G'B' (full range) in this transfer."""
        out = np.empty(rgb16.shape, np.uint8)
        for y in range(0, rgb16.shape[0], STRIP):
            out[y:y + STRIP] = self._strip(rgb16[y:y + STRIP])
        return out

    def _strip(self, rgb16: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint8]:
        lin: F32 = self._to_linear[rgb16]  # BT.2020 linear: relative to reference white (PQ), scene light (HLG)
        display_gain: F32 | None = None
        if self.transfer == "hlg":  # OOTF: display light = 1000 nits x Ys^0.2 x scene light
            scene_luma = cv2.transform(lin, BT2020_LUMA).reshape(rgb16.shape[:2])
            display_gain = np.asarray(cv2.pow(np.maximum(scene_luma, 1e-6), 0.2), np.float32)
            display_gain *= np.float32(HLG_DISPLAY / REFERENCE_WHITE)
        lin = np.asarray(cv2.transform(lin, BT2020_TO_BT709), np.float32)
        np.maximum(lin, 0.0, out=lin)
        peak = np.maximum(np.maximum(lin[..., 0], lin[..., 1]), lin[..., 2])
        if display_gain is not None:
            peak = peak * display_gain
        index = cv2.sqrt(np.minimum(peak, X_MAX) * np.float32(1.0 / X_MAX)) * np.float32(65535.0)
        gain: F32 = self._gain[(index + np.float32(0.5)).astype(np.uint16)]
        if display_gain is not None:
            gain = gain * display_gain
        lin = np.asarray(cv2.multiply(lin, cv2.merge([gain, gain, gain])), np.float32)  # every channel <= 1 now
        np.minimum(lin, 1.0, out=lin)
        index = np.asarray(cv2.sqrt(lin), np.float32) * np.float32(65535.0) + np.float32(0.5)
        encoded: npt.NDArray[np.uint8] = self._encode[index.astype(np.uint16)]  # twice faster than cv2.pow
        return encoded

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        matrix = frame.colorspace if frame.colorspace not in (0, 2) else BT2020_MATRIX  # unspecified: BT.2020
        rgb16 = self._rgb.reformat(frame, format="rgb48le", src_colorspace=matrix,
                                   src_color_range=frame.color_range or MPEG_RANGE, dst_color_range=2).to_ndarray()
        rgb = av.VideoFrame.from_ndarray(self.sdr_rgb(np.asarray(rgb16, np.uint16)), format="rgb24")
        out = self._yuv.reformat(rgb, format="yuv420p", src_color_range=2, dst_colorspace=BT709,
                                 dst_color_range=MPEG_RANGE)
        out.pts, out.duration = frame.pts, frame.duration
        if frame.time_base is not None:
            out.time_base = frame.time_base
        out.colorspace, out.color_range = BT709, MPEG_RANGE
        return out
