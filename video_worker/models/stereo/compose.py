"""Output layouts: full or half side-by-side (left | right) and red/cyan anaglyph, rendered plane by plane in YUV."""

from __future__ import annotations

from typing import Literal

import av
import numpy as np

from video_worker.segments import Mode

from ._types import F32
from .anaglyph import AnaglyphMixer
from .dibr import PlaneWarper, ShiftCache, View, chroma_split
from .planes import yuv_views


class Composer:
    """Renders the stereo output frame of one input frame, given its low-resolution half-disparity field."""

    def __init__(self, mode: Mode, sbs: Literal["full", "half"], width: int, height: int,
                 colorspace: int, full_range: bool) -> None:
        self.mode = mode
        self._mixer: AnaglyphMixer | None = None
        if mode == "sbs":
            view_w = width if sbs == "full" else width // 2
            self.size = (2 * view_w, height)
            self._warpers = self._place([View(-1, 0, view_w), View(+1, view_w, view_w)], width, height)
        else:
            self.size = (width, height)
            self._warpers = [*self._full_view(-1, width, height), *self._full_view(+1, width, height)]
            self._mixer = AnaglyphMixer(width, height, colorspace, full_range)
            self._left = av.VideoFrame(width, height, "yuv420p")
        self._frame = av.VideoFrame(self.size[0], self.size[1], "yuv420p")
        self._shift = ShiftCache()

    @staticmethod
    def _full_view(sign: int, width: int, height: int) -> list[PlaneWarper]:
        """Warpers of one full-size view (for the anaglyph): luma, then chroma."""
        view = View(sign, 0, width)
        return [PlaneWarper(view, width, height, 1, 0, width), PlaneWarper(view, width, height // 2, 2, 0, width // 2)]

    @staticmethod
    def _place(views: list[View], width: int, height: int) -> list[PlaneWarper]:
        """Per view and plane (luma, chroma) a warper over the output columns that view covers."""
        boundary, out_width = views[1].x0, views[1].x0 + views[1].width
        split, cw = chroma_split(boundary, out_width // 2), out_width // 2
        return [PlaneWarper(views[0], width, height, 1, 0, boundary),
                PlaneWarper(views[1], width, height, 1, boundary, out_width),
                PlaneWarper(views[0], width, height // 2, 2, 0, split),
                PlaneWarper(views[1], width, height // 2, 2, split, cw)]

    def render(self, src: av.VideoFrame, shift: F32) -> av.VideoFrame:
        """The output frame for ``src`` and its ``shift`` (one reused object: encode it before the next call)."""
        self._shift.set(shift)
        self._frame.make_writable()
        out = yuv_views(self._frame)
        planes = yuv_views(src)
        if self._mixer is None:
            for warper in self._warpers:
                warper.warp(self._shift.at(warper.size), planes, out)
        else:
            self._left.make_writable()
            left = yuv_views(self._left)
            for warper in self._warpers[:2]:
                warper.warp(self._shift.at(warper.size), planes, left)
            for warper in self._warpers[2:]:
                warper.warp(self._shift.at(warper.size), planes, out)
            self._mixer.mix(left, out, out)
        self._frame.pts = src.pts
        self._frame.duration = src.duration
        return self._frame


def rgb_of(frame: av.VideoFrame) -> np.ndarray:
    """An RGB copy (HxWx3 uint8) of a yuv420p frame, for previews and tests."""
    return np.asarray(frame.to_ndarray(format="rgb24"))
