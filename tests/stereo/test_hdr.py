"""HDR inputs (HEVC 10-bit, PQ or HLG, BT.2020) come out SDR: 8-bit H.264 tagged BT.709, not washed out."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from video_worker.models.stereo import StereoModel
from video_worker.models.stereo.hdr import ToneMapper, hlg_inverse_oetf, pq_eotf

W, H = 256, 144


def pq_signal(nits: float) -> float:
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = (nits / 10000) ** m1
    return float(((c1 + c2 * y) / (1 + c3 * y)) ** m2)


PATCHES = {"black": 0.0, "grey": 26.0, "white": 203.0, "highlight": 1000.0}
"""BT.2408 levels in nits: 18% grey card, reference (diffuse) white, a bright highlight."""
HLG_PATCHES = {"black": 0.0, "grey": 0.38, "white": 0.75, "highlight": 1.0}
"""HLG signal levels: grey card at 38%, reference white at 75% (BT.2408)."""


def write_hdr(path: Path, transfer: str, frames: int = 4) -> None:
    """A 10-bit HEVC clip (libx265) of four vertical grey patches, tagged BT.2020 + PQ (or HLG), limited range."""
    levels = ([pq_signal(n) for n in PATCHES.values()] if transfer == "pq" else list(HLG_PATCHES.values()))
    luma = np.zeros((H, W), np.uint16)
    for i, level in enumerate(levels):
        luma[:, i * W // 4:(i + 1) * W // 4] = round(64 + 876 * level)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx265", rate=25, options={"x265-params": "log-level=error", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = W, H, "yuv420p10le"
        ctx = video.codec_context
        ctx.color_primaries, ctx.colorspace, ctx.color_range = 9, 9, 1
        ctx.color_trc = 16 if transfer == "pq" else 18
        for i in range(frames):
            frame = av.VideoFrame(W, H, "yuv420p10le")
            for index, plane in enumerate(frame.planes):
                view = np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)
                view[:, :plane.width] = luma if index == 0 else 512
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))


def patch_means(luma: np.ndarray, width: int) -> list[float]:
    """Mean luma of the middle of each of the four patches of one view ``width`` wide (away from the DIBR edges)."""
    q = width // 4
    return [float(luma[20:-20, i * q + q // 4:(i + 1) * q - q // 4].mean()) for i in range(4)]


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_input_is_really_hdr(tmp_path: Path, transfer: str) -> None:
    src = tmp_path / "hdr.mp4"
    write_hdr(src, transfer)
    with av.open(str(src)) as inp:
        ctx = inp.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("hevc", "yuv420p10le")
        assert (ctx.color_primaries, ctx.colorspace, ctx.color_trc) == (9, 9, 16 if transfer == "pq" else 18)


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
@pytest.mark.parametrize("mode", ["sbs", "anaglyph"])
def test_hdr_comes_out_sdr_bt709(tmp_path: Path, model: StereoModel, transfer: str, mode: str) -> None:
    src, dst = tmp_path / "hdr.mp4", tmp_path / "out.mp4"
    write_hdr(src, transfer)
    model.convert(src, dst, mode)  # type: ignore[arg-type]
    with av.open(str(dst)) as inp:
        ctx = inp.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("h264", "yuv420p")
        assert (ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range) == (1, 1, 1, 1)
        frames = [f.to_ndarray()[:f.height] for f in inp.decode(inp.streams.video[0])]  # Y plane, 16-235
    assert len(frames) == 4
    black, grey, white, highlight = patch_means(frames[-1], W)
    # an SDR picture: grey card where SDR puts it (18% on a gamma-2.4 display: luma 109), white near white,
    # the highlight above it; PQ code values merely cut to 8 bits would give grey 99, white 147.
    assert black < 24
    assert 95 < grey < 125, (grey, white)
    assert 195 < white < 230, (grey, white)
    assert white < highlight <= 236


def test_tone_curve_levels() -> None:
    """The mapping's fixed points: SDR mid-tones as FFmpeg's swscale maps them, highlights rolled off to 1000 nits."""
    nits = np.array([0.0, 26.0, 100.0, 203.0, 500.0, 1000.0, 4000.0])
    codes = np.array([[round(pq_signal(n) * 65535)] * 3 for n in nits], np.uint16)[None]
    rgb = ToneMapper("pq").sdr_rgb(codes)[0, :, 0].tolist()
    assert rgb == sorted(rgb) and rgb[0] == 0 and rgb[-2] == rgb[-1] == 255
    assert 105 <= rgb[1] <= 111 and 186 <= rgb[2] <= 192 and 222 <= rgb[3] <= 232 and rgb[4] < 255  # full range
    assert abs(float(pq_eotf(np.float32([pq_signal(203.0)]))[0]) - 203.0) < 0.5
    assert abs(float(hlg_inverse_oetf(np.float32([0.5]))[0]) - 1 / 12) < 1e-4
