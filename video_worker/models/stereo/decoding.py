"""Reading a segment for the converter: decoded frames in order with their checks, the working-size RGB the
estimator takes, and the last frames of the previous segment (the context)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TypeAlias, cast

import av
import av.video.reformatter
import numpy as np
import numpy.typing as npt

from video_worker.errors import ModelRejected

from .hdr import ToneMapper
from .orient import orientation_of, upright
from .planes import as_yuv420
from .settings import StereoSettings
from .source import VideoHeader, open_source, read_header, short_error

Packet: TypeAlias = "av.Packet[av.stream.Stream]"
"""An audio packet demuxed on the way, to be remuxed unchanged."""


class Working:
    """Turns decoded frames into what the renderer takes (upright, SDR, 4:2:0) and what the estimator takes (RGB
    at the working size); one per thread (it keeps swscale contexts)."""

    def __init__(self, header: VideoHeader, size: tuple[int, int]) -> None:
        self.header, self.size = header, size
        self._scaler = av.video.reformatter.VideoReformatter()
        self._sdr = ToneMapper(header.hdr) if header.hdr else as_yuv420

    def __call__(self, frame: av.VideoFrame, index: int) -> tuple[av.VideoFrame, npt.NDArray[np.uint8]]:
        """``frame`` (the segment's ``index``-th) for the renderer and for the estimator."""
        if orientation_of(frame) != self.header.orientation:
            raise ModelRejected(f"the display rotation changes at frame {index}")
        frame = upright(self._sdr(frame), self.header.orientation)
        w, h = self.size
        small = self._scaler.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA")
        return frame, cast(npt.NDArray[np.uint8], small.to_ndarray())


def demux(inp: av.container.InputContainer, video: av.video.stream.VideoStream,
          header: VideoHeader) -> Iterator[av.VideoFrame | Packet]:
    """Decoded video frames in order, and the audio packets where the demuxer meets them; bad data raises
    ``ModelRejected``."""
    packets = frames = 0
    last_pts: int | None = None
    streams = [video, *inp.streams.audio]
    try:
        for packet in inp.demux(streams):
            if packet.stream.index != video.index:
                yield packet
                continue
            if packet.size:
                packets += 1
            for frame in packet.decode():
                assert isinstance(frame, av.VideoFrame)
                check_frame(frame, header, frames, last_pts)
                last_pts = frame.pts
                frames += 1
                yield frame
    except av.FFmpegError as exc:
        raise ModelRejected(f"corrupt or undecodable video data after {frames} frames: {short_error(exc)}") from None
    if frames == 0:
        raise ModelRejected("the video stream has no decodable frames")
    if frames != packets or (header.frames and frames != header.frames):
        expected = max(packets, header.frames)
        raise ModelRejected(f"only {frames} of {expected} video frames could be decoded (corrupt or truncated data)")


def check_frame(frame: av.VideoFrame, header: VideoHeader, index: int, last_pts: int | None) -> None:
    if (frame.width, frame.height) != (header.width, header.height):
        raise ModelRejected(f"frame {index} is {frame.width}x{frame.height}, the header says "
                            f"{header.width}x{header.height}")
    if frame.pts is None:
        raise ModelRejected(f"video frame {index} has no timestamp")
    if last_pts is not None and frame.pts <= last_pts:
        raise ModelRejected(f"video timestamps do not increase at frame {index} ({frame.pts} after {last_pts})")
    if frame.is_corrupt:
        raise ModelRejected(f"video frame {index} is corrupt (the decoder concealed errors)")


def last_frames(path: Path, count: int, header: VideoHeader, settings: StereoSettings,
                working: Working) -> tuple[list[npt.NDArray[np.uint8]], int]:
    """The last ``count`` frames of the segment at ``path`` at the working size, and the frames decoded for them:
    decoding starts at the keyframe before them (a seek), or at the start when the container gives no duration."""
    decoded = 0
    with closing(open_source(path)) as inp:
        before = read_header(inp, settings.max_frame_pixels)
        if (before.width, before.height) != (header.width, header.height):
            raise ModelRejected(f"its frames are {before.width}x{before.height}, this segment's "
                                f"{header.width}x{header.height}")
        video = inp.streams.video[0]
        video.codec_context.thread_count = settings.encoder_threads
        tail: deque[npt.NDArray[np.uint8]] = deque(maxlen=count)
        tail_from = tail_start(video, count)
        if tail_from is not None:
            inp.seek(tail_from, stream=video, backward=True, any_frame=False)
        for frame in inp.decode(video):
            decoded += 1
            if tail_from is None or frame.pts is None or frame.pts >= tail_from:  # earlier ones: only decoded
                tail.append(working(frame, 0)[1])
    return list(tail), decoded


def tail_start(video: av.video.stream.VideoStream, count: int) -> int | None:
    """The timestamp (stream time base) ``count`` frames and a margin before the end, or None when unknown."""
    rate = video.average_rate or video.guessed_rate
    if not video.duration or not rate or video.time_base is None:
        return None
    start = (video.start_time or 0) + video.duration - int((count + 2) / (rate * video.time_base))
    return start if start > (video.start_time or 0) else None
