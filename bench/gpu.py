"""The GPU benchmark: depth networks on CUDA through the converter's own onnxruntime code, a conversion, and the
worker end to end. ``bench/gpu.sh`` runs it on a fresh NVIDIA host (it installs what it needs); ``--dry-run`` runs
the same code paths on the CPU with tiny sizes in under a minute (``tests/test_bench_gpu.py``).

1. **the network alone**: FastDepth (``--network``, the shipped copy by default) at 320x192, the size the default
   ``hybrid`` estimator gives it, and a generated network of Depth-Anything-V2-Small's shape at 518x518
   (``bench/vit_depth_onnx.py``), each per batch size: frames/s over a few seconds of back-to-back runs (inputs
   bound on the GPU from host memory, outputs copied back: what ``OnnxDepth`` does) and the GPU's busy share.
2. **a conversion**: ``StereoModel`` (``STEREO_DEVICE=cuda``) converting one generated clip (sbs) with each
   network, after its warm-up: frames/s, the GPU's busy share (NVML), the CPU cores this process used.
3. **the worker end to end**: ``celery -A video_worker worker`` with ``MODEL=stereo`` and ``STEREO_DEVICE=cuda``
   on a few segments behind the emulator (``bench/stereo.py``'s ``worker_run``): segments/s, frames/s, the busy
   share between the first upload and the last completion, the worker's CPU cores.

Run for real, it prints its section and puts it in ``BENCHMARKS.md`` (``--no-write`` not to); ``--json`` keeps
the raw figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.gpu_meter import CpuCores, DeviceBusy
from bench.vit_depth_onnx import TINY, VIT_S, VitShape, build

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## GPU: depth networks, a conversion and the worker on CUDA"
FASTDEPTH_CONVENTIONS = {"STEREO_DEPTH_NORMALIZE": "unit", "STEREO_DEPTH_OUTPUT": "depth",
                         "STEREO_DEPTH_MULTIPLE": "32"}
"""FastDepth's as published (``hybrid.FASTDEPTH_CONVENTIONS``), for a network given by path."""


@dataclass(frozen=True)
class Plan:
    """The sizes of one run."""

    device: str
    vit: VitShape
    fastdepth_size: tuple[int, int]
    batches: tuple[int, ...]
    seconds_per_rate: float
    clip_size: tuple[int, int]
    clip_seconds: float
    segments: int
    segment_seconds: float
    fps: int = 25


REAL = Plan("cuda", VIT_S, (320, 192), (1, 2, 4, 8, 16, 32), 3.0, (640, 360), 10.0, 4, 2.0)
DRY = Plan("cpu", TINY, (64, 32), (1, 2), 0.2, (160, 96), 1.0, 2, 0.5, fps=10)


@dataclass
class NetworkRate:
    network: str
    input_size: tuple[int, int]
    batch: int
    fps: float
    busy: float | None


@dataclass
class Conversion:
    network: str
    frames: int
    seconds: float
    fps: float
    busy: float | None
    cores: float


@dataclass
class WorkerRun:
    segments: int
    frames: int
    wall: float
    fps: float
    busy: float | None
    cores: float
    verified: str
    fingerprint: str


@dataclass
class GpuReport:
    dry_run: bool
    device: str
    gpu: str | None = None
    onnxruntime: str = ""
    providers: list[str] = field(default_factory=list)
    networks: list[NetworkRate] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    worker: WorkerRun | None = None
    errors: list[str] = field(default_factory=list)


def network_rates(name: str, path: Path, size: tuple[int, int], plan: Plan) -> list[NetworkRate]:
    """Frames/s of ``path`` per batch size, run as ``OnnxDepth`` runs it (its providers, I/O binding)."""
    import onnxruntime as ort

    from video_worker.models.stereo.ort_device import DeviceOptions, preload_gpu_libraries
    from video_worker.models.stereo.ort_run import BatchRunner, binding_device

    opts = DeviceOptions(device=plan.device)
    if opts.on_gpu:
        preload_gpu_libraries(ort)
    session = ort.InferenceSession(str(path), providers=opts.providers(ort.get_available_providers(),
                                                                       ort.__version__))
    opts.check_started(session.get_providers())
    runner = BatchRunner(session, session.get_inputs()[0].name, session.get_outputs()[0].name, None, ort,
                         binding_device(opts))
    rates = []
    rng = np.random.default_rng(0)
    for batch in plan.batches:
        blob = rng.random((batch, 3, size[1], size[0]), dtype=np.float32)
        runner.run(blob)  # the first run of a shape picks its kernels
        with DeviceBusy() as device:
            runs, start = 0, time.perf_counter()
            while time.perf_counter() - start < plan.seconds_per_rate or runs < 3:
                runner.run(blob)
                runs += 1
            elapsed = time.perf_counter() - start
        rates.append(NetworkRate(name, size, batch, runs * batch / elapsed, device.busy))
    return rates


def conversion(name: str, env: dict[str, str], clip: Path, work: Path) -> Conversion:
    """One conversion of ``clip`` (sbs) by a ``StereoModel`` built from ``env``, after its warm-up."""
    from video_worker.models.stereo import StereoModel, load_settings

    model = StereoModel(load_settings(env))
    model.warm_up(work)
    with DeviceBusy() as device, CpuCores() as cpu:
        report = model.convert(clip, work / f"{name}.mp4", "sbs")
    return Conversion(name, report.frames, report.seconds, report.fps, device.busy, cpu.cores)


def worker(segments: list[Path], env: dict[str, str], frames: int, work: Path) -> WorkerRun:
    """The worker with ``MODEL=stereo`` and ``env`` on ``segments`` (``bench/stereo.py``'s ``worker_run``)."""
    from bench.stack import Overrides
    from bench.stereo import worker_run

    with DeviceBusy() as device:
        run = worker_run(work, "gpu-worker", segments, round_trip=0.0, overrides=Overrides(env=tuple(env.items())))
    busy = device.busy_between(run.started, run.started + run.wall)
    return WorkerRun(run.segments, frames, run.wall, frames / run.wall if run.wall else 0.0, busy,
                     (run.model_cpu + run.main_cpu) / run.wall if run.wall else 0.0, run.verified, run.fingerprint)


def _guard(report: GpuReport, what: str, step: Any, *args: Any) -> Any:
    """``step(*args)``, or None with the error kept as one line in the report (the other parts still run)."""
    try:
        return step(*args)
    except Exception as exc:
        line = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
        report.errors.append(f"{what}: {line}")
        print(f"{what} failed: {line}", file=sys.stderr, flush=True)
        return None


def run(plan: Plan, network: Path, work: Path, dry_run: bool) -> GpuReport:
    """Every part in order."""
    import onnxruntime as ort

    from video_worker.models.stereo.chunks import split_at_keyframes
    from video_worker.models.stereo.synthetic import write_clip

    report = GpuReport(dry_run, plan.device, onnxruntime=ort.__version__, providers=ort.get_available_providers())
    with DeviceBusy() as probe:
        report.gpu = probe.name
    vit = build(work / "vit-depth.onnx", plan.vit)
    networks = {"FastDepth": (network, plan.fastdepth_size), "ViT-S-shaped": (vit, (plan.vit.size, plan.vit.size))}
    for name, (path, size) in networks.items():
        print(f"[{time.strftime('%H:%M:%S')}] {name} alone", flush=True)
        report.networks += _guard(report, f"{name} alone", network_rates, name, path, size, plan) or []
    w, h = plan.clip_size
    clip = work / "clip.mp4"
    write_clip(clip, seconds=plan.clip_seconds, width=w, height=h, fps=plan.fps, audio=True,
               gop=round(plan.segment_seconds * plan.fps), seed=1)
    device = {"STEREO_DEVICE": plan.device}
    envs = {"FastDepth": {**device, "STEREO_DEPTH": "hybrid", "STEREO_DEPTH_MODEL": str(network),
                          **FASTDEPTH_CONVENTIONS},
            "ViT-S-shaped": {**device, "STEREO_DEPTH": "onnx", "STEREO_DEPTH_MODEL": str(vit)}}
    for name, env in envs.items():
        print(f"[{time.strftime('%H:%M:%S')}] {name}: a conversion", flush=True)
        done = _guard(report, f"{name} conversion", conversion, name, env, clip, work)
        if done is not None:
            report.conversions.append(done)
    print(f"[{time.strftime('%H:%M:%S')}] the worker end to end", flush=True)
    segments = split_at_keyframes(clip, work / "segments", plan.segment_seconds)[: plan.segments]
    frames = round(len(segments) * plan.segment_seconds * plan.fps)
    report.worker = _guard(report, "worker", worker, segments, envs["FastDepth"], frames, work)
    return report


def main(argv: list[str] | None = None) -> int:
    from bench.gpu_report import markdown
    from bench.sections import publish
    from video_worker.models.stereo.hybrid import FASTDEPTH

    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    beside = Path(__file__).resolve().parent / FASTDEPTH.name
    parser.add_argument("--network", type=Path, default=beside if beside.is_file() else FASTDEPTH,
                        help="a FastDepth-convention ONNX network (default: one copied next to this script, else "
                             "the package's)")
    parser.add_argument("--dry-run", action="store_true", help="the same code paths on the CPU, tiny sizes")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--write", type=Path, default=ROOT / "BENCHMARKS.md", help="the file to put the section in")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    parser.add_argument("--work", type=Path, help="a directory for the generated files (default: a temporary one)")
    args = parser.parse_args(argv)
    if not args.network.is_file():
        parser.error(f"--network {args.network}: no such file")
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = run(DRY if args.dry_run else REAL, args.network.resolve(), work, args.dry_run)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    publish(markdown(report), HEADING, None if args.dry_run or args.no_write else args.write)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
