"""Opening and checking an input segment: container, video stream header, limits, before any frame is decoded."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from video_worker.errors import ModelRejected

from .hdr import Transfer, transfer_of
from .orient import Orientation, display_size

CONTAINERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "mpegts")
"""Demuxers accepted; anything else (raw streams, images, text 'tty' files) is rejected."""


@dataclass(frozen=True)
class VideoHeader:
    """What the stream header says about the video, read before decoding."""

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    frames: int
    """Frame count from the header, 0 when the container does not say."""
    codec: str
    orientation: Orientation = "none"
    hdr: Transfer | None = None
    """PQ or HLG (from the stream's colour tags): frames are tone-mapped to SDR BT.709, and tagged so."""
    """How each decoded frame is turned upright (from the display matrix); the output has no display matrix."""

    @property
    def display(self) -> tuple[int, int]:
        """(width, height) of the upright picture: what depth, rendering and the output see."""
        return display_size(self.orientation, self.width, self.height)


def open_source(src: Path) -> av.container.InputContainer:
    """Open ``src`` for demuxing; ``ModelRejected`` when it is not a supported video container."""
    try:
        container = av.open(str(src), mode="r")
    except av.FFmpegError as exc:
        raise ModelRejected(f"not a readable video file: {short_error(exc)}") from None
    if container.format.name not in CONTAINERS:
        name = container.format.name
        container.close()
        raise ModelRejected(f"unsupported container format {name!r} (expected mp4/mov, mkv/webm or mpegts)")
    return container


def read_header(container: av.container.InputContainer, max_pixels: int,
                orientation: Orientation = "none") -> VideoHeader:
    """Check the first video stream's header: present, known even dimensions, within ``max_pixels``."""
    if not container.streams.video:
        raise ModelRejected("no video stream in the file")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = int(ctx.width), int(ctx.height)
    if width <= 0 or height <= 0:
        raise ModelRejected("video stream header gives no frame size")
    if width * height > max_pixels:
        raise ModelRejected(f"frame size {width}x{height} is over MAX_FRAME_PIXELS={max_pixels}")
    if width % 2 or height % 2:
        raise ModelRejected(f"frame size {width}x{height} has an odd dimension (4:2:0 output needs even sizes)")
    if stream.time_base is None:
        raise ModelRejected("video stream has no time base")
    rate = stream.average_rate or stream.guessed_rate
    return VideoHeader(
        width=width, height=height, time_base=Fraction(stream.time_base), frame_rate=Fraction(rate) if rate else None,
        frames=int(stream.frames or 0), codec=ctx.name, orientation=orientation,
        hdr=transfer_of(int(ctx.color_trc)),
    )


def short_error(exc: BaseException) -> str:
    """An FFmpeg error as one short line (without the file name PyAV appends)."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
