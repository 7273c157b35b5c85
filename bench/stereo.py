"""The stereo workloads (``--only stereo``): ``MODEL=stereo`` alone and in the worker, on real H.264 segments.

All segments are cut (``split_at_keyframes``, stream copy, as the upstream chunker does) from one generated
640x360 clip (``synthetic.write_clip``: 25 fps, a keyframe every 2 s, AAC tone), so every figure uses the
same picture content:

1. **pipeline efficiency**: the first ``pipeline_segments`` 2 s segments converted back to back by the model alone
   (``bench/stereo_alone.py``: one fresh process, after ``warm_up``; before and, with ``alone_passes=2``, after the
   worker's run, so load from other jobs hits both), then by the worker as users start it (``celery -A video_worker
   worker``, ``MODEL=stereo``, default settings but ``INFER_CONCURRENCY=1``, the model alone's) behind the proxy.
   Worker wall time = first upload → last completion row; nothing is excluded (the model process is warmed up
   before the worker is ready, as the model alone is), so the pipeline's fill (upload → first inference) and drain
   (last inference → row) count.
2. **frames/s per core**: fresh model-alone processes, one per case and round (round robin), each converting one
   2 s clip once; CPU time of the whole process; the phase split from ``ConversionReport.phases_cpu``.
3. **both cores**: the worker on the first ``grid_segments`` segments for each (``INFER_CONCURRENCY``,
   ``STEREO_ENCODER_THREADS``), a fresh stack each; model-process CPU from /proc.
4. **memory**: the worker's process tree while it processes one 2 s segment and the whole clip (``clip_seconds``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import logs, procs
from bench.procs import Child
from bench.stack import NO_OVERRIDES, Overrides, Stack, stack
from bench.stereo_alone import AloneRun, alone
from bench.workloads import Memory, Outcome, failure, measured_or_failed, one_segment_memory
from video_worker.keys import build_output_segment_key
from video_worker.models.stereo.timing import ConversionReport
from video_worker.segments import Mode

SEGMENT_SECONDS, FPS, SIZE = 2.0, 25, (640, 360)
MODE: Mode = "sbs"
_FINGERPRINT = re.compile(r"model stereo ready in process \d+ \(fingerprint (\w+)[;)]")


@dataclass(frozen=True)
class StereoPlan:
    clip_seconds: float = 60.0  # the generated clip: cut into 2 s segments; also memory's long segment
    pipeline_segments: int = 20
    alone_passes: int = 2  # model-alone runs around the worker's (1: before it only)
    speed_rounds: int = 3
    speed_sizes: tuple[tuple[int, int], ...] = ((640, 360), (1280, 720))
    speed_modes: tuple[Mode, ...] = ("sbs", "anaglyph")
    speed_pinned: tuple[tuple[int, int, Mode], ...] = ((640, 360, "sbs"),)  # also with OpenCV on 1 thread
    grid: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (2, 2))  # (INFER_CONCURRENCY, ENCODER_THREADS)
    grid_segments: int = 8


STEREO_QUICK = StereoPlan(clip_seconds=8.0, pipeline_segments=4, alone_passes=1, speed_rounds=1, speed_pinned=(),
                          grid_segments=4)


@dataclass
class Pipeline(Outcome):
    """The worker end to end on ``segments`` 2 s segments (CPU seconds are over the run's window)."""

    segments: int
    infer_concurrency: int = 1
    encoder_threads: int = 1
    alone: list[AloneRun] = field(default_factory=list)  # the model alone on the same segments (the yardstick)
    wall: float = 0.0  # first upload → last completion row
    started: float = 0.0  # time.time() of the first upload
    model_cpu: float = 0.0  # the model processes
    main_cpu: float = 0.0  # the worker's main process
    harness_cpu: float = 0.0  # the emulator, the proxy (this process) and the bridge: not on a worker host
    machine_cpu: float = 0.0  # every process on the machine (/proc/stat): other jobs' load shows here
    fill: float | None = None  # first upload → first inference started
    drain: float | None = None  # last inference finished → last completion row
    interval: float | None = None  # mean time between two inference ends (first → last ÷ (n - 1))
    fingerprint: str = ""
    identical: int | None = None  # outputs byte-identical to the model alone's (None: no digests to compare)
    verified: str = ""

    @property
    def efficiency(self) -> float | None:
        """Pipeline efficiency: the worker's segments/s ÷ the model alone's."""
        rate = self.alone_rate
        return self.rate / rate if rate and self.wall else None

    @property
    def alone_rate(self) -> float | None:
        """Segments/s of the model alone: the mean of its passes."""
        return statistics.fmean(a.rate for a in self.alone) if self.alone else None

    @property
    def rate(self) -> float:
        """Segments/s of the worker, first upload → last completion row."""
        return self.segments / self.wall if self.wall else 0.0

    @property
    def other(self) -> float:
        """Cores the rest of the machine used during the run (other jobs: the noise)."""
        return (self.machine_cpu - self.model_cpu - self.main_cpu - self.harness_cpu) / self.wall if self.wall else 0.0


@dataclass
class Speed(Outcome):
    """One case of the model alone: a 2 s clip at ``width``x``height`` in ``mode``, one fresh process per round."""

    width: int
    height: int
    mode: str
    pinned: bool = False  # OpenCV pinned to 1 thread (the prototype's benchmark); else its default, as deployed
    runs: list[ConversionReport] = field(default_factory=list)
    cv_threads: int = 0

    def best(self) -> ConversionReport | None:
        """The run of least CPU per frame (others' load only adds to it)."""
        return max(self.runs, key=lambda r: r.fps_per_core) if self.runs else None

    def median(self) -> ConversionReport | None:
        """The run of median frames per core (the lower middle one for an even count)."""
        ordered = sorted(self.runs, key=lambda r: r.fps_per_core)
        return ordered[(len(ordered) - 1) // 2] if ordered else None


@dataclass
class StereoMemory(Memory):
    video_seconds: float = 0.0


@dataclass
class StereoResults(Outcome):
    plan: StereoPlan
    pipeline: Pipeline | None = None
    speed: list[Speed] = field(default_factory=list)
    grid: list[Pipeline] = field(default_factory=list)
    memory: list[StereoMemory] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # run time of each part

    def errors(self) -> list[str]:
        parts: list[Outcome] = [self, *([self.pipeline] if self.pipeline else []), *self.speed, *self.grid,
                                *self.memory]
        return [p.error for p in parts if p.error]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def worker_run(root: Path, name: str, segments: list[Path], *, round_trip: float, infer_concurrency: int = 1,
               encoder_threads: int = 1, expected: list[str] | None = None,
               overrides: Overrides = NO_OVERRIDES) -> Pipeline:
    """The worker and the bridge on a fresh stack, with these two settings (the others at their defaults): all
    ``segments`` uploaded at once; ``expected``: the model alone's output digests, to compare the outputs with.

    A fresh stack each time, not a new worker on the same one: a stopped worker's long poll still open at the
    emulator takes the next message, which then stays invisible for the visibility timeout (120 s).
    """
    result = Pipeline(len(segments), infer_concurrency, encoder_threads)
    env = {"MODEL": "stereo", "INFER_CONCURRENCY": str(infer_concurrency)}  # set: the default is one per core
    if encoder_threads != 1:
        env["STEREO_ENCODER_THREADS"] = str(encoder_threads)
    with stack(root, name, round_trip, overrides) as st:
        worker, bridge = st.worker(1, env), st.bridge(env)  # started together: nothing is uploaded before both
        worker.wait_for_log("ready.", 180)
        bridge.wait_for_log("bridge polling", 60)
        _measure(result, st, [worker, bridge], name, segments)
        _verify(result, st, name, expected)
    return result


def _measure(result: Pipeline, st: Stack, children: list[Child], job: str, segments: list[Path]) -> None:
    worker = children[0]
    time.sleep(0.5)
    cpu0, machine0, mark = st.cpu_by_role(children), procs.machine_busy(), time.time()
    st.upload_files(job, segments, MODE)
    rows = st.wait_completions(len(segments), mark, timeout=60.0 + 15.0 * len(segments))
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in st.cpu_by_role(children).items()}
    result.machine_cpu = procs.machine_busy() - machine0
    # the worker's children are its model processes (a threads pool has no pool processes)
    result.model_cpu, result.main_cpu = cpu.get("worker pool", 0.0), cpu.get("worker main", 0.0)
    result.harness_cpu = cpu["emulator"] + cpu["proxy + benchmark"] + cpu.get("bridge", 0.0)
    last = max(r.end for r in rows)
    result.wall, result.started = last - mark, mark
    deadline = time.monotonic() + 10  # an infer task logs its success after the chain's last stage
    while len(_infers(worker.log(), worker.name)) < len(segments) and time.monotonic() < deadline:
        time.sleep(0.05)
    _infer_times(result, _infers(worker.log(), worker.name), mark, last)
    found = _FINGERPRINT.search(worker.log())
    result.fingerprint = found[1] if found else "?"


def _infers(log: str, host: str) -> list[logs.TaskRun]:
    """The infer runs of a worker's log that finished (the chain's end is known)."""
    return [c[logs.STAGES[1]] for c in logs.chains(logs.parse(log, host)).values() if logs.STAGES[1] in c]


def _infer_times(result: Pipeline, infers: list[logs.TaskRun], mark: float, last: float) -> None:
    starts = [r.start for r in infers if r.start is not None]
    ends = sorted(r.end for r in infers if r.end is not None)
    result.fill = min(starts) - mark if starts else None
    result.drain = last - ends[-1] if ends else None
    result.interval = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else None


def _verify(result: Pipeline, st: Stack, job: str, expected: list[str] | None) -> None:
    outputs = st.outputs(job)
    result.verified = f"{len(outputs)}/{result.segments} outputs"
    if expected is not None and outputs:
        digests = [_digest(st.output(build_output_segment_key(job, i))) for i in range(result.segments)]
        result.identical = sum(a == b for a, b in zip(digests, expected, strict=False))


def pipeline(root: Path, segments: list[Path], passes: int, round_trip: float, overrides: Overrides) -> Pipeline:
    """Figure 1: the model alone on ``segments``, the worker on them, and (``passes`` = 2) the model alone again."""
    env = dict(overrides.env)
    first = alone(segments, MODE, root, "stereo-alone-1", env)
    result = worker_run(root, "stereo-pipeline", segments, round_trip=round_trip, expected=first.digests,
                        overrides=overrides)
    result.alone = [first] + [alone(segments, MODE, root, f"stereo-alone-{i}", env) for i in range(2, passes + 1)]
    return result


def grid(root: Path, plan: StereoPlan, segments: list[Path], round_trip: float, overrides: Overrides,
         expected: list[str] | None, log: Callable[[str], None]) -> list[Pipeline]:
    """Figure 3: per (``INFER_CONCURRENCY``, ``STEREO_ENCODER_THREADS``), the worker on the same ``segments``."""
    out = []
    for ic, threads in plan.grid:
        log(f"stereo: INFER_CONCURRENCY={ic}, STEREO_ENCODER_THREADS={threads}")
        out.append(measured_or_failed(functools.partial(
            worker_run, root, f"stereo-grid-{ic}-{threads}", segments, round_trip=round_trip, infer_concurrency=ic,
            encoder_threads=threads, expected=expected, overrides=overrides), Pipeline(len(segments), ic, threads)))
    return out


def speed(root: Path, plan: StereoPlan, clips: dict[tuple[int, int], Path], overrides: Overrides) -> list[Speed]:
    """Figure 2: per case and round, a fresh model-alone process converts the case's 2 s clip once (round robin)."""
    cases = [Speed(w, h, mode) for w, h in plan.speed_sizes for mode in plan.speed_modes]
    cases += [Speed(w, h, mode, pinned=True) for w, h, mode in plan.speed_pinned]
    for r in range(plan.speed_rounds):
        for case in (c for c in cases if not c.error):
            name = f"stereo-speed-{case.width}x{case.height}-{case.mode}{'-pinned' if case.pinned else ''}-{r + 1}"
            try:
                run = alone([clips[(case.width, case.height)]], case.mode, root, name, dict(overrides.env),
                            1 if case.pinned else None)
            except Exception as exc:
                case.error = failure(exc)
                continue
            case.runs += run.reports
            case.cv_threads = run.cv_threads
    return cases


def stereo_memory(root: Path, path: Path, seconds: float, overrides: Overrides) -> StereoMemory:
    """Figure 4: the worker's process tree (fresh stack) while it processes the one segment at ``path``."""
    import av

    result = StereoMemory(path.stat().st_size, video_seconds=seconds)
    with stack(root, f"stereo-memory-{seconds:g}s", 0.0, overrides) as st:
        one_segment_memory(st, result, {"MODEL": "stereo"}, lambda: st.upload_files("memory", [path], MODE),
                           timeout=120.0 + 10.0 * seconds)
        made = st.dir / "output.mp4"
        made.write_bytes(st.output(build_output_segment_key("memory", 0)))
        with av.open(str(path)) as src, av.open(str(made)) as dst:
            made_video, frames = dst.streams.video[0], src.streams.video[0].frames
            result.verified = f"output {made_video.frames}/{frames} frames, {made_video.width}x{made_video.height}"
    return result


def media(plan: StereoPlan, work: Path) -> tuple[Path, list[Path], dict[tuple[int, int], Path]]:
    """The long clip, the 2 s segments cut from it, and one 2 s clip per size of figure 2."""
    from video_worker.models.stereo.chunks import split_at_keyframes
    from video_worker.models.stereo.synthetic import write_clip

    def clip(path: Path, seconds: float, size: tuple[int, int]) -> Path:
        write_clip(path, seconds=seconds, width=size[0], height=size[1], fps=FPS, audio=True,
                   gop=round(SEGMENT_SECONDS * FPS), seed=1)
        return path

    long = clip(work / "clip.mp4", plan.clip_seconds, SIZE)
    segments = split_at_keyframes(long, work / "segments", SEGMENT_SECONDS)
    if len(segments) < max(plan.pipeline_segments, plan.grid_segments):
        raise RuntimeError(f"only {len(segments)} segments cut from the {plan.clip_seconds:g} s clip")
    return long, segments, {size: clip(work / f"speed-{size[0]}x{size[1]}.mp4", SEGMENT_SECONDS, size)
                            for size in plan.speed_sizes}


def run_stereo(plan: StereoPlan, root: Path, round_trip: float, overrides: Overrides = NO_OVERRIDES,
               log: Callable[[str], None] = print) -> StereoResults:
    """Every stereo figure, in order; a part that fails is reported with its error, the others still run."""
    res = StereoResults(plan)
    work = root / "stereo"
    work.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def part(name: str, what: str) -> Iterator[None]:
        log(f"stereo: {what}")
        t0 = time.monotonic()
        yield
        res.seconds[name] = time.monotonic() - t0

    with part("media", f"a {plan.clip_seconds:g} s {SIZE[0]}x{SIZE[1]} clip cut into 2 s segments, speed clips"):
        try:
            clip, segments, clips = media(plan, work)
        except Exception as exc:
            res.error = failure(exc)
            return res
    n, k = plan.pipeline_segments, plan.grid_segments
    with part("pipeline", f"model alone vs the worker on {n} segments"):
        res.pipeline = measured_or_failed(functools.partial(pipeline, work, segments[:n], plan.alone_passes, round_trip,
                                                  overrides), Pipeline(n))
    cases = len(plan.speed_sizes) * len(plan.speed_modes) + len(plan.speed_pinned)
    with part("speed", f"frames/s per core, {cases} cases x "
                       f"{plan.speed_rounds} round(s)"):
        res.speed = speed(work, plan, clips, overrides)
    expected = res.pipeline.alone[0].digests if res.pipeline.alone else None
    with part("grid", f"INFER_CONCURRENCY x STEREO_ENCODER_THREADS on {k} segments"):
        res.grid = grid(work, plan, segments[:k], round_trip, overrides, expected, log)
    with part("memory", f"memory: one {SEGMENT_SECONDS:g} s and one {plan.clip_seconds:g} s segment"):
        res.memory = [measured_or_failed(functools.partial(stereo_memory, work, path, seconds, overrides),
                               StereoMemory(path.stat().st_size, video_seconds=seconds))
                      for path, seconds in ((segments[0], SEGMENT_SECONDS), (clip, plan.clip_seconds))]
    return res
