"""Bad input ends in ModelRejected with a one-line reason naming the problem; nothing is left at dst."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from video_worker.errors import ModelRejected
from video_worker.models.stereo import StereoModel, load_settings
from video_worker.models.stereo.synthetic import Scene


def rejected(model: StereoModel, src: Path, tmp_path: Path, mode: str = "sbs") -> str:
    dst = tmp_path / "out.mp4"
    with pytest.raises(ModelRejected) as info:
        model.infer(src, dst, mode)  # type: ignore[arg-type]
    assert not dst.exists()
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_random_bytes(model: StereoModel, tmp_path: Path) -> None:
    src = tmp_path / "noise.mp4"
    src.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    assert "not a readable video file" in rejected(model, src, tmp_path)


@pytest.mark.parametrize("name", ["notes.txt", "notes.mp4"])
def test_text_file(model: StereoModel, tmp_path: Path, name: str) -> None:
    src = tmp_path / name
    src.write_text("this is not a video\n" * 200)
    message = rejected(model, src, tmp_path)
    assert "not a readable video file" in message or "unsupported container format 'tty'" in message


def test_audio_only(clip: tuple[Path, Scene], model: StereoModel, tmp_path: Path) -> None:
    src = tmp_path / "audio.mp4"
    with av.open(str(clip[0])) as inp, av.open(str(src), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux(inp.streams.audio[0]):
            if packet.size:  # not the end-of-stream packet
                packet.stream = stream
                out.mux(packet)
    assert rejected(model, src, tmp_path) == "no video stream in the file"


def test_zero_frames(clip: tuple[Path, Scene], model: StereoModel, tmp_path: Path) -> None:
    src = tmp_path / "empty.mkv"  # matroska keeps a video track that has no frames (mp4 would drop it)
    with av.open(str(clip[0])) as inp, av.open(str(src), "w", format="matroska") as out:
        out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux(inp.streams.audio[0]):
            if packet.size:  # not the end-of-stream packet
                packet.stream = audio
                out.mux(packet)
    assert "no decodable frames" in rejected(model, src, tmp_path)


def _scrambled(src: Path, dst: Path, start_frac: float, length: int) -> Path:
    data = bytearray(src.read_bytes())
    mdat = data.find(b"mdat") + 8
    at = mdat + int((len(data) - mdat) * start_frac)
    data[at : at + length] = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("start", [0.0, 0.3, 0.6])
def test_corrupt_frame_data(clip: tuple[Path, Scene], model: StereoModel, tmp_path: Path, start: float) -> None:
    src = _scrambled(clip[0], tmp_path / "corrupt.mp4", start, 2000)
    message = rejected(model, src, tmp_path)
    assert "corrupt" in message


def test_truncated_file(clip: tuple[Path, Scene], model: StereoModel, tmp_path: Path) -> None:
    src = tmp_path / "cut.mp4"
    src.write_bytes(clip[0].read_bytes()[: clip[0].stat().st_size // 2])
    assert "not a readable video file" in rejected(model, src, tmp_path)


def test_too_many_pixels_checked_before_decoding(clip: tuple[Path, Scene], tmp_path: Path) -> None:
    small = StereoModel(load_settings({"MAX_FRAME_PIXELS": str(320 * 180 - 1)}))
    assert rejected(small, clip[0], tmp_path) == "frame size 320x180 is over MAX_FRAME_PIXELS=57599"
    # Frame data that cannot be decoded does not matter: the header alone decides.
    broken = _scrambled(clip[0], tmp_path / "broken.mp4", 0.0, 20000)
    assert "MAX_FRAME_PIXELS" in rejected(small, broken, tmp_path)


def test_odd_dimensions(model: StereoModel, tmp_path: Path) -> None:
    src = tmp_path / "odd.mp4"
    with av.open(str(src), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 161, 96, "yuv444p"  # 4:4:4 allows odd sizes
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((96, 161, 3), np.uint8), format="rgb24").reformat(format="yuv444p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert "161x96 has an odd dimension" in rejected(model, src, tmp_path)


def test_unknown_mode(clip: tuple[Path, Scene], model: StereoModel, tmp_path: Path) -> None:
    assert "is not anaglyph or sbs" in rejected(model, clip[0], tmp_path, mode="mono")


def test_other_pixel_formats_are_converted(model: StereoModel, tmp_path: Path) -> None:
    """A 4:4:4 input with even sizes is accepted (converted to 4:2:0 on the way)."""
    src = tmp_path / "444.mp4"
    scene = Scene(160, 96, 25)
    with av.open(str(src), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv444p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(scene.frame(i)[0], format="rgb24").reformat(format="yuv444p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    model.infer(src, tmp_path / "o.mp4", "sbs")
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in c.decode(video=0)) == 5
