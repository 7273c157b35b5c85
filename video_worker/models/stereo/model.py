"""The stereo model: streams a 2D segment through decode → batched depth → DIBR → compose → encode, file to file
(the four overlapped in threads, ``pipeline``)."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from video_worker.errors import ModelRejected
from video_worker.segments import MODES, Mode, not_a_mode

from .compose import Composer, rgb_of
from .decoding import Packet, Working, demux, last_frames
from .depth import DepthEstimator, working_size
from .dibr import half_disparity
from .estimators import make_estimator
from .hdr import BT709
from .orient import read_orientation
from .pipeline import Pipeline, Stage
from .settings import StereoSettings, load_settings
from .sink import SegmentSink
from .source import VideoHeader, open_source, read_header, short_error
from .timing import CONTEXT, ConversionReport, PhaseClock
from .versions import fingerprint

log = logging.getLogger(__name__)


class StereoModel:
    """``infer(src, dst, mode)`` for the host's model interface; build once per process, then call per segment.

    A conversion runs in four threads (``STEREO_PIPELINE``, on by default): decode (with orientation, tone mapping
    and the working-size RGB), depth (batches through the estimator), render (DIBR + compose), encode (and the
    audio remux), with at most ``IN_FLIGHT`` batches between them; the output bytes are those of the serial loop.

    Safe to call from several threads: each thread converts with its own ``fork()`` of the estimator (fresh
    per-segment state, shared weights); an estimator without ``fork`` is used by one conversion at a time.

    Segments of one video join without a jump in depth: given the previous segment (``context``), the estimator
    first runs over its last ``context_frames`` frames, so its temporal state (motion cue, smoothing, a network's
    normalisation range) at this segment's first frame is what a conversion of the whole video would have had.
    """

    reports_progress = True
    """``infer`` takes ``progress``, a callable it calls whenever work advances (for stall detection)."""

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

    def infer(self, src: Path, dst: Path, mode: Mode, context: Path | None = None,
              progress: Callable[[], None] | None = None) -> None:
        """Convert the segment at ``src`` into a stereo segment at ``dst`` (mp4); ``context``: the previous one.

        ``progress`` (optional) is called, from the converter's threads, whenever work advances: each frame
        decoded, each depth batch estimated (the context's too), each frame encoded; it must be cheap and
        thread-safe (e.g. store ``time.monotonic()``)."""
        self.convert(src, dst, mode, context=context, progress=progress)

    def warm_up(self, work_dir: Path | None = None) -> None:
        """Run a tiny synthetic clip through the estimator, renderer and encoder (both modes) once."""
        import tempfile

        from .synthetic import write_clip

        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            clip = Path(tmp) / "warm.mp4"
            write_clip(clip, seconds=0.2, width=64, height=48, fps=10, audio=False, gop=10)
            for mode in MODES:
                self.convert(clip, Path(tmp) / f"warm-{mode}.mp4", mode)

    def convert(self, src: Path, dst: Path, mode: Mode, preview: Path | None = None,
                context: Path | None = None, progress: Callable[[], None] | None = None) -> ConversionReport:
        """Convert like ``infer`` and report frames and per-phase time; ``preview`` gets the middle frame as PNG."""
        if mode not in MODES:
            raise ModelRejected(not_a_mode(mode))
        fork = getattr(self.estimator, "fork", None)
        try:
            if fork is None:
                with self._lock:
                    return self._convert(src, dst, mode, preview, context, self.estimator, progress)
            estimator = getattr(self._local, "estimator", None)
            if estimator is None:
                estimator = self._local.estimator = fork()
            return self._convert(src, dst, mode, preview, context, estimator, progress)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise

    def _convert(self, src: Path, dst: Path, mode: Mode, preview: Path | None, context: Path | None,
                 estimator: DepthEstimator, progress: Callable[[], None] | None) -> ConversionReport:
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
                run = _Run(s, estimator, header, composer, sink, preview, progress or _nothing)
                run.context = context if s.context_frames else None
                source = partial(run.decode, inp, video)
                stages: list[Stage[_Batch]] = [Stage("depth", run.depth, start=run.prime), Stage("render", run.render),
                                               Stage("encode", run.encode, finish=run.finish)]
                pipeline = Pipeline(source, stages, in_flight=IN_FLIGHT, name="stereo", source_name="decode")
                clocks = pipeline.run(threaded=s.pipeline)
        return ConversionReport.build(run.count, clock, clocks, mode=mode, input_size=(header.width, header.height),
                                      output_size=composer.size, fingerprint=self.fingerprint,
                                      context_frames=run.primed, context_decoded=run.context_decoded,
                                      pipelined=s.pipeline)


IN_FLIGHT = 4
"""Batches in the pipeline at once, one per stage (each has one at hand while the slowest works): bounds memory."""


def _nothing() -> None:
    """The progress callback when none is given."""


@dataclass
class _Batch:
    """Consecutive frames on their way through the stages (``audio``: packets demuxed before the last of them,
    remuxed before they are encoded, as a serial loop does)."""

    frames: list[av.VideoFrame]
    small: npt.NDArray[np.uint8]
    audio: list[Packet]
    depths: npt.NDArray[np.float32] | None = None
    out: list[av.VideoFrame] = field(default_factory=list)


class _Run:
    """One conversion's stages: decode (a batch source), depth, render, encode; each touches only its own state,
    so they can run in threads of their own (``pipeline``)."""

    def __init__(self, settings: StereoSettings, estimator: DepthEstimator, header: VideoHeader, composer: Composer,
                 sink: SegmentSink, preview: Path | None, progress: Callable[[], None]) -> None:
        self.settings, self.estimator, self.header = settings, estimator, header
        self.composer, self.sink = composer, sink
        self.size = working_size(*header.display, settings.depth_width)
        self.preview, self.progress = preview, progress
        self.preview_index = header.frames // 2
        self.context: Path | None = None
        self.count = self.rendered = self.primed = self.context_decoded = 0
        self._spare: deque[av.VideoFrame] = deque()  # output frames the encoder is done with, for the renderer

    def decode(self, inp: av.container.InputContainer, video: av.video.stream.VideoStream,
               clock: PhaseClock) -> Iterator[_Batch]:
        """The segment's frames in batches of ``STEREO_BATCH``, with the audio packets demuxed on the way."""
        working = Working(self.header, self.size)
        w, h = self.size
        batch = _Batch([], np.empty((self.settings.batch, h, w, 3), np.uint8), [])
        decoded = 0
        for item in demux(inp, video, self.header):
            if isinstance(item, av.Packet):
                if self.sink.wants(item):
                    batch.audio.append(item)
                clock.lap("decode")
                continue
            frame, small = working(item, decoded)
            batch.small[len(batch.frames)] = small
            batch.frames.append(frame)
            decoded += 1
            clock.lap("decode")
            self.progress()
            if len(batch.frames) == len(batch.small):
                yield batch
                batch = _Batch([], np.empty_like(batch.small), [])
        if batch.frames or batch.audio:
            yield batch

    def prime(self, clock: PhaseClock) -> None:
        """Run the estimator over the last ``context_frames`` frames of the previous segment (outputs dropped).

        ``primed``: the frames used, 0 when the previous segment cannot be read or its frames differ in size (the
        segment is then converted as if it were the first; the seam may show a change in depth).
        """
        if self.context is None:
            return
        try:
            tail, self.context_decoded = last_frames(self.context, self.settings.context_frames, self.header,
                                                     self.settings, Working(self.header, self.size))
        except (ModelRejected, av.FFmpegError, OSError) as exc:
            log.warning("previous segment %s not used as context: %s", self.context.name, short_error(exc))
            return
        step = self.settings.batch
        for start in range(0, len(tail), step):
            self.estimator.estimate(np.stack(tail[start : start + step]))
            self.progress()
        clock.lap(CONTEXT)
        self.primed = len(tail)

    def depth(self, batch: _Batch, clock: PhaseClock) -> _Batch:
        n = len(batch.frames)
        if n:
            depths = self.estimator.estimate(batch.small[:n])
            if depths.shape != (n, self.size[1], self.size[0]):
                raise ValueError(f"depth estimator returned shape {depths.shape}, expected {(n, *self.size[::-1])}")
            batch.depths = np.clip(np.nan_to_num(depths.astype(np.float32, copy=False), nan=0.0), 0.0, 1.0)
            clock.lap("depth")
            self.progress()
        return batch

    def render(self, batch: _Batch, clock: PhaseClock) -> _Batch:
        s = self.settings
        for i, frame in enumerate(batch.frames):
            assert batch.depths is not None
            shift = half_disparity(batch.depths[i], self.header.display[0], s.divergence, s.convergence)
            out = self.composer.render(frame, shift, self._spare.popleft() if self._spare else None)
            if self.preview is not None and self.rendered == self.preview_index:
                cv2.imwrite(str(self.preview), cv2.cvtColor(rgb_of(out), cv2.COLOR_RGB2BGR))
            batch.out.append(out)
            self.rendered += 1
            clock.lap("render")
        batch.frames.clear()
        return batch

    def encode(self, batch: _Batch, clock: PhaseClock) -> _Batch:
        for packet in batch.audio:
            self.sink.copy(packet)
        clock.lap("encode")
        for out in batch.out:
            self.sink.encode(out)
            self.count += 1
            self._spare.append(out)
            clock.lap("encode")
            self.progress()
        return batch

    def finish(self, clock: PhaseClock) -> None:
        self.sink.encode(None)
        clock.lap("encode")


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
