"""Display orientation: the input's display matrix (phones record portrait video as rotated landscape) turned
into a pixel transform applied to every decoded frame, so depth, rendering and the output are upright and the
output needs no rotation metadata."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import av
import cv2

from video_worker.errors import ModelRejected

from .planes import YUV420_LAYOUTS, plane_view

Orientation = Literal["none", "clock", "cclock", "rot180", "hflip", "vflip", "transpose", "antitranspose"]
"""How the coded picture is turned to display it (the names of FFmpeg's autorotate filters)."""

SWAPS: frozenset[Orientation] = frozenset({"clock", "cclock", "transpose", "antitranspose"})
"""Orientations that swap width and height."""


def orientation_of(frame: av.VideoFrame) -> Orientation:
    """The orientation the frame's display matrix asks for, decided as FFmpeg's own autorotation does."""
    side = cast(Mapping[str, Any], frame.side_data)  # PyAV's stub types only MOTION_VECTORS
    if "DISPLAYMATRIX" not in side:
        return "none"
    m = struct.unpack("9i", bytes(side["DISPLAYMATRIX"]))
    theta = -frame.rotation % 360  # clockwise degrees, as the ffmpeg tool's get_rotation()
    if abs(theta - 90) < 1:
        return "transpose" if m[3] > 0 else "clock"
    if abs(theta - 180) < 1:
        h, v = m[0] < 0, m[4] < 0
        return "rot180" if h and v else "hflip" if h else "vflip" if v else "none"
    if abs(theta - 270) < 1:
        return "antitranspose" if m[3] < 0 else "cclock"
    if theta < 1 or theta > 359:
        return "vflip" if m[4] < 0 else "none"
    raise ModelRejected(f"display rotation of {theta:g} degrees is not a multiple of 90")


def read_orientation(src: Path) -> Orientation:
    """The orientation of the first decodable video frame of ``src`` ("none" when there is none to read:
    the conversion itself then reports the problem)."""
    try:
        with av.open(str(src), mode="r") as container:
            if not container.streams.video:
                return "none"
            video = container.streams.video[0]
            video.codec_context.thread_count = 1  # one frame is wanted: no decoder threads to start
            for frame in container.decode(video):
                return orientation_of(frame)
    except av.FFmpegError:
        pass
    return "none"


def display_size(orientation: Orientation, width: int, height: int) -> tuple[int, int]:
    """The (width, height) of a ``width``x``height`` coded picture once turned upright."""
    return (height, width) if orientation in SWAPS else (width, height)


_CV2_ROTATE = {"clock": cv2.ROTATE_90_CLOCKWISE, "cclock": cv2.ROTATE_90_COUNTERCLOCKWISE,
               "rot180": cv2.ROTATE_180}


def _turn(plane: cv2.typing.MatLike, orientation: Orientation) -> cv2.typing.MatLike:
    if orientation in _CV2_ROTATE:
        return cv2.rotate(plane, _CV2_ROTATE[orientation])
    if orientation == "hflip":
        return cv2.flip(plane, 1)
    if orientation == "vflip":
        return cv2.flip(plane, 0)
    if orientation == "transpose":
        return cv2.transpose(plane)
    return cv2.rotate(cv2.transpose(plane), cv2.ROTATE_180)  # antitranspose


def upright(frame: av.VideoFrame, orientation: Orientation) -> av.VideoFrame:
    """``frame`` (4:2:0 planar, 8-bit) turned to ``orientation``: a new frame with the same timing and colour
    properties, or ``frame`` itself for "none"."""
    if orientation == "none":
        return frame
    fmt = frame.format.name
    if fmt not in YUV420_LAYOUTS:
        raise ValueError(f"upright() needs a yuv420p frame, got {fmt}")
    width, height = display_size(orientation, frame.width, frame.height)
    out = av.VideoFrame(width, height, fmt)
    for i in range(3):
        plane_view(out, i)[...] = _turn(plane_view(frame, i), orientation)
    out.pts, out.duration = frame.pts, frame.duration
    if frame.time_base is not None:
        out.time_base = frame.time_base
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    return out
