"""The output segment: libx264 with fixed settings in mp4, the input's time base and pts, audio copied by remux."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av

from video_worker.errors import ModelRejected

from .hdr import BT709, MPEG_RANGE
from .orient import SWAPS
from .settings import StereoSettings
from .source import VideoHeader

KEYINT = 250
"""Fixed maximum keyframe interval; x264 places its first keyframe at the first frame of every segment."""


class SegmentSink:
    """Encodes stereo frames and remuxes audio packets into ``dst`` (mp4); use as a context manager."""

    def __init__(
        self,
        dst: Path,
        header: VideoHeader,
        source: av.video.stream.VideoStream,
        audio: list[av.audio.stream.AudioStream],
        size: tuple[int, int],
        settings: StereoSettings,
        comment: str,
    ) -> None:
        tb = header.time_base
        options = {"fflags": "+bitexact"}  # no library version strings in the file
        if tb.numerator == 1:
            options["video_track_timescale"] = str(tb.denominator)  # keep the input's time base exactly
            if (source.start_time or 0) * tb * 1000 % 1:
                # the start offset goes into the edit list in the movie timescale (ms by default): an MPEG-TS
                # start of 1920/90000 s would come back as 21 ms, every pts 30 ticks early
                options["movie_timescale"] = str(tb.denominator)
        self._out = av.open(str(dst), mode="w", format="mp4", container_options=options)
        self._out.metadata["comment"] = comment
        try:
            self._video = self._add_video(source, header, size, settings)
            self._audio: dict[int, av.stream.Stream] = {}
            for stream in audio:
                self._audio[stream.index] = copied = self._out.add_stream_from_template(stream)
                _name_channels(copied)
            self._out.start_encoding()  # open the encoder and write the header now: setup problems surface here
        except (av.FFmpegError, ValueError) as exc:
            self._out.close()
            raise ModelRejected(f"cannot write this input's streams to mp4: {_one_line(exc)}") from None
        self._time_base = tb

    def _add_video(
        self, source: av.video.stream.VideoStream, header: VideoHeader, size: tuple[int, int], s: StereoSettings
    ) -> av.video.stream.VideoStream:
        rate = header.frame_rate or Fraction(25)
        video = self._out.add_stream("libx264", rate=rate)
        ctx = video.codec_context
        ctx.width, ctx.height = size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = header.time_base
        video.time_base = header.time_base
        ctx.framerate = rate
        ctx.thread_count = s.encoder_threads
        ctx.thread_type = "FRAME"  # never sliced threads: frame threading with a fixed count is deterministic
        src = source.codec_context
        if header.hdr:  # tone-mapped to SDR (hdr.py)
            ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc = MPEG_RANGE, BT709, BT709, BT709
        else:
            ctx.color_range = src.color_range
            ctx.colorspace = src.colorspace
            ctx.color_primaries = src.color_primaries
            ctx.color_trc = src.color_trc
        if src.sample_aspect_ratio:
            sar = Fraction(src.sample_aspect_ratio)  # of the coded picture: inverted when it is turned by 90°
            ctx.sample_aspect_ratio = 1 / sar if header.orientation in SWAPS else sar
        ctx.options = {
            "preset": s.preset, "crf": str(s.crf), "profile": "high", "g": str(KEYINT), "flags": "+bitexact",
        }
        return video

    def encode(self, frame: av.VideoFrame | None) -> None:
        """Encode one frame (its pts in the input's time base), or flush the encoder with None."""
        if frame is not None:
            frame.time_base = self._time_base
        self._out.mux(self._video.encode(frame))

    def copy(self, packet: av.Packet[av.stream.Stream]) -> None:
        """Remux one audio packet unchanged (no decode, no re-encode)."""
        if packet.size == 0:
            return  # the demuxer's end-of-stream packet (PyAV's examples test its size: a real one may have no DTS)
        packet.stream = self._audio[packet.stream.index]
        self._out.mux(packet)

    def wants(self, packet: av.Packet[av.stream.Stream]) -> bool:
        """True when ``packet`` belongs to an audio stream that is copied."""
        return packet.stream.index in self._audio

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> SegmentSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo"}


def _name_channels(stream: av.stream.Stream) -> None:
    """Give a copied mono or stereo track whose channels are unnamed (PCM from Matroska) the usual layout: mp4
    cannot describe unnamed channels (its ``chnl`` box for PCM), and fails only when the file is closed."""
    ctx = stream.codec_context
    if not isinstance(ctx, av.AudioCodecContext):
        return
    layout = ctx.layout
    if layout.nb_channels in _DEFAULT_LAYOUTS and all(c.name == "NONE" for c in layout.channels):
        ctx.layout = _DEFAULT_LAYOUTS[layout.nb_channels]


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
