"""Phone video: a display matrix (rotation, flips) on the input gives an upright side by side with no matrix."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from video_worker.models.stereo import StereoModel
from video_worker.models.stereo.orient import orientation_of, upright

DISPLAY_W, DISPLAY_H = 96, 160
"""The upright (displayed) picture: portrait, as a phone shows it."""
FRAMES = 6


def displayed_picture() -> np.ndarray:
    """Mid-grey portrait picture with a white block in its top-left corner and a black one bottom-right."""
    img = np.full((DISPLAY_H, DISPLAY_W, 3), 128, np.uint8)
    img[:40, :30] = 255
    img[-40:, -30:] = 0
    return img


def coded_picture(display: np.ndarray, degrees: int, hflip: bool, vflip: bool) -> np.ndarray:
    """The coded picture that PyAV's ``set_display_rotation(degrees, hflip, vflip)`` shows as ``display``.

    The display turns the coded picture ``degrees`` counter-clockwise, then mirrors it: undo in reverse order.
    """
    img = display
    if vflip:
        img = img[::-1]
    if hflip:
        img = img[:, ::-1]
    return np.ascontiguousarray(np.rot90(img, k=-degrees // 90))


def write_rotated(path: Path, degrees: int, hflip: bool = False, vflip: bool = False, audio: bool = True) -> None:
    coded = coded_picture(displayed_picture(), degrees, hflip, vflip)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height = coded.shape[1], coded.shape[0]
        video.pix_fmt = "yuv420p"
        video.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        sound = out.add_stream("aac", rate=48000) if audio else None
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(coded, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(48000 * FRAMES // 10) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            samples = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            samples.sample_rate, samples.pts = 48000, 0
            out.mux(sound.encode(samples))
            out.mux(sound.encode(None))


def first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as inp:
        return next(inp.decode(inp.streams.video[0]))


def video_pts(path: Path) -> list[int]:
    with av.open(str(path)) as inp:
        return sorted(p.pts for p in inp.demux(inp.streams.video[0]) if p.pts is not None)


def audio_bytes(path: Path) -> list[bytes]:
    with av.open(str(path)) as inp:
        return [bytes(p) for p in inp.demux(inp.streams.audio[0]) if p.size]


CASES = [(-90, False, False), (90, False, False), (180, False, False),
         (0, True, False), (0, False, True), (-90, True, False), (90, True, False)]


@pytest.mark.parametrize(("degrees", "hflip", "vflip"), CASES)
def test_written_clip_carries_the_matrix(tmp_path: Path, degrees: int, hflip: bool, vflip: bool) -> None:
    src = tmp_path / "in.mp4"
    write_rotated(src, degrees, hflip, vflip, audio=False)
    frame = first_frame(src)
    assert "DISPLAYMATRIX" in frame.side_data
    # the upright picture computed from the matrix is the one the test meant to show
    up = upright(frame.reformat(format="yuv420p"), orientation_of(frame)).to_ndarray(format="rgb24")
    assert up.shape[:2] == (DISPLAY_H, DISPLAY_W)
    assert abs(int(up[:20, :15].mean()) - 255) < 30 and int(up[-20:, -15:].mean()) < 30


def corners(eye: np.ndarray) -> tuple[float, float, float, float]:
    """Mean luma of the four corner blocks (top-left, top-right, bottom-left, bottom-right), 20x12 px each."""
    y = eye.astype(np.float64)
    return (y[:20, 2:14].mean(), y[:20, -14:-2].mean(), y[-20:, 2:14].mean(), y[-20:, -14:-2].mean())


@pytest.mark.parametrize(("degrees", "hflip", "vflip"), CASES)
def test_sbs_is_upright_without_a_matrix(tmp_path: Path, model: StereoModel, degrees: int, hflip: bool,
                                         vflip: bool) -> None:
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_rotated(src, degrees, hflip, vflip)
    model.convert(src, dst, "sbs")
    out = first_frame(dst)
    assert (out.width, out.height) == (2 * DISPLAY_W, DISPLAY_H)
    assert out.rotation == 0 and "DISPLAYMATRIX" not in out.side_data
    with av.open(str(dst)) as inp:
        luma = [f.to_ndarray(format="gray") for f in inp.decode(inp.streams.video[0])]
    assert len(luma) == FRAMES
    for y in (luma[0], luma[-1]):
        for eye in (y[:, :DISPLAY_W], y[:, DISPLAY_W:]):
            tl, tr, bl, br = corners(eye)
            assert tl > 200 and br < 50 and 90 < tr < 170 and 90 < bl < 170, (tl, tr, bl, br)
    assert video_pts(dst) == video_pts(src)
    assert audio_bytes(dst) == audio_bytes(src)


def test_anaglyph_is_upright(tmp_path: Path, model: StereoModel) -> None:
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_rotated(src, 90, audio=False)
    model.convert(src, dst, "anaglyph")
    out = first_frame(dst)
    assert (out.width, out.height) == (DISPLAY_W, DISPLAY_H)
    assert out.rotation == 0 and "DISPLAYMATRIX" not in out.side_data
    tl, _, _, br = corners(out.to_ndarray(format="gray"))
    assert tl > 150 and br < 60


def test_phone_720p_portrait_gives_1440x1280(tmp_path: Path, model: StereoModel) -> None:
    """A 1280x720 coded clip rotated 90° (as a phone records portrait) gives 720x1280 per eye."""
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        video.codec_context.sample_aspect_ratio = Fraction(1, 1)
        video.set_display_rotation(-90)  # a phone's "rotate=90": turn clockwise to show
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((720, 1280, 3), 100, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    assert first_frame(src).rotation == -90
    report = model.convert(src, dst, "sbs")
    assert report.output_size == (1440, 1280)
    out_frame = first_frame(dst)
    assert (out_frame.width, out_frame.height) == (1440, 1280) and "DISPLAYMATRIX" not in out_frame.side_data

