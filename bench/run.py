"""The benchmark's command line: the plan of a run (workloads and their sizes), ``--env``/``--worker-args``
overrides, and ``run_all``/``main``, which run every workload and write the report: ``python -m bench.run``."""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import render, summary_table, write_report
from bench.stack import KIB, MIB, NO_OVERRIDES, REPO, Overrides, mib
from bench.stereo import STEREO_QUICK, StereoPlan, StereoResults, run_stereo
from bench.workloads import SHARED_LOOPS, Latency, Memory, Throughput, latency, measured_or_failed, memory, throughput
from video_worker.settings import Settings

__all__ = ["QUICK", "Overrides", "Plan", "Results", "main", "run_all"]

#: How a run measures (``--help``).
HOW = """Measure the video worker against the reference loop, in one run: ``python -m bench.run [--quick]``.

Each workload runs on a fresh moto server (its own process) behind
``bench/awsproxy`` (one round trip of latency per request, every request
logged), with resources made by ``video_worker.ops.provision.provision``. The
project is started as users start it, with default settings: ``celery -A
video_worker worker -l INFO`` (one process per simulated host, each with its
own scratch directory and so its own simulated accelerator) and
``video-worker bridge``; their environment holds only the seed variables,
``AWS_ENDPOINT_URL`` (the proxy), ``MODEL``/``SIMULATED_INFER_SECONDS``, the
scratch directory and fake credentials whose access key id names the process
in the proxy's log. The reference (``bench/reference.py``) gets the same.

The benchmark's own calls (uploading segments, checking outputs) go straight
to the emulator: they are neither delayed nor counted. A segment is complete
when the proxy has passed a successful DynamoDB ``PutItem`` for it.

The stereo family (``--only stereo``, ``bench/stereo.py``) runs ``MODEL=stereo`` on real H.264 segments:
the model alone (``bench/stereo_alone.py``) against the worker end to end, frames/s per core, the best use
of the cores (``INFER_CONCURRENCY`` x ``STEREO_ENCODER_THREADS``) and memory with a long segment.

Writes ``BENCHMARKS.md`` (the part between its ``bench:begin``/``bench:end``
markers; the rest of an existing file is kept) and prints the table last.
"""


@dataclass(frozen=True)
class Plan:
    round_trip: float = 0.020
    accel_segments: int = 40
    accel_size: int = 4 * MIB
    accel_infer: float = 0.25
    scaling_hosts: tuple[int, ...] = (1, 2, 4)
    scaling_per_host: int = 10
    scaling_size: int = 256 * KIB
    scaling_infer: float = 1.0
    scaling_reference: bool = True
    overhead_segments: int = 200
    overhead_size: int = 64 * KIB
    latency_samples: int = 30
    latency_size: int = 1 * MIB
    latency_monitoring_off: bool = True
    memory_sizes: tuple[int, ...] = (512 * MIB, 64 * MIB)
    stereo: StereoPlan = field(default_factory=StereoPlan)


QUICK = Plan(accel_segments=10, scaling_per_host=3, scaling_reference=False, overhead_segments=40,
             latency_samples=8, latency_monitoring_off=False, memory_sizes=(128 * MIB, 16 * MIB),
             stereo=STEREO_QUICK)


def has_monitoring_setting() -> bool:
    return "monitoring" in Settings.model_fields


@dataclass
class Results:
    plan: Plan
    quick: bool
    overrides: Overrides = NO_OVERRIDES
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
    stereo: StereoResults | None = None
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    load: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)

    def find(self, label: str, system: str, hosts: int = 1) -> Throughput | None:
        for t in self.throughput:
            if t.label == label and t.system == system and t.hosts == hosts:
                return t
        return None


def log_phase(results: Results, name: str) -> None:
    results.load.append((name, os.getloadavg()))
    print(f"[{time.strftime('%H:%M:%S')}] {name} (load {os.getloadavg()[0]:.1f})", flush=True)


def run_all(plan: Plan, quick: bool, root: Path, only: set[str] | None, ov: Overrides = NO_OVERRIDES) -> Results:
    results = Results(plan, quick, ov)
    rtt = plan.round_trip
    monitoring = has_monitoring_setting()

    def want(name: str) -> bool:
        return only is None or name in only

    if want("accelerator"):
        extra = {"MODEL": "simulated", "SIMULATED_INFER_SECONDS": str(plan.accel_infer)}
        for system, loops in (("project", 1), ("reference", 1), (SHARED_LOOPS, 3)):
            log_phase(results, f"accelerator-bound: {system}")
            results.throughput.append(measured_or_failed(
                functools.partial(throughput, root, "accelerator", system, hosts=1, count=plan.accel_segments,
                                  size=plan.accel_size, round_trip=rtt, extra=extra, infer=plan.accel_infer,
                                  overrides=ov, loops=loops),
                Throughput("accelerator", system, 1, plan.accel_segments, plan.accel_size, plan.accel_infer)))
    if want("scaling"):
        extra = {"MODEL": "simulated", "SIMULATED_INFER_SECONDS": str(plan.scaling_infer)}
        for system in ("project", "reference") if plan.scaling_reference else ("project",):
            for hosts in plan.scaling_hosts:
                log_phase(results, f"scaling: {system}, {hosts} host(s)")
                count = plan.scaling_per_host * hosts
                results.throughput.append(measured_or_failed(
                    functools.partial(throughput, root, "scaling", system, hosts=hosts, count=count,
                                      size=plan.scaling_size, round_trip=rtt, extra=extra, infer=plan.scaling_infer,
                                      overrides=ov),
                    Throughput("scaling", system, hosts, count, plan.scaling_size, plan.scaling_infer)))
    if want("overhead"):
        variants: list[tuple[str, dict[str, str]]] = [("project", {})]
        if monitoring:
            variants.append(("project, MONITORING=off", {"MONITORING": "off"}))
        variants.append(("reference", {}))
        for system, extra in variants:
            log_phase(results, f"overhead-bound: {system}")
            results.throughput.append(measured_or_failed(
                functools.partial(throughput, root, "overhead", system, hosts=1, count=plan.overhead_segments,
                                  size=plan.overhead_size, round_trip=0.0, extra=extra, infer=None, overrides=ov),
                Throughput("overhead", system, 1, plan.overhead_segments, plan.overhead_size, None)))
    if want("latency"):
        variants = [("project", {})]
        if monitoring and plan.latency_monitoring_off:
            variants.append(("project, MONITORING=off", {"MONITORING": "off"}))
        variants.append(("reference", {}))
        for system, extra in variants:
            log_phase(results, f"latency: {system}")
            results.latency.append(measured_or_failed(
                functools.partial(latency, root, system, samples=plan.latency_samples, size=plan.latency_size,
                                  round_trip=rtt, extra=extra, overrides=ov),
                Latency(system)))
    if want("memory"):
        for size in plan.memory_sizes:
            log_phase(results, f"memory: one {mib(size)} segment")
            results.memory.append(measured_or_failed(functools.partial(memory, root, size, ov), Memory(size)))
    if want("stereo"):
        results.stereo = run_stereo(plan.stereo, root, rtt, ov, functools.partial(log_phase, results))
    results.finished = time.time()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=HOW,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts (about 5 minutes; the stereo family alone about 2)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="report file (default: BENCHMARKS.md)")
    parser.add_argument("--only", help="comma-separated: accelerator,scaling,overhead,latency,memory,stereo")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs of every process)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a non-default setting for the project's processes (to try a change; repeatable)")
    parser.add_argument("--worker-args", default="", metavar="ARGS",
                        help="extra `celery worker` options, e.g. '-P threads -c 4' (to try a change)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    only = set(args.only.split(",")) if args.only else None
    pairs = [e.partition("=") for e in args.env]
    if any(not name or not sep for name, sep, _ in pairs):
        parser.error("--env takes NAME=VALUE")
    overrides = Overrides(tuple((name, value) for name, _, value in pairs), tuple(shlex.split(args.worker_args)))
    root = Path(tempfile.mkdtemp(prefix="video-worker-bench-"))
    print(f"work directory: {root}", flush=True)
    try:
        res = run_all(plan, args.quick, root, only, overrides)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    command = shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])])
    generated = render(res, command)
    write_report(Path(args.out), generated)
    print(f"\nwrote {args.out}\n")
    print("\n".join(summary_table(res)))
    failed = [t.error for t in res.throughput if t.error] + [x.error for x in res.latency if x.error] + [
        m.error for m in res.memory if m.error] + (res.stereo.errors() if res.stereo else [])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
