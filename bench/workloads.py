"""The measurements: throughput, latency and memory workloads, each on a fresh stack, and their results."""

from __future__ import annotations

import math
import random
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench import logs, procs
from bench.awsproxy import Request
from bench.procs import Child, TreeMonitor
from bench.stack import MIB, NO_OVERRIDES, Overrides, Stack, kind, stack, write_segment
from video_worker.keys import build_segment_key

#: Three reference loops on one host, sharing its accelerator: the overlap a pipelined worker aims at.
SHARED_LOOPS = "reference, 3 loops sharing the accelerator"


def s3_bytes(window: list[Request]) -> tuple[int, int]:
    """Segment bytes over the network: S3 ``GetObject`` response bytes, ``PutObject``/``UploadPart`` request bytes."""
    return (sum(r.received for r in window if r.service == "s3" and r.action == "GetObject"),
            sum(r.sent for r in window if r.service == "s3" and r.action in ("PutObject", "UploadPart")))


@dataclass(kw_only=True)
class Outcome:
    """What every workload's result has: ``error``, why it failed ("" if it did not; see ``measured_or_failed``)."""

    error: str = ""


@dataclass
class Throughput(Outcome):
    label: str
    system: str
    hosts: int
    segments: int
    size: int
    infer: float | None
    wall: float = 0.0
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (role, service, action)
    targets: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)  # + target
    events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, Celery event type) of SNS Publish
    startup: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # before the workload, all hosts
    bytes_in: int = 0
    bytes_out: int = 0
    refetched_inputs: int = 0
    rerun_inferences: int = 0
    stages: list[logs.StageStats] = field(default_factory=list)
    rows_per_host: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # process role -> CPU seconds per wall second
    tasks_running: float | None = None  # mean number of tasks running (their run times ÷ wall time)
    first_infer: float | None = None  # first inference started, seconds after the first receive
    verified: str = ""

    @property
    def rate(self) -> float:
        return self.segments / self.wall if self.wall else 0.0

    @property
    def busy(self) -> float | None:
        if self.infer is None or not self.wall:
            return None
        return self.segments * self.infer / self.wall / self.hosts

    def per_segment(self) -> float:
        return sum(self.requests.values()) / self.segments


@dataclass
class Latency(Outcome):
    system: str
    samples: list[float] = field(default_factory=list)
    cold: float = 0.0
    profile: list[tuple[float, str, str, float]] = field(default_factory=list)  # (offset, who, what, seconds)
    profile_stages: list[tuple[str, float]] = field(default_factory=list)
    profile_calls: list[tuple[str, int, float]] = field(default_factory=list)  # (service:action, n, seconds)
    profile_latency: float = 0.0

    def pct(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


@dataclass
class Memory(Outcome):
    size: int
    idle_rss: int = 0  # the worker's process tree, summed, while idle; peak_*: while it processes the segment
    peak_rss: int = 0
    peak_pss: int = 0
    processes: int = 0
    per_process: list[tuple[str, int, int]] = field(default_factory=list)  # (process, idle RSS, VmHWM)
    seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    chains: int = 0  # download tasks run (1 unless the event came twice)
    verified: str = ""

    @property
    def hwm_sum(self) -> int:
        """Σ per-process peak RSS (VmHWM): an upper bound of the tree's peak (the peaks need not coincide)."""
        return sum(peak for _, _, peak in self.per_process)


def throughput(root: Path, label: str, system: str, *, hosts: int, count: int, size: int, round_trip: float,
               extra: dict[str, str], infer: float | None, overrides: Overrides = NO_OVERRIDES,
               loops: int = 1) -> Throughput:
    """``count`` segments queued at once; wall time from the first receive to the last completion.

    ``loops`` > 1 (reference only): that many reference processes share one host's scratch directory,
    so one accelerator (what overlapping transfers with inference can reach on one host).
    """
    result = Throughput(label, system, hosts, count, size, infer)
    name = re.sub(r"[^A-Za-z0-9]+", "-", f"{label}-{system}-{hosts}").strip("-")
    job = f"{label}-{hosts}"
    reference = system.startswith("reference")
    with stack(root, name, round_trip, overrides) as st:
        workers: list[Child] = []
        if not reference:
            workers = [st.worker(h, extra) for h in range(1, hosts + 1)]
            for w in workers:
                w.wait_for_log("ready.", 180)
        else:
            go = st.dir / "go"
            workers = [st.reference(h, extra, go, "scratch-shared" if loops > 1 else "")
                       for h in range(1, hosts * loops + 1)]
            for w in workers:
                w.wait_for_log("reference: ready", 60)
        time.sleep(1.0)
        result.startup = Counter((kind(r.caller), r.service, r.action) for r in st.proxy.requests()
                                 if r.caller != "bench")
        st.upload(job, count, size)
        mark = time.time()
        if reference:
            (st.dir / "go").touch()
            consumer, consumers = "reference", workers
        else:
            consumer, consumers = "bridge", [*workers, st.bridge(extra)]

        def receives() -> list[float]:  # the consumer's polls of the raw queue since the upload
            return [r.start for r in st.proxy.requests(mark) if kind(r.caller) == consumer
                    and r.action == "ReceiveMessage" and r.target == st.raw_queue]

        _wait(lambda: bool(receives()), 120)
        cpu0, cpu_t0 = st.cpu_by_role(consumers), time.time()
        rows = st.wait_completions(count, mark, timeout=max(180.0, count * (infer or 0.5) * 3 / hosts + 60))
        cpu1, done = st.cpu_by_role(consumers), time.time()
        result.cpu = {k: (cpu1[k] - cpu0.get(k, 0.0)) / (done - cpu_t0) for k in cpu1}
        time.sleep(1.0)  # the last acks
        window = [r for r in st.proxy.requests(mark) if r.caller != "bench"]
        t_start, t_end = min(receives()), max(r.end for r in rows)
        result.wall = t_end - t_start
        result.requests = Counter((kind(r.caller), r.service, r.action) for r in window)
        result.targets = Counter((kind(r.caller), r.service, r.action, r.target) for r in window)
        result.events = Counter((kind(r.caller), r.detail.removeprefix("event=") or "?") for r in window
                                if r.service == "sns" and r.action == "Publish")
        result.bytes_in, result.bytes_out = s3_bytes(window)
        result.rows_per_host = dict(Counter(r.caller for r in rows))
        runs = [run for w in workers for run in logs.parse(w.log(), w.name)]
        result.stages = logs.stage_stats(runs)
        result.tasks_running = sum(r.runtime or 0.0 for r in runs) / result.wall if runs else None
        infers = sorted(r.start for r in runs if r.task == logs.STAGES[1] and r.start is not None)
        result.first_infer = infers[0] - t_start if infers else None
        for w in workers:
            fetched, rerun = logs.refetches(w.log())
            result.refetched_inputs += fetched
            result.rerun_inferences += rerun
        outputs = st.outputs(job)
        bad = sum(1 for s in outputs.values() if s != size)
        result.verified = f"{len(outputs)}/{count} outputs" + (f", {bad} of the wrong size" if bad else "")
    return result


def latency(root: Path, system: str, *, samples: int, size: int, round_trip: float, extra: dict[str, str],
            seed: int = 6, overrides: Overrides = NO_OVERRIDES) -> Latency:
    """Single uploads on an idle system: from the upload's return to the completion row."""
    result = Latency(system)
    reference = system == "reference"
    name = "latency-" + re.sub(r"[^a-z0-9]+", "-", system.lower()).strip("-")
    rng = random.Random(seed)
    with stack(root, name, round_trip, overrides) as st:
        if reference:
            st.reference(1, extra, None).wait_for_log("reference: ready", 60)
            _wait(lambda: any(r.caller == "reference1" and r.action == "ReceiveMessage"
                              for r in st.proxy.requests()), 60)
        else:
            st.worker(1, extra).wait_for_log("ready.", 180)
            st.bridge(extra).wait_for_log("bridge polling", 60)
        time.sleep(1.5)
        path = st.dir / "segment.mp4"
        write_segment(path, size, seed=1)
        timings: list[tuple[float, float, float, str]] = []  # (latency, event, completion, job)
        for i in range(samples + 1):
            time.sleep(rng.uniform(0.5, 1.0))
            job = f"lat{i}"
            before = len(st.completions())
            with path.open("rb") as body:
                st.s3.put_object(Bucket=st.res.input_bucket, Key=build_segment_key(job, 0, 1, "sbs"), Body=body)
            event = time.time()
            row = st.wait_completions(before + 1, 0.0, 60)[-1]
            timings.append((row.end - event, event, row.end, job))
        result.cold = timings[0][0]
        result.samples = [t[0] for t in timings[1:]]
        median = sorted(timings[1:])[len(timings[1:]) // 2]
        time.sleep(0.5)
        _profile(result, st, median, reference)
    return result


def _profile(result: Latency, st: Stack, sample: tuple[float, float, float, str], reference: bool) -> None:
    """One segment's path: every request in flight between the event and the completion, and the tasks."""
    lat, event, complete, job = sample
    result.profile_latency = lat
    reqs = [r for r in st.proxy.requests(event - 30) if r.caller != "bench" and r.end >= event
            and r.start <= complete + 0.15]
    rows: list[tuple[float, str, str, float]] = []
    for r in reqs:
        what = f"{r.service} {r.action}" + (f" ({r.target})" if r.target else "")
        if r.start < event:
            what += f", long poll started {(r.start - event) * 1000:+.0f} ms"
        rows.append((max(r.start, event) - event, kind(r.caller), what, r.end - max(r.start, event)))
    stages: list[tuple[str, float]] = []
    if not reference:
        worker = next(c for c in st.children if c.name == "worker1")
        chain = logs.chains(logs.parse(worker.log(), "worker1")).get((job, 0), {})
        prev_end = event
        bridge_send = [r for r in reqs if r.caller == "bridge" and r.action == "SendMessage"]
        if bridge_send:
            stages.append(("S3 event → bridge has published the chain", bridge_send[0].end - event))
            prev_end = bridge_send[0].end
        for stage in logs.STAGES:
            run = chain.get(stage)
            if run is None or run.received is None or run.start is None or run.end is None:
                continue
            short = stage.split(".")[-1]
            rows.append((run.received - event, "worker", f"task {short} received", 0.0))
            rows.append((run.start - event, "worker", f"task {short} started", run.end - run.start))
            rows.append((run.end - event, "worker", f"task {short} finished", 0.0))
            stages.append((f"{short}: previous step done → message received", run.received - prev_end))
            stages.append((f"{short}: received → started", run.start - run.received))
            stages.append((f"{short}: run", run.end - run.start))
            prev_end = run.end
        stages.append(("record finished → row visible (PutItem end)", complete - prev_end))
    rows.sort()
    result.profile = rows
    result.profile_stages = stages
    calls: dict[str, list[float]] = {}
    for r in reqs:  # time each call overlapped the segment's path; long polls only until they returned work
        if r.action == "ReceiveMessage" and (r.end > complete or r.detail.endswith("got=0")):
            continue  # an idle poll (nothing for this segment came back in it)
        overlap = min(r.end, complete) - max(r.start, event)
        if overlap > 0:
            calls.setdefault(f"{kind(r.caller)} {r.service}:{r.action}", []).append(overlap)
    result.profile_calls = sorted(((k, len(v), sum(v)) for k, v in calls.items()), key=lambda x: -x[2])


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def memory(root: Path, size: int, overrides: Overrides = NO_OVERRIDES) -> Memory:
    """Peak resident memory of the worker's whole process tree while it processes one segment."""
    result = Memory(size)
    with stack(root, f"memory-{size // MIB}m", 0.0, overrides) as st:
        one_segment_memory(st, result, {}, lambda: st.upload("mem", 1, size))
        outputs = st.outputs("mem")
        result.verified = "output of the right size" if list(outputs.values()) == [size] else f"outputs {outputs}"
    return result


def one_segment_memory(st: Stack, result: Memory, extra: dict[str, str], submit: Callable[[], object],
                       timeout: float = 900.0) -> None:
    """Start a worker and the bridge on ``st``, then sample the worker's process tree idle and while it processes
    the one segment that ``submit`` uploads: ``result``'s figures but ``verified``."""
    worker, bridge = st.worker(1, extra), st.bridge(extra)  # started together: nothing is uploaded before both
    worker.wait_for_log("ready.", 180)
    bridge.wait_for_log("bridge polling", 60)
    monitor = TreeMonitor(worker.pid, interval=0.05).start()
    time.sleep(2.0)
    result.idle_rss = monitor.peak_rss
    idle = dict(monitor.rss)
    monitor.reset()
    mark = time.time()
    submit()
    uploaded = time.time()
    row = st.wait_completions(1, mark, timeout)[0]
    result.seconds = row.end - uploaded
    time.sleep(1.0)
    monitor.stop()
    result.peak_rss, result.peak_pss, result.processes = monitor.peak_rss, monitor.peak_pss, monitor.peak_processes
    result.per_process = [(name, idle.get(pid, 0), monitor.hwm[pid]) for pid, name in process_names(
        worker.pid, sorted(monitor.hwm, key=lambda pid: pid != worker.pid))]
    result.bytes_in, result.bytes_out = s3_bytes(st.proxy.requests(mark))
    result.chains = len([r for r in logs.parse(worker.log(), worker.name) if r.task == logs.STAGES[0]])


def process_names(main: int, pids: list[int]) -> list[tuple[int, str]]:
    """A worker's processes by role: ``main``, ``model process`` (``video_worker.adapters.model_process``; numbered
    when there are several) and ``pool process N`` (any other child: a prefork pool's)."""
    models = [pid for pid in pids if procs.MODEL_PROCESS in procs.cmdline(pid)]
    pool = iter(range(1, 100))
    return [(pid, "main" if pid == main else
             (f"model process {models.index(pid) + 1}" if len(models) > 1 else "model process") if pid in models
             else f"pool process {next(pool)}") for pid in pids]


R = TypeVar("R", bound=Outcome)


def measured_or_failed(measure: Callable[[], R], failed: R) -> R:
    """Run one workload; on failure, return ``failed`` with the error (the other workloads still run)."""
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc()
        failed.error = failure(exc)
        return failed


def failure(exc: BaseException) -> str:
    """An error as a result's ``error``: its type and the first line of its message."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:300]
