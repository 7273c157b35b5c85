"""Measured stereo quality: horizontal block matching between the two halves of a side-by-side output."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from .synthetic import Box, Scene

# Disparity here is d = x_left - x_right in input pixels: d > 0 means in front of the screen (a near object is
# shifted right in the left view and left in the right view), d < 0 behind it.

Grey = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Region:
    """A rectangle (x0, y0 inclusive; x1, y1 exclusive) in input pixels."""

    x0: int
    y0: int
    x1: int
    y1: int


def block_disparity(left: Grey, right: Grey, region: Region, search: int) -> float:
    """The shift d (sub-pixel) minimising the mean absolute difference of left[region] and right[region - d]."""
    patch = left[region.y0 : region.y1, region.x0 : region.x1].astype(np.float32)
    width = right.shape[1]
    costs: list[float] = []
    shifts = range(-search, search + 1)
    for d in shifts:
        a, b = region.x0 - d, region.x1 - d
        if a < 0 or b > width:
            costs.append(np.inf)
            continue
        costs.append(float(np.abs(patch - right[region.y0 : region.y1, a:b]).mean()))
    i = int(np.argmin(costs))
    if 0 < i < len(costs) - 1 and np.isfinite(costs[i - 1]) and np.isfinite(costs[i + 1]):
        c0, c1, c2 = costs[i - 1], costs[i], costs[i + 1]
        denom = c0 - 2 * c1 + c2
        offset = 0.5 * (c0 - c2) / denom if denom > 0 else 0.0
        return float(shifts[i] + offset)
    return float(shifts[i])


def shrink(box: Box, frac: float) -> Region:
    """The central part of ``box`` (``frac`` of each side removed)."""
    dx, dy = int((box.x1 - box.x0) * frac), int((box.y1 - box.y0) * frac)
    return Region(box.x0 + dx, box.y0 + dy, box.x1 - dx, box.y1 - dy)


def free_region(boxes: list[Box], width: int, y0: int, y1: int, span: int, margin: int) -> Region:
    """A ``span``-wide region of rows y0..y1 that stays ``margin`` px away from every object box."""
    busy = np.zeros(width, bool)
    for b in boxes:
        if b.y1 > y0 and b.y0 < y1:
            busy[max(0, b.x0 - margin) : min(width, b.x1 + margin)] = True
    for x in range(margin, width - span - margin):
        if not busy[x : x + span].any():
            return Region(x, y0, x + span, y1)
    raise ValueError("no object-free background region at these rows")


def sbs_luma(path: Path, index: int) -> tuple[Grey, Grey]:
    """Left and right luma of output frame ``index`` of a full side-by-side file."""
    with closing(av.open(str(path))) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == index:
                y = frame.to_ndarray(format="gray")
                half = y.shape[1] // 2
                return np.ascontiguousarray(y[:, :half]), np.ascontiguousarray(y[:, half:])
    raise IndexError(f"{path} has no frame {index}")


def sbs_lumas(path: Path) -> Iterator[tuple[Grey, Grey]]:
    """Left and right luma of every frame of a full side-by-side file, in order (one decode)."""
    with closing(av.open(str(path))) as c:
        for frame in c.decode(video=0):
            y = frame.to_ndarray(format="gray")
            half = y.shape[1] // 2
            yield np.ascontiguousarray(y[:, :half]), np.ascontiguousarray(y[:, half:])


def scene_disparities(scene: Scene, sbs: Path, index: int, search: int | None = None) -> dict[str, float]:
    """Measured disparity (px) at the near object, at the background beside it, and at the far background band.

    ``sbs`` is a full side-by-side conversion of the clip written from ``scene``.
    """
    return frame_disparities(scene, index, *sbs_luma(sbs, index), search=search)


def frame_disparities(scene: Scene, index: int, left: Grey, right: Grey, search: int | None = None) -> dict[str, float]:
    """``scene_disparities`` of one output frame's two views, for the scene's frame ``index``."""
    search = search if search is not None else max(8, scene.width // 32)
    _, boxes = scene.frame(index)
    near = next(b for b in boxes if b.name == "near")
    inner = shrink(near, 0.2)
    margin = scene.width // 12
    beside = free_region(boxes, scene.width, inner.y0, inner.y1, inner.x1 - inner.x0, margin)
    h = scene.height
    far = free_region(boxes, scene.width, int(0.40 * h), int(0.50 * h), scene.width // 8, margin)
    return {
        "near": block_disparity(left, right, inner, search),
        "beside": block_disparity(left, right, beside, search),
        "far": block_disparity(left, right, far, search),
    }


def near_disparity(scene: Scene, sbs: Path, first_frame: int = 0) -> list[float]:
    """The near object's disparity (px) in every frame of ``sbs``, whose first frame is scene frame ``first_frame``."""
    return [frame_disparities(scene, first_frame + i, left, right)["near"]
            for i, (left, right) in enumerate(sbs_lumas(sbs))]


def joined_disparity(scene: Scene, outputs: list[Path]) -> tuple[npt.NDArray[np.float64], list[int]]:
    """The near disparity through consecutive segment outputs of ``scene``, and the cuts (the first frame of
    each segment after the first)."""
    values: list[float] = []
    cuts: list[int] = []
    for out in outputs:
        if values:
            cuts.append(len(values))
        values += near_disparity(scene, out, len(values))
    return np.array(values), cuts


def ordinary_change(disparity: npt.NDArray[np.float64], cuts: list[int]) -> float:
    """The largest frame-to-frame change in disparity away from the cuts."""
    steps = np.abs(np.diff(disparity))
    return float(np.delete(steps, [c - 1 for c in cuts]).max())


def jumps(disparity: npt.NDArray[np.float64], cuts: list[int]) -> list[float]:
    """The change in disparity at each cut (a segment's last frame to the next one's first)."""
    return [float(abs(disparity[c] - disparity[c - 1])) for c in cuts]
