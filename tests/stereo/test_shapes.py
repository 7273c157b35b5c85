"""Real-world input shapes, each generated as a real file with PyAV and converted with the default model.

The shapes an outside evaluation ran through the product (codecs, containers under the wrong name, odd
timing, colour tags, aspect ratio, rotation, audio tracks): every one must give a segment that reassembly
accepts (``verify.problems``) with one output frame per input frame, H.264 yuv420p, twice the displayed width
for full side by side. A shape this FFmpeg build cannot write is skipped, with the missing encoder named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from video_worker.models.stereo import StereoModel
from video_worker.models.stereo.orient import SWAPS, display_size, orientation_of
from video_worker.models.stereo.synthetic import Scene
from video_worker.models.stereo.verify import problems, read_streams


@dataclass(frozen=True)
class Audio:
    """One audio track: encoder, sample rate, sample format it takes, channels."""

    codec: str
    rate: int = 48000
    sample_format: str = "fltp"
    layout: str = "stereo"


AAC = Audio("aac")


@dataclass(frozen=True)
class Shape:
    """How one input is written: container (and the file name it gets), video encoder and its settings, timing
    (frame pts in ``time_base``), colour tags, aspect ratio, display rotation, audio tracks."""

    name: str
    codec: str = "libx264"
    container: str = "mp4"
    suffix: str = ".mp4"
    pix_fmt: str = "yuv420p"
    size: tuple[int, int] = (320, 180)
    time_base: Fraction = Fraction(1, 25)
    pts: tuple[int, ...] = tuple(range(6))
    rate: Fraction = Fraction(25)
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    colour: tuple[int, int, int, int] | None = None
    """(primaries, transfer, matrix, range) as FFmpeg's enum values."""
    sar: Fraction | None = None
    rotation: int | None = None
    audio: tuple[Audio, ...] = (AAC,)
    modes: tuple[str, ...] = ("sbs", "anaglyph")
    expect: dict[str, object] = field(default_factory=dict)
    """What the written file must show (keys of ``describe``): proof that the input really has the shape."""


X264_QUIET = {"preset": "ultrafast", "crf": "23"}
BT2020_PQ = (9, 16, 9, 1)


def even_pts(frames: int, step: int = 1, start: int = 0) -> tuple[int, ...]:
    return tuple(start + i * step for i in range(frames))


SHAPES = [
    Shape("hevc-10bit-hdr-pq", codec="libx265", pix_fmt="yuv420p10le", colour=BT2020_PQ, audio=(),
          expect={"codec": "hevc", "pix_fmt": "yuv420p10le", "trc": 16, "primaries": 9},
          options={"preset": "ultrafast", "x265-params": "log-level=error"}),
    Shape("vp9-in-mp4", codec="libvpx-vp9", expect={"codec": "vp9", "format": "mp4"},
          options={"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
    Shape("av1-in-mp4", codec="libsvtav1", expect={"codec": "av1", "format": "mp4"}, options={"preset": "12"}),
    # variable frame rate, as a phone writes it: frame gaps of 17 to 117 ms around a nominal 30 fps
    Shape("vfr", time_base=Fraction(1, 1000), pts=(0, 33, 66, 133, 150, 250, 283, 400), rate=Fraction(30),
          options={**X264_QUIET}, expect={"steps": 5}),
    Shape("ntsc-film-23.976", time_base=Fraction(1001, 24000), rate=Fraction(24000, 1001), pts=even_pts(8),
          options={**X264_QUIET}, expect={"rate": Fraction(24000, 1001), "steps": 1}),
    # a later segment of the same, cut at frame 29: it starts at 29029/24000 s, not a whole millisecond (the
    # mp4 keeps that exactly only with a movie timescale finer than the default ms)
    Shape("ntsc-film-segment-start", time_base=Fraction(1001, 24000), rate=Fraction(24000, 1001),
          pts=even_pts(6, start=29), options={**X264_QUIET}, container_options={"movie_timescale": "24000"},
          expect={"start": Fraction(29029, 24000)}),
    # B-frames and a stream that starts at 2 s (an edit-list offset in mp4)
    Shape("h264-bframes-start-2s", pts=even_pts(10, start=50), options={"preset": "medium", "bf": "3", "crf": "23"},
          expect={"b_frames": True, "start": Fraction(2)}),
    Shape("yuv444-322x182", pix_fmt="yuv444p", size=(322, 182), options={**X264_QUIET},
          expect={"pix_fmt": "yuv444p", "profile": "High 4:4:4 Predictive"}),
    Shape("full-range", pix_fmt="yuvj420p", colour=(1, 1, 1, 2), options={**X264_QUIET},
          expect={"range": 2}),
    Shape("interlaced-tff", size=(320, 180), options={**X264_QUIET, "flags": "+ildct+ilme", "x264-params": "tff=1"},
          expect={"interlaced": True}),
    Shape("anamorphic-pal-16x9", size=(720, 576), sar=Fraction(64, 45), pts=even_pts(4), modes=("sbs",),
          options={**X264_QUIET}, expect={"sar": Fraction(64, 45)}),
    Shape("prores-422-10bit-mov-named-mp4", codec="prores_ks", container="mov", pix_fmt="yuv422p10le",
          options={"profile": "2"}, audio=(Audio("pcm_s16le", sample_format="s16"),),
          expect={"codec": "prores", "pix_fmt": "yuv422p10le", "format": "mov"}),
    Shape("matroska-named-mp4", container="matroska", time_base=Fraction(1, 1000), pts=even_pts(6, step=40),
          options={**X264_QUIET}, expect={"format": "matroska"}),
    Shape("mpegts-named-mp4", container="mpegts", time_base=Fraction(1, 90000), pts=even_pts(6, step=3600),
          options={**X264_QUIET}, expect={"format": "mpegts"}),
    Shape("mov-named-mp4", container="mov", options={**X264_QUIET}, expect={"format": "mov"}),
    Shape("two-audio-tracks", audio=(AAC, Audio("aac", rate=44100, layout="mono")), options={**X264_QUIET},
          expect={"audio": ["aac", "aac"]}),
    Shape("mp3-audio", audio=(Audio("libmp3lame", rate=44100, sample_format="s16p"),), options={**X264_QUIET},
          expect={"audio": ["mp3float"]}),
    Shape("pcm-audio-mov", container="mov", suffix=".mov", audio=(Audio("pcm_s16le", sample_format="s16"),),
          options={**X264_QUIET}, expect={"audio": ["pcm_s16le"]}),
    Shape("pcm-audio-mkv", container="matroska", suffix=".mkv", time_base=Fraction(1, 1000),
          pts=even_pts(6, step=40), audio=(Audio("pcm_s16le", sample_format="s16"),), options={**X264_QUIET},
          expect={"audio": ["pcm_s16le"], "format": "matroska"}),
    Shape("single-frame", pts=(0,), options={**X264_QUIET}),
    Shape("60fps", time_base=Fraction(1, 60), rate=Fraction(60), pts=even_pts(12), options={**X264_QUIET},
          expect={"rate": Fraction(60)}),
    Shape("h264-aac-720p", size=(1280, 720), pts=even_pts(4), modes=("sbs",), options={**X264_QUIET}),
    Shape("phone-rotated-90", size=(320, 180), rotation=-90, options={**X264_QUIET}, expect={"rotation": -90}),
]


def write_shape(path: Path, shape: Shape) -> None:
    """Write ``shape`` to ``path``: frames of ``Scene`` at its pts, audio covering the same time."""
    width, height = shape.size
    scene = Scene(width, height, max(1, round(shape.rate)))
    with av.open(str(path), "w", format=shape.container, container_options=dict(shape.container_options)) as out:
        video = out.add_stream(shape.codec, rate=shape.rate, options=dict(shape.options))
        ctx = video.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = width, height, shape.pix_fmt
        ctx.time_base = shape.time_base
        video.time_base = shape.time_base
        ctx.thread_count = 1
        if shape.colour is not None:
            ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = shape.colour
        if shape.sar is not None:
            ctx.sample_aspect_ratio = shape.sar
        if shape.rotation is not None:
            video.set_display_rotation(shape.rotation)
        tracks = []
        for track in shape.audio:
            stream = out.add_stream(track.codec, rate=track.rate)
            stream.codec_context.thread_count = 1
            stream.layout = track.layout
            stream.format = track.sample_format
            tracks.append(stream)
        for i, pts in enumerate(shape.pts):
            rgb, _ = scene.frame(i)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=shape.pix_fmt)
            frame.pts, frame.time_base = pts, shape.time_base
            if shape.colour is not None:
                frame.color_range = shape.colour[3]
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        start = float(shape.pts[0] * shape.time_base)
        end = float((shape.pts[-1] + 1) * shape.time_base) if len(shape.pts) > 1 else start + 0.04
        for track, stream in zip(shape.audio, tracks, strict=True):
            mux_tone(out, stream, track, start, end)


def mux_tone(out: av.container.OutputContainer, stream: av.AudioStream, track: Audio, start: float,
             end: float) -> None:
    """A 440 Hz tone from ``start`` to ``end`` seconds in frames of the encoder's size."""
    size = stream.codec_context.frame_size or 1024
    channels = 1 if track.layout == "mono" else 2
    done = round(start * track.rate)
    while done < end * track.rate:
        t = np.arange(done, done + size) / track.rate
        wave = 0.2 * np.sin(2 * np.pi * 440.0 * t)
        data = (wave * 32767).astype(np.int16) if track.sample_format.startswith("s16") else wave.astype(np.float32)
        planes = np.stack([data] * channels)
        if not track.sample_format.endswith("p"):
            planes = planes.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format=track.sample_format,
                                           layout=track.layout)
        frame.sample_rate, frame.pts, frame.time_base = track.rate, done, Fraction(1, track.rate)
        out.mux(stream.encode(frame))
        done += size
    out.mux(stream.encode(None))


def audio_tracks(path: Path) -> list[list[bytes]]:
    """Every audio track's packets (bytes), in stream order (``problems`` checks the first one's times too)."""
    with av.open(str(path)) as inp:
        tracks: dict[int, list[bytes]] = {s.index: [] for s in inp.streams.audio}
        if not tracks:
            return []
        for packet in inp.demux(*inp.streams.audio):
            if packet.size > 0:  # the end-of-stream packet is empty; a real one may lack a DTS
                tracks[packet.stream.index].append(bytes(packet))
    return list(tracks.values())


def displayed(path: Path) -> tuple[tuple[int, int], Fraction, int]:
    """(upright size, sample aspect ratio of the upright picture, frames) of the first video stream of ``path``."""
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        frames = list(inp.decode(stream))
        turn = orientation_of(frames[0])
        sar = Fraction(stream.codec_context.sample_aspect_ratio or 1)
    if turn in SWAPS:
        sar = 1 / sar
    return display_size(turn, frames[0].width, frames[0].height), sar, len(frames)


def describe(path: Path) -> dict[str, object]:
    """The properties of ``path`` that a shape's ``expect`` names."""
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        ctx, tb = stream.codec_context, Fraction(stream.time_base or 1)
        packets = [(p.pts, p.dts) for p in inp.demux(stream) if p.size > 0 and p.dts is not None]  # B-frame check: decode order needs DTS
        facts: dict[str, object] = {
            "codec": "av1" if ctx.name == "libdav1d" else ctx.name, "pix_fmt": ctx.pix_fmt, "profile": ctx.profile,
            "trc": int(ctx.color_trc), "primaries": int(ctx.color_primaries), "range": int(ctx.color_range),
            "sar": ctx.sample_aspect_ratio, "rate": stream.average_rate,
            "audio": [a.codec_context.name for a in inp.streams.audio],
            "format": {"matroska,webm": "matroska", "mpegts": "mpegts"}.get(
                inp.format.name, "mov" if inp.metadata.get("major_brand") == "qt  " else "mp4"),
        }
    with av.open(str(path)) as inp:
        first = next(inp.decode(inp.streams.video[0]))
        facts.update(interlaced=bool(first.interlaced_frame), rotation=first.rotation, start=int(first.pts or 0) * tb)
    pts = sorted(int(p or 0) for p, _ in packets)
    facts.update(b_frames=any(p != d for p, d in packets), steps=len({b - a for a, b in pairwise(pts)}))
    return facts


def missing_encoders(shape: Shape) -> list[str]:
    wanted = [shape.codec, *(a.codec for a in shape.audio)]
    return [name for name in wanted if name not in av.codecs_available]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the written input (written on first use, shared by both modes)."""
    return {}


CASES = [pytest.param(shape, mode, id=f"{shape.name}-{mode}") for shape in SHAPES for mode in shape.modes]


@pytest.mark.parametrize(("shape", "mode"), CASES)
def test_shape_converts(shape: Shape, mode: str, model: StereoModel, sources: dict[str, Path],
                        tmp_path_factory: pytest.TempPathFactory) -> None:
    missing = missing_encoders(shape)
    if missing:
        pytest.skip(f"this FFmpeg build has no {', '.join(missing)} encoder")
    if shape.name not in sources:
        src = tmp_path_factory.mktemp("shape") / f"{shape.name}{shape.suffix}"
        write_shape(src, shape)
        facts = describe(src)
        assert {key: facts[key] for key in shape.expect} == shape.expect  # the input really has the shape
        sources[shape.name] = src
    src = sources[shape.name]
    dst = src.with_name(f"{shape.name}-{mode}.out.mp4")
    model.convert(src, dst, mode)  # type: ignore[arg-type]

    frames, found = problems(src, dst, mode)
    assert found == []
    (width, height), sar, src_frames = displayed(src)
    assert src_frames == len(shape.pts)
    out = read_streams(dst)
    # full range stays full range: FFmpeg's decoder calls that 4:2:0 layout "yuvj420p"
    assert (out.codec, out.pix_fmt) == ("h264", "yuvj420p" if shape.pix_fmt == "yuvj420p" else "yuv420p")
    assert frames == src_frames
    assert out.size == ((2 * width, height) if mode == "sbs" else (width, height))
    with av.open(str(dst)) as inp:
        first = next(inp.decode(inp.streams.video[0]))
    assert (first.width, first.height) == out.size  # upright pixels: no display matrix left to apply
    assert "DISPLAYMATRIX" not in first.side_data
    _, out_sar, _ = displayed(dst)
    assert out_sar == sar  # the picture keeps its shape: each view has the input's pixel aspect ratio
    before, after = audio_tracks(src), audio_tracks(dst)
    assert len(after) == len(before) == len(shape.audio)
    assert after[1:] == before[1:]  # every further track copied too
