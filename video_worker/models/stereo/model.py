"""The stereo model: streams a 2D segment through decode → batched depth → DIBR → compose → encode, file to file."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import cast

import av
import av.video.reformatter
import cv2
import numpy as np
import numpy.typing as npt

from video_worker.errors import ModelRejected
from video_worker.segments import MODES, Mode, not_a_mode

from .compose import Composer, rgb_of
from .depth import DepthEstimator, working_size
from .dibr import half_disparity
from .estimators import make_estimator
from .hdr import BT709, ToneMapper
from .orient import orientation_of, read_orientation, upright
from .planes import as_yuv420
from .settings import StereoSettings, load_settings
from .sink import SegmentSink
from .source import VideoHeader, open_source, read_header, short_error
from .timing import CONTEXT, ConversionReport, PhaseClock
from .versions import fingerprint

log = logging.getLogger(__name__)


class StereoModel:
    """``infer(src, dst, mode)`` for the host's model interface; build once per process, then call per segment.

    Safe to call from several threads: each thread converts with its own ``fork()`` of the estimator (fresh
    per-segment state, shared weights); an estimator without ``fork`` is used by one conversion at a time.

    Segments of one video join without a jump in depth: given the previous segment (``context``), the estimator
    first runs over its last ``context_frames`` frames, so its temporal state (motion cue, smoothing, a network's
    normalisation range) at this segment's first frame is what a conversion of the whole video would have had.
    """

    def __init__(self, settings: StereoSettings | None = None, estimator: DepthEstimator | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.estimator = estimator if estimator is not None else make_estimator(self.settings)
        self.fingerprint = fingerprint(self.settings, self.estimator.version)
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def context_frames(self) -> int:
        """Frames of the previous segment this model reads before a segment (``STEREO_CONTEXT_FRAMES``)."""
        return self.settings.context_frames

    def infer(self, src: Path, dst: Path, mode: Mode, context: Path | None = None) -> None:
        """Convert the segment at ``src`` into a stereo segment at ``dst`` (mp4); ``context``: the previous one."""
        self.convert(src, dst, mode, context=context)

    def warm_up(self, work_dir: Path | None = None) -> None:
        """Run a tiny synthetic clip through the estimator, renderer and encoder (both modes) once."""
        import tempfile

        from .synthetic import write_clip

        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            clip = Path(tmp) / "warm.mp4"
            write_clip(clip, seconds=0.2, width=64, height=48, fps=10, audio=False, gop=10)
            for mode in MODES:
                self.convert(clip, Path(tmp) / f"warm-{mode}.mp4", mode)

    def convert(self, src: Path, dst: Path, mode: Mode,
                preview: Path | None = None, context: Path | None = None) -> ConversionReport:
        """Convert like ``infer`` and report frames and per-phase time; ``preview`` gets the middle frame as PNG."""
        if mode not in MODES:
            raise ModelRejected(not_a_mode(mode))
        fork = getattr(self.estimator, "fork", None)
        try:
            if fork is None:
                with self._lock:
                    return self._convert(src, dst, mode, preview, context, self.estimator)
            estimator = getattr(self._local, "estimator", None)
            if estimator is None:
                estimator = self._local.estimator = fork()
            return self._convert(src, dst, mode, preview, context, estimator)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise

    def _convert(self, src: Path, dst: Path, mode: Mode, preview: Path | None, context: Path | None,
                 estimator: DepthEstimator) -> ConversionReport:
        clock = PhaseClock()
        s = self.settings
        with closing(open_source(src)) as inp:
            header = read_header(inp, s.max_frame_pixels, read_orientation(src))
            video = inp.streams.video[0]
            video.codec_context.thread_count = s.encoder_threads
            ctx = video.codec_context
            composer = Composer(mode, s.sbs, *header.display, BT709 if header.hdr else int(ctx.colorspace),
                                full_range=not header.hdr and (int(ctx.color_range) == 2 or ctx.pix_fmt == "yuvj420p"))
            comment = f"stereo {self.fingerprint} {mode}{'-half' if mode == 'sbs' and s.sbs == 'half' else ''}"
            with SegmentSink(dst, header, video, list(inp.streams.audio), composer.size, s, comment) as sink:
                estimator.reset()
                run = _Run(s, estimator, header, composer, sink, clock, preview)
                clock.start()
                primed = run.prime(context) if context is not None and s.context_frames else 0
                for frame in _frames(inp, video, header, sink, clock):
                    run.add(frame)
                run.flush()
                sink.encode(None)
                clock.lap("encode")
        return ConversionReport.build(run.count, clock, mode=mode, input_size=(header.width, header.height),
                                      output_size=composer.size, fingerprint=self.fingerprint,
                                      context_frames=primed, context_decoded=run.context_decoded)


class _Run:
    """The state of one conversion: the pending batch (decoded frames + their working-resolution RGB)."""

    def __init__(self, settings: StereoSettings, estimator: DepthEstimator, header: VideoHeader, composer: Composer,
                 sink: SegmentSink, clock: PhaseClock, preview: Path | None) -> None:
        s = self.settings = settings
        self.estimator, self.header, self.composer, self.sink, self.clock = estimator, header, composer, sink, clock
        self.size = working_size(*header.display, s.depth_width)
        self.small = np.empty((s.batch, self.size[1], self.size[0], 3), np.uint8)
        self.frames: list[av.VideoFrame] = []
        self.count = 0
        self.context_decoded = 0
        self.preview = preview
        self.preview_index = header.frames // 2
        self._scaler = av.video.reformatter.VideoReformatter()
        self._sdr = ToneMapper(header.hdr) if header.hdr else as_yuv420

    def working_rgb(self, frame: av.VideoFrame) -> tuple[av.VideoFrame, npt.NDArray[np.uint8]]:
        """The frame as the renderer takes it (upright, SDR, 4:2:0) and as the estimator takes it (RGB at the
        working size)."""
        if orientation_of(frame) != self.header.orientation:
            raise ModelRejected(f"the display rotation changes at frame {self.count + len(self.frames)}")
        frame = upright(self._sdr(frame), self.header.orientation)
        w, h = self.size
        small = self._scaler.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA")
        return frame, cast(npt.NDArray[np.uint8], small.to_ndarray())

    def prime(self, context: Path) -> int:
        """Run the estimator over the last ``context_frames`` frames of the previous segment (outputs dropped).

        Returns the frames used: 0 when the previous segment cannot be read or its frames differ in size (the
        segment is then converted as if it were the first; the seam may show a change in depth).
        """
        want = self.settings.context_frames
        try:
            tail = _last_frames(context, want, self)
        except (ModelRejected, av.FFmpegError, OSError) as exc:
            log.warning("previous segment %s not used as context: %s", context.name, short_error(exc))
            return 0
        if not tail:
            return 0
        batch = len(self.small)
        for start in range(0, len(tail), batch):
            self.estimator.estimate(np.stack(tail[start : start + batch]))
        self.clock.lap(CONTEXT)
        return len(tail)

    def add(self, frame: av.VideoFrame) -> None:
        frame, small = self.working_rgb(frame)
        self.small[len(self.frames)] = small
        self.frames.append(frame)
        self.clock.lap("decode")
        if len(self.frames) == len(self.small):
            self.flush()

    def flush(self) -> None:
        n = len(self.frames)
        if n == 0:
            return
        depths = self.estimator.estimate(self.small[:n])
        if depths.shape != (n, self.size[1], self.size[0]):
            raise ValueError(f"depth estimator returned shape {depths.shape}, expected {(n, *self.size[::-1])}")
        depths = np.clip(np.nan_to_num(depths.astype(np.float32, copy=False), nan=0.0), 0.0, 1.0)
        self.clock.lap("depth")
        s = self.settings
        for i, frame in enumerate(self.frames):
            shift = half_disparity(depths[i], self.header.display[0], s.divergence, s.convergence)
            out = self.composer.render(frame, shift)
            if self.preview is not None and self.count == self.preview_index:
                cv2.imwrite(str(self.preview), cv2.cvtColor(rgb_of(out), cv2.COLOR_RGB2BGR))
            self.clock.lap("render")
            self.sink.encode(out)
            self.count += 1
            self.clock.lap("encode")
        self.frames.clear()


def _last_frames(path: Path, count: int, run: _Run) -> list[npt.NDArray[np.uint8]]:
    """The last ``count`` frames of the segment at ``path`` at the working size: decoding starts at the keyframe
    before them (a seek), or at the start when the container gives no duration."""
    with closing(open_source(path)) as inp:
        header = read_header(inp, run.settings.max_frame_pixels)
        if (header.width, header.height) != (run.header.width, run.header.height):
            raise ModelRejected(f"its frames are {header.width}x{header.height}, this segment's "
                                f"{run.header.width}x{run.header.height}")
        video = inp.streams.video[0]
        video.codec_context.thread_count = run.settings.encoder_threads
        tail: deque[npt.NDArray[np.uint8]] = deque(maxlen=count)
        tail_from = _tail_start(video, count)
        if tail_from is not None:
            inp.seek(tail_from, stream=video, backward=True, any_frame=False)
        for frame in inp.decode(video):
            run.context_decoded += 1
            if tail_from is None or frame.pts is None or frame.pts >= tail_from:  # earlier ones: only decoded
                tail.append(run.working_rgb(frame)[1])
    return list(tail)


def _tail_start(video: av.video.stream.VideoStream, count: int) -> int | None:
    """The timestamp (stream time base) ``count`` frames and a margin before the end, or None when unknown."""
    rate = video.average_rate or video.guessed_rate
    if not video.duration or not rate or video.time_base is None:
        return None
    start = (video.start_time or 0) + video.duration - int((count + 2) / (rate * video.time_base))
    return start if start > (video.start_time or 0) else None


def _frames(inp: av.container.InputContainer, video: av.video.stream.VideoStream, header: VideoHeader,
            sink: SegmentSink, clock: PhaseClock) -> Iterator[av.VideoFrame]:
    """Decoded video frames in order (audio packets are remuxed on the way); bad data raises ``ModelRejected``."""
    packets = frames = 0
    last_pts: int | None = None
    streams = [video, *inp.streams.audio]
    try:
        for packet in inp.demux(streams):
            if packet.stream.index != video.index:
                if sink.wants(packet):
                    clock.lap("decode")
                    sink.copy(packet)
                    clock.lap("encode")
                continue
            if packet.size:
                packets += 1
            for frame in packet.decode():
                assert isinstance(frame, av.VideoFrame)
                _check(frame, header, frames, last_pts)
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


def _check(frame: av.VideoFrame, header: VideoHeader, index: int, last_pts: int | None) -> None:
    if (frame.width, frame.height) != (header.width, header.height):
        raise ModelRejected(f"frame {index} is {frame.width}x{frame.height}, the header says "
                            f"{header.width}x{header.height}")
    if frame.pts is None:
        raise ModelRejected(f"video frame {index} has no timestamp")
    if last_pts is not None and frame.pts <= last_pts:
        raise ModelRejected(f"video timestamps do not increase at frame {index} ({frame.pts} after {last_pts})")
    if frame.is_corrupt:
        raise ModelRejected(f"video frame {index} is corrupt (the decoder concealed errors)")


def from_settings(settings: object = None) -> StereoModel:
    """``MODEL=stereo``: the model with its own settings (``STEREO_*``, ``MAX_FRAME_PIXELS``) from the environment.

    Given the worker's settings, OpenCV gets the cores divided among the ``INFER_CONCURRENCY`` model processes,
    so that two of them on two cores do not each start two threads (OpenCV's threads change no output byte).
    """
    concurrency = getattr(settings, "infer_concurrency", None)
    if isinstance(concurrency, int):
        cv2.setNumThreads(opencv_threads(concurrency))
    return StereoModel(load_settings())


def opencv_threads(processes: int, cores: int | None = None) -> int:
    """OpenCV threads for each of ``processes`` model processes sharing ``cores`` (this machine's by default)."""
    return max(1, (cores if cores is not None else (os.cpu_count() or 1)) // max(1, processes))
