"""Check a converted segment against its input, as reassembly needs it: what the demo reports and the tests assert.

H.264 in mp4, ``yuv420p``, the expected size for the mode, the input's time
base and every frame's pts, a keyframe first, the input's audio packets copied
untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av


@dataclass(frozen=True)
class Streams:
    """What a file holds, read back with PyAV."""

    codec: str
    pix_fmt: str
    size: tuple[int, int]
    time_base: Fraction
    pts: list[int]
    first_is_keyframe: bool
    audio: list[tuple[int | None, bytes]] = field(default_factory=list)


def read_streams(path: Path) -> Streams:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [(int(f.pts or 0), bool(f.key_frame)) for f in container.decode(video)]
        size, codec = (video.width, video.height), video.codec_context.name
        pix_fmt, time_base = str(video.codec_context.pix_fmt), Fraction(video.time_base or 1)
    audio: list[tuple[int | None, bytes]] = []
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = [(p.pts, bytes(p)) for p in container.demux(container.streams.audio[0]) if p.size > 0]
    return Streams(codec, pix_fmt, size, time_base, [p for p, _ in frames], bool(frames and frames[0][1]), audio)


def expected_size(width: int, height: int, mode: str, sbs: str = "full") -> tuple[int, int]:
    return (2 * width, height) if mode == "sbs" and sbs == "full" else (width, height)


def problems(src: Path, out: Path, mode: str, sbs: str = "full") -> tuple[int, list[str]]:
    """(frames of ``out``, what is wrong with it as the stereo conversion of ``src``: empty if nothing)."""
    before, after = read_streams(src), read_streams(out)
    found: list[str] = []
    if after.codec != "h264":
        found.append(f"codec {after.codec}, not h264")
    if after.pix_fmt != "yuv420p":
        found.append(f"pixel format {after.pix_fmt}, not yuv420p")
    if after.size != expected_size(*before.size, mode, sbs):
        found.append(f"size {after.size}, not {expected_size(*before.size, mode, sbs)} for {mode}")
    if after.time_base != before.time_base:
        found.append(f"time base {after.time_base}, not the input's {before.time_base}")
    if sorted(after.pts) != sorted(before.pts):
        found.append(f"{len(after.pts)} frames / pts differ from the input's {len(before.pts)}")
    if not after.first_is_keyframe:
        found.append("the first frame is not a keyframe")
    if after.audio != before.audio:
        found.append(f"audio: {len(after.audio)} packets, not the input's {len(before.audio)} copied untouched")
    return len(after.pts), found
