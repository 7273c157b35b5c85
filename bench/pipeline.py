"""The pipelined converter: how busy it keeps a device, frames/s per core, peak memory, concurrent conversions.

    nice python -m bench.pipeline [--seconds 10] [--write BENCHMARKS.md]

The device is simulated (``models/stereo/simulated_device.py``: one lock per process, ``time.sleep`` per batch,
which releases the GIL as a CUDA call does). First the CPU's own cost per frame ``c`` is measured: the serial
converter with a device that costs nothing, on a generated 640x360 clip. Then, with the device at 1.25 c a frame,
its busy share (busy seconds / wall seconds) for the serial and the pipelined converter; frames/s and frames/s per
core (frames / process CPU seconds) with the default estimator at 640x360 and 1280x720 (sbs), pipelined; peak
memory (ru_maxrss of a process doing one 1280x720 conversion) serial and pipelined; and K conversions in threads
sharing one device at 0.5 c, 1.25 c and 3 c a frame.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.report import machine
from bench.sections import publish
from video_worker.models.stereo.model import StereoModel
from video_worker.models.stereo.settings import load_settings
from video_worker.models.stereo.simulated_device import Device, SimulatedDepth
from video_worker.models.stereo.synthetic import write_clip
from video_worker.models.stereo.timing import ConversionReport

HEADING = "## Stereo: the pipelined converter (device busy share, frames/s per core, concurrent conversions)"
DEVICE_RATIOS = (0.5, 1.25, 3.0)
"""Simulated device cost per frame, in units of the CPU's own cost per frame ``c``."""


@dataclass(frozen=True)
class Busy:
    """One run against the simulated device: frames, wall seconds, device busy seconds, process CPU seconds."""

    conversions: int
    frames: int
    seconds: float
    device_seconds: float
    cpu_seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def device_share(self) -> float:
        return self.device_seconds / self.seconds

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds


@dataclass(frozen=True)
class Speed:
    """A conversion with the default estimator: its report's figures and the peak memory of its process."""

    size: str
    pipelined: bool
    frames: int
    seconds: float
    cpu_seconds: float
    max_rss_mib: float
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def per_core(self) -> float:
        return self.frames / self.cpu_seconds


@dataclass
class Results:
    """Everything the section reports."""

    clip: str
    cpu_ms_per_frame: float
    stage_ms_per_frame: dict[str, float]
    busy: dict[str, Busy] = field(default_factory=dict)
    speeds: list[Speed] = field(default_factory=list)
    concurrent: dict[float, list[Busy]] = field(default_factory=dict)


def simulated(cost: float, pipelined: bool, device: Device) -> StereoModel:
    settings = load_settings({"STEREO_PIPELINE": "on" if pipelined else "off"})
    return StereoModel(settings, SimulatedDepth(cost, device))


def on_device(clip: Path, out: Path, cost: float, pipelined: bool, conversions: int = 1) -> Busy:
    """``conversions`` conversions of ``clip`` at once (threads), sharing one simulated device."""
    device = Device()
    model = simulated(cost, pipelined, device)
    model.convert(clip, out / "warm.mp4", "sbs")  # each thread forks its own twin; this one warms the libraries
    device.busy_seconds = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(conversions) as pool:
        reports = list(pool.map(lambda i: model.convert(clip, out / f"k{i}.mp4", "sbs"), range(conversions)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Busy(conversions, sum(r.frames for r in reports), wall, device.busy_seconds, cpu)


def cpu_cost(clip: Path, out: Path) -> tuple[float, dict[str, float]]:
    """The CPU's own seconds per frame (serial, a device that costs nothing) and each phase's share of it."""
    model = simulated(0.0, False, Device())
    model.convert(clip, out / "warm.mp4", "sbs")
    report = model.convert(clip, out / "c.mp4", "sbs")
    return report.seconds / report.frames, {k: v / report.frames for k, v in report.phases.items() if v}


def speed(size: str, seconds: float, pipelined: bool, root: Path) -> Speed:
    """A default-estimator sbs conversion in a process of its own (for its peak memory)."""
    cmd = [sys.executable, "-m", "bench.pipeline", "--child", json.dumps([size, seconds, pipelined, str(root)])]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return Speed(**json.loads(done.stdout.strip().splitlines()[-1]))


def child(size: str, seconds: float, pipelined: bool, root: Path) -> None:
    width, height = (int(v) for v in size.split("x"))
    clip = root / f"speed-{size}.mp4"
    if not clip.exists():
        write_clip(clip, seconds=seconds, width=width, height=height, fps=25, audio=True, gop=25, seed=3)
    model = StereoModel(load_settings({"STEREO_PIPELINE": "on" if pipelined else "off"}))
    report: ConversionReport = model.convert(clip, root / f"speed-{size}-{pipelined}.mp4", "sbs")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(asdict(Speed(size, pipelined, report.frames, report.seconds, report.cpu_seconds, rss,
                                  report.phases))))


def measure(root: Path, seconds: float, sizes: tuple[str, ...], speed_seconds: float,
            concurrent_seconds: float, ks: tuple[int, ...]) -> Results:
    """Every figure of the section (clips generated under ``root``)."""
    clip = root / "clip.mp4"
    write_clip(clip, seconds=seconds, width=640, height=360, fps=25, audio=True, gop=25, seed=0)
    c, stages = cpu_cost(clip, root)
    res = Results(f"{seconds:g} s 640x360 25 fps", c * 1e3, {k: v * 1e3 for k, v in stages.items()})
    for name, pipelined in (("serial", False), ("pipelined", True)):
        res.busy[name] = on_device(clip, root, 1.25 * c, pipelined)
    for size in sizes:
        for pipelined in (False, True):
            res.speeds.append(speed(size, speed_seconds, pipelined, root))
    short = root / "short.mp4"
    write_clip(short, seconds=concurrent_seconds, width=640, height=360, fps=25, audio=True, gop=25, seed=1)
    for ratio in DEVICE_RATIOS:
        res.concurrent[ratio] = [on_device(short, root, ratio * c, True, k) for k in ks]
    return res


def conversions_needed(cores: int, c: float, slowest: float, d: float) -> int:
    """Conversions a host with ``cores`` should run at once: a pipelined conversion goes at the pace of its slowest
    stage (``slowest`` seconds a frame) and keeps ``c / slowest`` cores busy, so filling the cores takes
    ``cores * slowest / c`` of them and feeding a device at ``d`` a frame ``slowest / d``; whichever binds first
    (the smaller), plus one for the start and end of each segment (its pipeline not full). Where ``d`` is not known
    (a worker starting), the cores' term alone is always enough: ``inference.default_infer_concurrency``."""
    return math.ceil(min(cores * slowest / c, slowest / d) if d > 0 else cores * slowest / c) + 1


def rule(res: Results, cores: int) -> str:
    """The rule for K, drawn from the figures, with its value at each device cost measured."""
    c = res.cpu_ms_per_frame
    slowest_name, s = max(((k, v) for k, v in res.stage_ms_per_frame.items() if k != "depth"), key=lambda kv: kv[1])
    ks = ", ".join(f"d = {ratio:g} c: K = {conversions_needed(cores, c, s, ratio * c)}" for ratio in res.concurrent)
    return (f"Rule: a pipelined conversion goes at the pace of its slowest CPU stage s ({slowest_name} here, "
            f"s = {s:.1f} ms a frame of c = {c:.1f} ms, so it keeps c / s = {c / s:.1f} cores busy). A host with P "
            "cores and a device at d a frame should run **K = ceil(min(P s / c, s / d)) + 1** conversions at once: "
            "enough to fill the cores or to feed the device, whichever binds first, plus one for the start and end "
            f"of each segment, when its pipeline is not full. Here P = {cores}: {ks}. More conversions than that "
            "do not lower the throughput (see K = 4) but each holds its own batches in memory. A worker does not "
            "know d when it starts: its default for a network on a GPU is the cores' term, ceil(P s / c) + 1, "
            "which is always enough.")


def report(res: Results, command: str) -> str:
    c = res.cpu_ms_per_frame
    serial, piped = res.busy["serial"], res.busy["pipelined"]
    lines = [
        f"Machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f} (a shared machine: other jobs ran "
        f"meanwhile). `{command}`. The device is simulated (`STEREO_DEPTH=video_worker.models.stereo."
        "simulated_device:factory`: one lock, `time.sleep` per batch, GIL released).",
        "",
        f"CPU's own cost per frame c = **{c:.1f} ms** (serial, {res.clip} clip, sbs, a device that costs nothing; "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in res.stage_ms_per_frame.items()) + ").",
        "",
        "| converter | device at 1.25 c a frame | frames/s | device busy share | CPU cores used |",
        "|---|---:|---:|---:|---:|",
        f"| serial (`STEREO_PIPELINE=off`) | {1.25 * c:.1f} ms | {serial.fps:.1f} | {serial.device_share:.0%} | "
        f"{serial.cores:.2f} |",
        f"| pipelined (default) | {1.25 * c:.1f} ms | {piped.fps:.1f} | **{piped.device_share:.0%}** | "
        f"{piped.cores:.2f} |",
        "",
        "Default estimator (`hybrid`), sbs full, one conversion, each in a process of its own (peak memory = its "
        "ru_maxrss; per core = frames / process CPU seconds):",
        "",
        "| size | converter | frames/s | CPU cores used | frames/s per core | peak memory |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in res.speeds:
        lines.append(f"| {s.size} | {'pipelined' if s.pipelined else 'serial'} | {s.fps:.1f} | "
                     f"{s.cpu_seconds / s.seconds:.2f} | {s.per_core:.1f} | {s.max_rss_mib:.0f} MiB |")
    ks = [b.conversions for b in next(iter(res.concurrent.values()))]
    lines += [
        "",
        "K conversions at once (threads of one process, pipelined) sharing one simulated device: aggregate "
        "frames/s / device busy share.",
        "",
        "| device per frame | " + " | ".join(f"K = {k}" for k in ks) + " | bound min(P / c, 1 / d) |",
        "|---|" + "---:|" * (len(ks) + 1),
    ]
    cores = os.cpu_count() or 1
    for ratio, runs in res.concurrent.items():
        d = ratio * c / 1e3
        bound = min(cores / (c / 1e3), 1 / d)
        lines.append(f"| {ratio:g} c = {ratio * c:.1f} ms | " + " | ".join(
            f"{b.fps:.0f} / {b.device_share:.0%}" for b in runs) + f" | {bound:.0f} frames/s |")
    lines += ["", rule(res, cores)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="the 640x360 clip for c and the busy share")
    parser.add_argument("--speed-seconds", type=float, default=4.0, help="the clips for frames/s and memory")
    parser.add_argument("--concurrent-seconds", type=float, default=4.0, help="the clip each of K conversions takes")
    parser.add_argument("--sizes", default="640x360,1280x720")
    parser.add_argument("--ks", default="1,2,3,4")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, help="replace this section of the given BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.child:
        size, seconds, pipelined, root = json.loads(args.child)
        child(size, seconds, pipelined, Path(root))
        return
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(Path(tmp), args.seconds, tuple(args.sizes.split(",")), args.speed_seconds,
                      args.concurrent_seconds, tuple(int(k) for k in args.ks.split(",")))
    publish(report(res, "nice python -m bench.pipeline --write BENCHMARKS.md"), HEADING, args.write)


if __name__ == "__main__":
    main()
