"""Still images for documentation: one frame as PNG, and a figure input | depth map | sbs | anaglyph."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import av
import av.video.reformatter
import cv2
import numpy as np
import numpy.typing as npt

from .compose import Composer, rgb_of
from .depth import DepthEstimator, working_size
from .dibr import half_disparity
from .estimators import make_estimator
from .hdr import BT709, ToneMapper
from .orient import read_orientation, upright
from .planes import as_yuv420
from .settings import StereoSettings, load_settings
from .source import open_source, read_header

RGB = npt.NDArray[np.uint8]


def write_png(rgb: RGB, path: Path) -> None:
    """Write an HxWx3 uint8 RGB image as PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def depth_image(depth: npt.NDArray[np.float32], size: tuple[int, int]) -> RGB:
    """A depth map (0 far .. 1 near) as a colour image of ``size`` (w, h): near is bright/yellow."""
    grey = np.clip(depth * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR), cv2.COLORMAP_INFERNO)
    return np.asarray(cv2.cvtColor(colour, cv2.COLOR_BGR2RGB))


def _label(img: RGB, text: str) -> RGB:
    out = np.ascontiguousarray(img)
    scale = max(0.4, img.shape[0] / 500)
    cv2.putText(out, text, (8, int(24 * scale + 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, int(24 * scale + 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def composite(src: Path, png: Path, frame_index: int | None = None, settings: StereoSettings | None = None,
              estimator: DepthEstimator | None = None) -> dict[str, RGB]:
    """Write a figure of one frame: [input | depth] over [side-by-side] over [anaglyph | blank].

    Depth runs over every frame up to ``frame_index`` (default: the middle) so its temporal state is as in a
    conversion. Returns the panels by name (input, depth, sbs, anaglyph) for further use.
    """
    s = settings if settings is not None else load_settings({})
    est = estimator if estimator is not None else make_estimator(s)
    est.reset()
    with closing(open_source(src)) as inp:
        header = read_header(inp, s.max_frame_pixels, read_orientation(src))
        target = header.frames // 2 if frame_index is None else frame_index
        dw, dh = header.display
        w, h = working_size(dw, dh, s.depth_width)
        scaler = av.video.reformatter.VideoReformatter()
        ctx = inp.streams.video[0].codec_context
        cs, full = int(ctx.colorspace), int(ctx.color_range) == 2
        if header.hdr:
            cs, full = BT709, False
        sdr = ToneMapper(header.hdr) if header.hdr else as_yuv420
        frame: av.VideoFrame | None = None
        depth = np.zeros((h, w), np.float32)
        for i, decoded in enumerate(inp.decode(video=0)):
            frame = upright(sdr(decoded), header.orientation)
            small = np.asarray(scaler.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA")
                               .to_ndarray(), np.uint8)
            depth = np.clip(np.nan_to_num(est.estimate(small[None])[0], nan=0.0), 0.0, 1.0)  # as the model does
            if i >= target:
                break
    if frame is None:
        raise ValueError(f"{src} has no frames")
    shift = half_disparity(depth, dw, s.divergence, s.convergence)
    panels = {
        "input": rgb_of(frame),
        "depth": depth_image(depth, (dw, dh)),
        "sbs": rgb_of(Composer("sbs", "full", dw, dh, cs, full).render(frame, shift)),
        "anaglyph": rgb_of(Composer("anaglyph", "full", dw, dh, cs, full).render(frame, shift)),
    }
    top = np.hstack([_label(panels["input"], "input"), _label(panels["depth"], "depth (bright = near)")])
    mid = _label(panels["sbs"], "side-by-side: left | right")
    bottom = np.hstack([_label(panels["anaglyph"], "anaglyph (red = left)"), np.full_like(panels["input"], 255)])
    write_png(np.vstack([top, mid, bottom]), png)
    return panels
