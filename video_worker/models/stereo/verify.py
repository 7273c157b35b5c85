"""Check a converted segment against its input, as reassembly needs it: what the demo reports and the tests assert.

H.264 in mp4, ``yuv420p``, the expected size for the mode (of the upright
picture: a display rotation on the input is applied to the pixels), the input's
time base and every frame's pts, a keyframe first, the input's audio packets
copied untouched (at the same times; an MPEG-TS AAC packet loses its ADTS
header, which mp4 keeps once in the track header).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from .hdr import transfer_of
from .orient import display_size, read_orientation


@dataclass(frozen=True)
class Streams:
    """What a file holds, read back with PyAV."""

    codec: str
    pix_fmt: str
    size: tuple[int, int]
    """Of the upright picture (the display rotation applied)."""
    time_base: Fraction
    pts: list[int]
    first_is_keyframe: bool
    audio: list[tuple[Fraction | None, bytes]] = field(default_factory=list)
    """The first audio track's packets: (time in seconds, payload without an ADTS header)."""
    full_range: bool = False
    audio_tick: Fraction = Fraction(0)
    """The first audio track's time base in seconds: how precisely its times are stored."""


def read_streams(path: Path) -> Streams:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [(int(f.pts or 0), bool(f.key_frame)) for f in container.decode(video)]
        size = display_size(read_orientation(path), video.width, video.height)
        codec, ctx = video.codec_context.name, video.codec_context
        pix_fmt, time_base = str(ctx.pix_fmt), Fraction(video.time_base or 1)
        full_range = int(ctx.color_range) == 2 or pix_fmt.startswith("yuvj")
    audio: list[tuple[Fraction | None, bytes]] = []
    tb = Fraction(0)
    with av.open(str(path)) as container:
        if container.streams.audio:
            track = container.streams.audio[0]
            tb, aac = Fraction(track.time_base or 1), track.codec_context.name == "aac"
            audio = [(None if p.pts is None else p.pts * tb, _payload(bytes(p), aac))
                     for p in container.demux(track) if p.size > 0]
    return Streams(codec, pix_fmt, size, time_base, [p for p, _ in frames], bool(frames and frames[0][1]), audio,
                   full_range, tb)


def _payload(data: bytes, aac: bool) -> bytes:
    """An AAC packet without its ADTS header (7 bytes, 9 with a CRC), as mp4 stores it; other packets as they are."""
    if aac and len(data) >= 7 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:
        return data[7 if data[1] & 1 else 9:]
    return data


def expected_size(width: int, height: int, mode: str, sbs: str = "full") -> tuple[int, int]:
    return (2 * width, height) if mode == "sbs" and sbs == "full" else (width, height)


def problems(src: Path, out: Path, mode: str, sbs: str = "full") -> tuple[int, list[str]]:
    """(frames of ``out``, what is wrong with it as the stereo conversion of ``src``: empty if nothing)."""
    before, after = read_streams(src), read_streams(out)
    found: list[str] = []
    if after.codec != "h264":
        found.append(f"codec {after.codec}, not h264")
    # FFmpeg's decoder names full-range 4:2:0 "yuvj420p": the same planes, and the input's range is kept
    if after.pix_fmt not in ("yuv420p", "yuvj420p") or after.full_range != (before.full_range and not hdr(src)):
        found.append(f"pixel format {after.pix_fmt} ({'full' if after.full_range else 'limited'} range), not yuv420p"
                     f" in the input's {'full' if before.full_range else 'limited'} range")
    if after.size != expected_size(*before.size, mode, sbs):
        found.append(f"size {after.size}, not {expected_size(*before.size, mode, sbs)} for {mode}")
    if after.time_base != before.time_base:
        found.append(f"time base {after.time_base}, not the input's {before.time_base}")
    if sorted(after.pts) != sorted(before.pts):
        found.append(f"{len(after.pts)} frames / pts differ from the input's {len(before.pts)}")
    if not after.first_is_keyframe:
        found.append("the first frame is not a keyframe")
    if not _same_audio(before, after):
        found.append(f"audio: {len(after.audio)} packets, not the input's {len(before.audio)} copied untouched")
    return len(after.pts), found


def _same_audio(before: Streams, after: Streams) -> bool:
    """The same packets at the same times, to the precision of the coarser time base (Matroska's is 1 ms)."""
    if [data for _, data in before.audio] != [data for _, data in after.audio]:
        return False
    tick = max(before.audio_tick, after.audio_tick)
    return all(a == b or (a is not None and b is not None and abs(a - b) < tick)
               for (a, _), (b, _) in zip(before.audio, after.audio, strict=True))


def hdr(path: Path) -> bool:
    """True when the first video stream is PQ or HLG (converted to limited-range SDR)."""
    with av.open(str(path)) as container:
        return transfer_of(int(container.streams.video[0].codec_context.color_trc)) is not None
