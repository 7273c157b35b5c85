"""Frame-size limits: 4K UHD converts with the default settings; anything larger is refused from the header."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from video_worker.errors import ModelRejected
from video_worker.models.stereo import StereoModel, load_settings


def write_pattern(path: Path, width: int, height: int, frames: int) -> None:
    """A cheap clip: a horizontal gradient with a bright block moving right (x264 ultrafast)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        ramp = np.linspace(16, 235, width, dtype=np.float32).astype(np.uint8)
        for i in range(frames):
            img = np.repeat(np.repeat(ramp[None, :, None], height, 0), 3, 2)
            x = 200 + 40 * i
            img[height // 2: height // 2 + 300, x: x + 300] = 250
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))


def test_4k_converts_by_default(tmp_path: Path) -> None:
    src, dst = tmp_path / "uhd.mp4", tmp_path / "out.mp4"
    write_pattern(src, 3840, 2160, 3)
    model = StereoModel(load_settings({}))
    report = model.convert(src, dst, "sbs")
    assert report.frames == 3 and report.output_size == (7680, 2160)
    with av.open(str(dst)) as inp:
        frames = list(inp.decode(inp.streams.video[0]))
    assert [(f.width, f.height) for f in frames] == [(7680, 2160)] * 3


def test_4k_half_sbs_keeps_uhd(tmp_path: Path) -> None:
    """STEREO_SBS=half: a 3840x2160 output, which H.264 level 5.1 players decode (full sbs needs level 6)."""
    src, dst = tmp_path / "uhd.mp4", tmp_path / "out.mp4"
    write_pattern(src, 3840, 2160, 2)
    report = StereoModel(load_settings({"STEREO_SBS": "half"})).convert(src, dst, "sbs")
    assert report.output_size == (3840, 2160)


def test_larger_than_4k_is_refused_in_one_line(tmp_path: Path) -> None:
    src, dst = tmp_path / "dci.mp4", tmp_path / "out.mp4"
    write_pattern(src, 4096, 2160, 1)
    model = StereoModel(load_settings({}))
    try:
        model.convert(src, dst, "sbs")
    except ModelRejected as exc:
        assert str(exc) == "frame size 4096x2160 is over MAX_FRAME_PIXELS=8294400"
    else:
        raise AssertionError("a 4096x2160 input was converted")
    assert not dst.exists()
