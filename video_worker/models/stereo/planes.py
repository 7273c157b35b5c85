"""Zero-copy numpy views of a PyAV frame's Y, U and V planes (yuv420p layout)."""

from __future__ import annotations

from typing import cast

import av
import numpy as np
import numpy.typing as npt

Plane = npt.NDArray[np.uint8]

YUV420_LAYOUTS = frozenset({"yuv420p", "yuvj420p"})
"""Pixel formats whose planes are used as they are; any other format is converted with swscale first."""


def plane_view(frame: av.VideoFrame, index: int) -> Plane:
    """Plane ``index`` of ``frame`` as a 2D uint8 array sharing the frame's memory (rows keep their padding stride)."""
    plane = frame.planes[index]
    rows = np.frombuffer(cast(memoryview, plane), np.uint8, count=plane.line_size * plane.height)
    return rows.reshape(plane.height, plane.line_size)[:, : plane.width]


def yuv_views(frame: av.VideoFrame) -> tuple[Plane, Plane, Plane]:
    """The Y (HxW), U and V (H/2xW/2) planes of a yuv420p frame as views."""
    return plane_view(frame, 0), plane_view(frame, 1), plane_view(frame, 2)


def as_yuv420(frame: av.VideoFrame) -> av.VideoFrame:
    """``frame`` itself when it has a 4:2:0 planar 8-bit layout, else a yuv420p copy made by swscale."""
    if frame.format.name in YUV420_LAYOUTS:
        return frame
    return frame.reformat(format="yuv420p")
