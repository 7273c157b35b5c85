"""Depth-image-based rendering: depth → per-view horizontal shift, then backward mapping of YUV planes with remap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from ._types import F32
from .planes import Plane

# Convention: depth 0 = far, 1 = near; disparity d = x_left - x_right = D*(depth - convergence), D = divergence in px.
# A near object (d > 0, in front of the screen) is shifted right in the left view and left in the right view by d/2
# each. Backward mapping: left(x) = src(x - s(x)), right(x) = src(x + s(x)), s = d/2.

MAX_SLOPE = 0.5
"""Largest |ds/dx| of the shift field (full-resolution px per px). Below 1 the backward map cannot fold over;
the 'foreground fattening' that enforces it puts the stretch that fills disocclusions into the background."""
_MAX_FATTEN_STEPS = 64


def half_disparity(depth: F32, width: int, divergence: float, convergence: float) -> F32:
    """s = d/2 in full-resolution pixels, at the depth map's (working) resolution, with the slope limited."""
    scale = divergence / 100.0 * width / 2.0
    s = ((depth - np.float32(convergence)) * np.float32(scale)).astype(np.float32, copy=False)
    return fatten(s, MAX_SLOPE * width / depth.shape[1])


def fatten(shift: F32, step: float) -> F32:
    """Smallest field ≥ ``shift`` whose horizontal change is at most ``step`` per column: a cone dilation.

    Near (larger) shifts keep their value and spread into the farther neighbours with a slope of ``step``,
    so near objects are moved rigidly and the background next to them absorbs the stretch.
    """
    span = float(shift.max() - shift.min()) if shift.size else 0.0
    if step <= 0 or span <= step:
        return shift
    out = shift.copy()
    kernel = np.ones((1, 3), np.uint8)
    for _ in range(min(_MAX_FATTEN_STEPS, int(np.ceil(span / step)))):
        grown = cast(F32, cv2.dilate(out, kernel, borderType=cv2.BORDER_REPLICATE))
        np.maximum(out, grown - np.float32(step), out=out)
    return out


@dataclass(frozen=True)
class View:
    """Where one view lands in the output: sign (-1 left, +1 right), first luma column and width in luma px."""

    sign: int
    x0: int
    width: int


class PlaneWarper:
    """Backward-maps one source plane into a column range of an output plane, for one view.

    ``sx`` is the plane's horizontal subsampling (1 luma, 2 chroma); the view may squeeze the source (half sbs).
    The base map (source coordinate per output column) is computed once; per frame only the shift is added.
    """

    def __init__(self, view: View, src_width: int, plane_height: int, sx: int, c0: int, c1: int) -> None:
        cols = np.arange(c0, c1, dtype=np.float64)
        x_out = (cols + 0.5) * sx - 0.5  # output luma coordinate of each column's centre
        u = x_out - view.x0  # position within the view, luma px
        xs = (u + 0.5) * (src_width / view.width) - 0.5  # source luma coordinate
        xs_plane = (xs + 0.5) / sx - 0.5
        self.sign, self.sx, self.c0, self.c1 = view.sign, sx, c0, c1
        self.size = (c1 - c0, plane_height)
        self.base: F32 = np.ascontiguousarray(np.broadcast_to(xs_plane.astype(np.float32), (plane_height, c1 - c0)))
        rows = np.arange(plane_height, dtype=np.float32)[:, None]
        self.rows: F32 = np.ascontiguousarray(np.broadcast_to(rows, (plane_height, c1 - c0)))
        self._map: F32 = np.empty_like(self.base)

    def warp(self, shift: F32, src: tuple[Plane, Plane, Plane], dst: tuple[Plane, Plane, Plane]) -> None:
        """Write the view into columns c0:c1 of the destination plane(s): Y for luma, U and V for chroma.

        ``shift`` is s resized to this warper's ``size``.
        """
        cv2.scaleAdd(shift, float(self.sign) / self.sx, self.base, dst=self._map)
        for p in ((0,) if self.sx == 1 else (1, 2)):
            cv2.remap(src[p], self._map, self.rows, cv2.INTER_LINEAR, dst=dst[p][:, self.c0 : self.c1],
                      borderMode=cv2.BORDER_REPLICATE)


def chroma_split(view_boundary_luma: int, chroma_width: int) -> int:
    """First chroma column whose centre lies right of the luma boundary between two views."""
    return min(chroma_width, max(0, int(np.ceil((view_boundary_luma - 0.5) / 2.0))))


class ShiftCache:
    """The low-resolution shift resized to each warper size once per frame (left and right views share it).

    The full-size buffers are allocated once and reused: fresh multi-megabyte arrays every frame cost more in page
    faults than the resize itself.
    """

    def __init__(self) -> None:
        self._low: F32 | None = None
        self._buffers: dict[tuple[int, int], F32] = {}
        self._fresh: set[tuple[int, int]] = set()

    def set(self, low: F32) -> None:
        self._low = low
        self._fresh.clear()

    def at(self, size: tuple[int, int]) -> F32:
        buf = self._buffers.get(size)
        if buf is None:
            buf = self._buffers[size] = np.empty((size[1], size[0]), np.float32)
        if size not in self._fresh:
            assert self._low is not None
            cv2.resize(self._low, size, dst=buf, interpolation=cv2.INTER_LINEAR)
            self._fresh.add(size)
        return buf
