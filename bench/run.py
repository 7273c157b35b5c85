"""Measure the video worker against the reference loop, in one run: ``python -m bench.run [--quick]``.

Each workload runs on a fresh moto server (its own process) behind
``bench.proxy`` (one round trip of latency per request, every request
logged), with resources made by ``video_worker.provision.provision``. The
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

Writes ``BENCHMARKS.md`` (the part between its ``bench:begin``/``bench:end``
markers; the rest of an existing file is kept) and prints the table last.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import functools
import math
import os
import platform
import random
import re
import shlex
import shutil
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

import boto3
from botocore.config import Config

from bench import logs, procs
from bench.procs import Child, TreeMonitor
from bench.proxy import BenchProxy, Request
from video_worker.provision import Resources, provision
from video_worker.settings import Settings
from video_worker.submit import segment_key

KIB, MIB = 1024, 1024 * 1024
#: Three reference loops on one host, sharing its accelerator: the overlap a pipelined worker aims at.
SHARED_LOOPS = "reference, 3 loops sharing the accelerator"
REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


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


@dataclass(frozen=True)
class Overrides:
    """Non-default settings for the project's processes (to try a proposed change); none by default."""

    env: tuple[tuple[str, str], ...] = ()
    worker_args: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.env] + ([f"worker args `{' '.join(self.worker_args)}`"]
                                                       if self.worker_args else [])
        return ", ".join(parts)


QUICK = Plan(accel_segments=10, scaling_per_host=3, scaling_reference=False, overhead_segments=40,
             latency_samples=8, latency_monitoring_off=False, memory_sizes=(128 * MIB, 16 * MIB))


def has_monitoring_setting() -> bool:
    return "monitoring" in Settings.model_fields


def kind(caller: str) -> str:
    """``worker3`` → ``worker``: requests are grouped by role, not by host."""
    return caller.rstrip("0123456789")


def mib(n: float) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / KIB:.0f} KiB"


# --- segments -----------------------------------------------------------------------------------


def write_segment(path: Path, size: int, seed: int) -> None:
    """An ISO-BMFF file (``ftyp`` + ``mdat``) of ``size`` bytes, streamed (any size)."""
    ftyp_payload = b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    ftyp = struct.pack(">I", 8 + len(ftyp_payload)) + b"ftyp" + ftyp_payload
    body = max(0, size - len(ftyp) - 8)
    pattern = bytes((seed * 31 + i * 7) % 251 for i in range(251)) * 4177  # ~1 MiB
    with path.open("wb") as f:
        f.write(ftyp + struct.pack(">I", 8 + body) + b"mdat")
        left = body
        while left:
            chunk = pattern[: min(left, len(pattern))]
            f.write(chunk)
            left -= len(chunk)


# --- one emulator + proxy + resources -----------------------------------------------------------


class Stack:
    """A fresh emulator process, the proxy in front of it, the resources, and the processes started."""

    def __init__(self, root: Path, name: str, round_trip: float, overrides: Overrides = Overrides()) -> None:
        self.overrides = overrides
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.emulator, self.direct = procs.start_emulator(self.dir)
        self.proxy = BenchProxy(self.direct, round_trip).start()
        config = Config(region_name="us-east-1", max_pool_connections=16, retries={"mode": "standard"})
        session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                         aws_session_token="bench")
        self.s3, self.ddb, self.sqs = (session.client(n, endpoint_url=self.direct, config=config)
                                       for n in ("s3", "dynamodb", "sqs"))
        self.res: Resources = provision(self.s3, self.ddb, self.sqs)
        self.raw_queue = self.res.queue_url.rsplit("/", 1)[-1]
        self.children: list[Child] = []

    def env(self, scratch: str, extra: dict[str, str]) -> dict[str, str]:
        values = {
            "INPUT_BUCKET_NAME": self.res.input_bucket,
            "OUTPUT_BUCKET_NAME": self.res.output_bucket,
            "SEGMENT_COMPLETIONS_TABLE_NAME": self.res.table,
            "VIDEO_WORKER_QUEUE_URL": self.res.queue_url,
            "AWS_ENDPOINT_URL": self.proxy.endpoint,
            "VIDEO_WORKER_SCRATCH_DIR": str(self.dir / scratch),
        }
        values.update(extra)
        return values

    def worker(self, host: int, extra: dict[str, str]) -> Child:
        argv = [sys.executable, "-m", "celery", "-A", "video_worker", "worker", "-l", "INFO", "-n", f"host{host}@%h",
                *self.overrides.worker_args]
        env = procs.child_env(f"worker{host}", self.env(f"scratch-{host}", {**extra, **dict(self.overrides.env)}))
        child = procs.start(f"worker{host}", argv, env, self.dir)
        self.children.append(child)
        return child

    def bridge(self, extra: dict[str, str]) -> Child:
        env = procs.child_env("bridge", self.env("scratch-bridge", {**extra, **dict(self.overrides.env)}))
        child = procs.start("bridge", [sys.executable, "-m", "video_worker", "bridge"], env, self.dir)
        self.children.append(child)
        return child

    def reference(self, host: int, extra: dict[str, str], go: Path | None, scratch: str = "") -> Child:
        values = self.env(scratch or f"scratch-ref-{host}", extra)
        if go is not None:
            values["BENCH_GO_FILE"] = str(go)
        env = procs.child_env(f"reference{host}", values)
        child = procs.start(f"reference{host}", [sys.executable, "-m", "bench.reference"], env, self.dir, cwd=REPO)
        self.children.append(child)
        return child

    def upload(self, job: str, count: int, size: int, threads: int = 8) -> list[str]:
        """Upload ``count`` segments of ``job`` straight to the emulator (S3 notifies the raw queue).

        One PUT per segment whatever its size: moto 5 sends two ``ObjectCreated`` events for a
        multipart upload (``CompleteMultipartUpload`` and ``Put``) where S3 sends one.
        """
        files = self.dir / "uploads"
        files.mkdir(exist_ok=True)
        keys = [segment_key(job, i, count, "sbs") for i in range(count)]

        def put(i: int) -> None:
            path = files / f"{job}-{i}.mp4"
            write_segment(path, size, seed=i)
            with path.open("rb") as body:
                self.s3.put_object(Bucket=self.res.input_bucket, Key=keys[i], Body=body)
            path.unlink()

        with concurrent.futures.ThreadPoolExecutor(min(threads, count)) as pool:
            list(pool.map(put, range(count)))
        return keys

    def completions(self, since: float = 0.0) -> list[Request]:
        return [r for r in self.proxy.rows() if r.start >= since and r.caller != "bench"]

    def wait_completions(self, count: int, since: float, timeout: float) -> list[Request]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.completions(since)
            if len(rows) >= count:
                return rows
            for child in self.children:
                if not child.alive():
                    raise RuntimeError(f"{child.name} exited ({child.popen.returncode}):\n{child.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(rows)} of {count} segments completed after {timeout:.0f}s")
            time.sleep(0.02)

    def outputs(self, job: str) -> dict[str, int]:
        """Output key → size, for ``job``."""
        out: dict[str, int] = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.res.output_bucket, Prefix=f"jobs/{job}/segments/")
        for page in pages:
            out.update({o["Key"]: int(o["Size"]) for o in page.get("Contents", [])})
        return out

    def emulator_cpu(self) -> float:
        return procs.cpu_seconds(procs.tree(self.emulator.pid))

    def close(self) -> None:
        for child in self.children:
            if child.alive():
                child.popen.terminate()
        for child in self.children:
            child.stop(30)
        self.proxy.stop()
        self.proxy.dump(self.dir / "requests.jsonl")
        self.emulator.stop(10)


@contextmanager
def stack(root: Path, name: str, round_trip: float, overrides: Overrides = Overrides()) -> Iterator[Stack]:
    st = Stack(root, name, round_trip, overrides)
    try:
        yield st
    finally:
        st.close()


# --- results ------------------------------------------------------------------------------------


@dataclass
class Throughput:
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
    error: str = ""

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
class Latency:
    system: str
    samples: list[float] = field(default_factory=list)
    cold: float = 0.0
    profile: list[tuple[float, str, str, float]] = field(default_factory=list)  # (offset, who, what, seconds)
    profile_stages: list[tuple[str, float]] = field(default_factory=list)
    profile_calls: list[tuple[str, int, float]] = field(default_factory=list)  # (service:action, n, seconds)
    profile_latency: float = 0.0
    error: str = ""

    def pct(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


@dataclass
class Memory:
    size: int
    idle_rss: int = 0
    peak_rss: int = 0
    peak_pss: int = 0
    hwm_sum: int = 0
    processes: int = 0
    seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    chains: int = 0  # download tasks run (1 unless the event came twice)
    per_process: list[tuple[str, int, int]] = field(default_factory=list)  # (process, idle RSS, VmHWM)
    verified: str = ""
    error: str = ""


@dataclass
class Results:
    plan: Plan
    quick: bool
    overrides: Overrides = Overrides()
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
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


# --- throughput workloads -----------------------------------------------------------------------


def throughput(root: Path, label: str, system: str, *, hosts: int, count: int, size: int, round_trip: float,
               extra: dict[str, str], infer: float | None, overrides: Overrides = Overrides(),
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

        def first_receive() -> bool:
            return any(kind(r.caller) == consumer and r.action == "ReceiveMessage" and r.target == st.raw_queue
                       for r in st.proxy.requests(mark))

        def cpu() -> dict[str, float]:
            out = {"emulator": st.emulator_cpu(), "proxy + benchmark": procs.cpu_seconds([os.getpid()])}
            for c in consumers:
                pids = procs.tree(c.pid)
                role = kind(c.name)
                main = f"{role} main" if role == "worker" else role
                out[main] = out.get(main, 0.0) + procs.cpu_seconds(pids[:1])
                if len(pids) > 1:
                    out[f"{role} pool"] = out.get(f"{role} pool", 0.0) + procs.cpu_seconds(pids[1:])
            return out

        _wait(first_receive, 120)
        cpu0, cpu_t0 = cpu(), time.time()
        rows = st.wait_completions(count, mark, timeout=max(180.0, count * (infer or 0.5) * 3 / hosts + 60))
        cpu1, done = cpu(), time.time()
        result.cpu = {k: (cpu1[k] - cpu0.get(k, 0.0)) / (done - cpu_t0) for k in cpu1}
        time.sleep(1.0)  # the last acks
        window = [r for r in st.proxy.requests(mark) if r.caller != "bench"]
        receives = [r.start for r in window if kind(r.caller) == consumer and r.action == "ReceiveMessage"
                    and r.target == st.raw_queue]
        t_start, t_end = min(receives), max(r.end for r in rows)
        result.wall = t_end - t_start
        result.requests = Counter((kind(r.caller), r.service, r.action) for r in window)
        result.targets = Counter((kind(r.caller), r.service, r.action, r.target) for r in window)
        result.events = Counter((kind(r.caller), r.detail.removeprefix("event=") or "?") for r in window
                                if r.service == "sns" and r.action == "Publish")
        result.bytes_in = sum(r.received for r in window if r.service == "s3" and r.action == "GetObject")
        result.bytes_out = sum(r.sent for r in window if r.service == "s3" and r.action in ("PutObject", "UploadPart"))
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


# --- latency ------------------------------------------------------------------------------------


def latency(root: Path, system: str, *, samples: int, size: int, round_trip: float, extra: dict[str, str],
            seed: int = 6, overrides: Overrides = Overrides()) -> Latency:
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
                st.s3.put_object(Bucket=st.res.input_bucket, Key=segment_key(job, 0, 1, "sbs"), Body=body)
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


# --- memory -------------------------------------------------------------------------------------


def memory(root: Path, size: int, overrides: Overrides = Overrides()) -> Memory:
    """Peak resident memory of the worker's whole process tree while it processes one segment."""
    result = Memory(size)
    with stack(root, f"memory-{size // MIB}m", 0.0, overrides) as st:
        worker = st.worker(1, {})
        worker.wait_for_log("ready.", 180)
        st.bridge({}).wait_for_log("bridge polling", 60)
        monitor = TreeMonitor(worker.pid, interval=0.05).start()
        time.sleep(2.0)
        result.idle_rss = monitor.peak_rss
        idle = dict(monitor.rss)
        monitor.reset()
        mark = time.time()
        st.upload("mem", 1, size)
        uploaded = time.time()
        row = st.wait_completions(1, 0.0, 900)[0]
        result.seconds = row.end - uploaded
        time.sleep(1.0)
        monitor.stop()
        result.peak_rss, result.peak_pss, result.processes = monitor.peak_rss, monitor.peak_pss, monitor.peak_processes
        result.hwm_sum = sum(monitor.hwm.values())
        pool = iter(range(1, 100))
        result.per_process = [("main" if pid == worker.pid else f"pool process {next(pool)}", idle.get(pid, 0), peak)
                              for pid, peak in sorted(monitor.hwm.items(), key=lambda kv: kv[0] != worker.pid)]
        window = st.proxy.requests(mark)
        result.bytes_in = sum(r.received for r in window if r.service == "s3" and r.action == "GetObject")
        result.bytes_out = sum(r.sent for r in window if r.service == "s3" and r.action in ("PutObject", "UploadPart"))
        outputs = st.outputs("mem")
        result.verified = "output of the right size" if list(outputs.values()) == [size] else f"outputs {outputs}"
        result.chains = len([r for r in logs.parse(worker.log(), "worker1") if r.task == logs.STAGES[0]])
    return result


# --- the whole run ------------------------------------------------------------------------------


R = TypeVar("R", Throughput, Latency, Memory)


def _guarded(measure: Callable[[], R], failed: R) -> R:
    """Run one workload; on failure, return ``failed`` with the error (the other workloads still run)."""
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        failed.error = f"{type(exc).__name__}: {first}"[:300]
        return failed


def run_all(plan: Plan, quick: bool, root: Path, only: set[str] | None, ov: Overrides = Overrides()) -> Results:
    results = Results(plan, quick, ov)
    rtt = plan.round_trip
    monitoring = has_monitoring_setting()

    def want(name: str) -> bool:
        return only is None or name in only

    if want("accelerator"):
        extra = {"MODEL": "simulated", "SIMULATED_INFER_SECONDS": str(plan.accel_infer)}
        for system, loops in (("project", 1), ("reference", 1), (SHARED_LOOPS, 3)):
            log_phase(results, f"accelerator-bound: {system}")
            results.throughput.append(_guarded(
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
                results.throughput.append(_guarded(
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
            results.throughput.append(_guarded(
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
            results.latency.append(_guarded(
                functools.partial(latency, root, system, samples=plan.latency_samples, size=plan.latency_size,
                                  round_trip=rtt, extra=extra, overrides=ov),
                Latency(system)))
    if want("memory"):
        for size in plan.memory_sizes:
            log_phase(results, f"memory: one {mib(size)} segment")
            results.memory.append(_guarded(functools.partial(memory, root, size, ov), Memory(size)))
    results.finished = time.time()
    return results


# --- the report ---------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _pct(x: float | None) -> str:
    return f"{x * 100:.0f}%" if x is not None else "-"


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "**no**")


def summary_table(res: Results) -> list[str]:
    p = res.plan
    lines = ["| workload | figure | project | reference | target | met |", "|---|---|---:|---:|---|---|"]

    def row(workload: str, figure: str, project: str, reference: str, target: str, met: bool | None) -> None:
        lines.append(f"| {workload} | {figure} | {project} | {reference} | {target} | {_ok(met)} |")

    a, ar = res.find("accelerator", "project"), res.find("accelerator", "reference")
    if a or ar:
        w = f"accelerator-bound: {p.accel_segments if a is None else a.segments} x {mib(p.accel_size)}, " \
            f"infer {p.accel_infer} s, RTT {p.round_trip * 1000:.0f} ms"
        if (a and a.error) or (ar and ar.error):
            row(w, "error", a.error if a else "", ar.error if ar else "", "", None)
        else:
            row(w, "segments/s", f"{a.rate:.2f}" if a else "-", f"{ar.rate:.2f}" if ar else "-",
                "≥ 1.6x reference", (a.rate >= 1.6 * ar.rate) if a and ar else None)
            row(w, "project ÷ reference", _ratio(a.rate if a else None, ar.rate if ar else None), "", "≥ 1.6x", None)
            row(w, "accelerator busy", _pct(a.busy if a else None), _pct(ar.busy if ar else None), "≥ 95%",
                (a.busy or 0) >= 0.95 if a else None)
            shared = res.find("accelerator", SHARED_LOOPS)
            if shared is not None and not shared.error:
                row(w, "3 reference loops sharing the one accelerator (overlap, no pipelining logic): seg/s, busy",
                    "", f"{shared.rate:.2f}, {_pct(shared.busy)}", "", None)
    base = {t.system: t.rate for t in res.throughput if t.label == "scaling" and t.hosts == 1 and not t.error}
    for t in res.throughput:
        if t.label != "scaling":
            continue
        w = f"scaling: {t.hosts} host(s), {t.segments} segments of {mib(t.size)}, infer {t.infer} s"
        if t.error:
            row(w, "error", t.error if t.system == "project" else "", t.error if t.system == "reference" else "", "",
                None)
            continue
        other = res.find("scaling", "reference" if t.system == "project" else "project", t.hosts)
        if t.system == "reference" and other is not None:
            continue  # shown on the project's rows
        ref = other if t.system == "project" else t
        proj = t if t.system == "project" else None
        speedup = (proj.rate / base["project"]) if proj and base.get("project") else None
        target = {2: 1.9, 4: 3.6}.get(t.hosts)
        ref_speed = ref.rate / base["reference"] if ref and base.get("reference") and not ref.error else None
        row(w, "segments/s", f"{proj.rate:.2f}" if proj else "-", f"{ref.rate:.2f}" if ref and not ref.error else "-",
            "", None)
        if t.hosts > 1:
            row(w, "speed-up vs 1 host", f"{speedup:.2f}x" if speedup else "-",
                f"{ref_speed:.2f}x" if ref_speed else "-",
                f"≥ {target}x" if target else "", (speedup >= target) if speedup and target else None)
        row(w, "accelerator busy (per host)", _pct(proj.busy if proj else None),
            _pct(ref.busy if ref and not ref.error else None), "≥ 90%",
            (proj.busy or 0) >= 0.90 if proj else None)
        if proj:
            runs = 1 + proj.rerun_inferences / proj.segments
            row(w, "inferences run per segment (upload re-runs the model when it lands on another host)",
                f"{runs:.2f}", "1.00" if ref and not ref.error else "-", "1", runs == 1)
            inb, outb = proj.bytes_in / (proj.segments * proj.size), proj.bytes_out / (proj.segments * proj.size)
            row(w, "segment bytes in / out over the network", f"{inb:.2f}x / {outb:.2f}x",
                f"{ref.bytes_in / (ref.segments * ref.size):.2f}x / {ref.bytes_out / (ref.segments * ref.size):.2f}x"
                if ref and not ref.error and ref.segments else "-",
                "1x / 1x", abs(inb - 1) < 0.01 and abs(outb - 1) < 0.01)
    over = [t for t in res.throughput if t.label == "overhead"]
    ref_o = res.find("overhead", "reference")
    for t in over:
        if t.system == "reference":
            continue
        w = f"overhead-bound: {t.segments} x {mib(t.size)}, pass-through, no added latency" + (
            "" if t.system == "project" else f" ({t.system.split(', ')[1]})")
        if t.error:
            row(w, "error", t.error, "", "", None)
            continue
        refok = ref_o is not None and not ref_o.error
        row(w, "segments/s", f"{t.rate:.2f}", f"{ref_o.rate:.2f}" if refok and ref_o else "-", "", None)
        row(w, "AWS requests per segment (all services, incl. bridge)", f"{t.per_segment():.1f}",
            f"{ref_o.per_segment():.1f}" if refok and ref_o else "-", "≤ 12", t.per_segment() <= 12)
    lat_ref = next((x for x in res.latency if x.system == "reference"), None)
    for lat in res.latency:
        if lat.system == "reference":
            continue
        w = f"latency: single {mib(p.latency_size)} uploads, idle, RTT {p.round_trip * 1000:.0f} ms" + (
            "" if lat.system == "project" else f" ({lat.system.split(', ')[1]})")
        if lat.error:
            row(w, "error", lat.error, "", "", None)
            continue
        refok = lat_ref is not None and not lat_ref.error
        row(w, f"p50 (n={len(lat.samples)})", f"{lat.pct(50):.3f} s",
            f"{lat_ref.pct(50):.3f} s" if refok and lat_ref else "-", "≤ 0.4 s", lat.pct(50) <= 0.4)
        row(w, "p95", f"{lat.pct(95):.3f} s", f"{lat_ref.pct(95):.3f} s" if refok and lat_ref else "-", "≤ 0.8 s",
            lat.pct(95) <= 0.8)
        row(w, "first segment after start (cold)", f"{lat.cold:.3f} s",
            f"{lat_ref.cold:.3f} s" if refok and lat_ref else "-", "", None)
    small = next((m for m in res.memory if m.size == min(p.memory_sizes)), None)
    for m in res.memory:
        w = f"memory: one {mib(m.size)} segment"
        if m.error:
            row(w, "error", m.error, "", "", None)
            continue
        largest = m.size == max(p.memory_sizes)
        row(w, "peak RSS of the worker's process tree (sum)", f"{m.peak_rss / 1e6:.0f} MB", "",
            "≤ 160 MB" if largest else "", m.peak_rss <= 160e6 if largest else None)
        if m.size == max(p.memory_sizes) and small and not small.error and small is not m:
            diff = (m.peak_rss - small.peak_rss) / 1e6
            row(w, f"difference to the {mib(small.size)} figure", f"{diff:+.0f} MB", "", "≤ 20 MB", diff <= 20)
    return lines


def details(res: Results) -> list[str]:
    out: list[str] = []
    tp = [t for t in res.throughput if not t.error]
    if tp:
        out += ["### Throughput runs", "",
                "| workload | system | hosts | segments | wall s | seg/s | busy | req/seg | req/s | bytes in/out | "
                "refetched inputs / re-run inferences | rows per host | tasks running (mean) | first inference at s | "
                "CPU (1.00 = one core) | check |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|---|"]
        for t in tp:
            out.append(
                f"| {t.label} | {t.system} | {t.hosts} | {t.segments} | {t.wall:.2f} | {t.rate:.2f} | {_pct(t.busy)} | "
                f"{t.per_segment():.1f} | {t.per_segment() * t.rate:.0f} | {t.bytes_in / (t.segments * t.size):.2f}x / "
                f"{t.bytes_out / (t.segments * t.size):.2f}x | {t.refetched_inputs} / {t.rerun_inferences} | "
                f"{', '.join(f'{k}: {v}' for k, v in sorted(t.rows_per_host.items()))} | "
                f"{_num(t.tasks_running)} | {_num(t.first_infer)} | "
                f"{', '.join(f'{k} {v:.2f}' for k, v in sorted(t.cpu.items(), key=lambda kv: -kv[1]))} | "
                f"{t.verified} |")
        out += ["", "Busy = segments x inference time ÷ wall time ÷ hosts. Wall = first receive from the raw "
                "queue → last completion row. Tasks running = the tasks' run times (worker logs) ÷ wall time, "
                "all hosts. CPU = each process's CPU time ÷ wall time, by role (`proxy + benchmark` is this "
                f"process: the proxy's threads); the machine has {os.cpu_count()} cores. "
                "Bytes in/out = S3 GetObject response bytes and PutObject/UploadPart request "
                "bytes ÷ (segments x segment size).", ""]
        out += ["### Time per stage (worker logs, mean seconds)", "",
                "hop = previous stage finished → this task's message received by a worker, or, for a stage "
                "run by chain affinity (log line `continued on this host`), → continued; wait = received → "
                "started (waiting for a slot); run = the stage's own run time (for `infer` it includes waiting "
                "for the accelerator, which is taken inside the run); moved = chains where this stage ran on "
                "another host than the previous one.", "",
                "| workload | system | hosts | stage | n | hop | wait | run | moved |",
                "|---|---|---:|---|---:|---:|---:|---:|---:|"]
        for t in tp:
            for s in t.stages:
                out.append(f"| {t.label} | {t.system} | {t.hosts} | {s.stage} | {s.count} | "
                           f"{'' if s.hop is None else f'{s.hop:.3f}'} | {'' if s.wait is None else f'{s.wait:.3f}'} | "
                           f"{s.run:.3f} | {s.other_host} |")
        out.append("")
    over = [t for t in tp if t.label == "overhead"]
    if over:
        keys = sorted({k for t in over for k in t.requests})
        out += ["### AWS requests per segment, overhead-bound workload, by caller, service and action", "",
                "Every request the bridge, the workers and the reference made from the moment the bridge "
                "(reference) started until 1 s after the last completion, ÷ segments (idle polls and "
                "heartbeats in that window included).", "",
                "| caller | service | action | " + " | ".join(t.system for t in over) + " |",
                "|---|---|---|" + "---:|" * len(over)]
        for k in keys:
            out.append(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(
                f"{t.requests[k] / t.segments:.2f}" if t.requests[k] else "" for t in over) + " |")
        out.append("| **total** | | | " + " | ".join(f"**{t.per_segment():.2f}**" for t in over) + " |")
        out += ["", "SQS requests by queue (per segment):", "",
                "| caller | action | queue | " + " | ".join(t.system for t in over) + " |",
                "|---|---|---|" + "---:|" * len(over)]
        for q in sorted({q for t in over for q in t.targets if q[1] == "sqs"}):
            out.append(f"| {q[0]} | {q[2]} | {q[3] or '(none)'} | " + " | ".join(
                f"{t.targets[q] / t.segments:.2f}" if t.targets[q] else "" for t in over) + " |")
        out.append("")
        events = sorted({e for t in over for e in t.events})
        if events:
            out += ["SNS `Publish` requests by the Celery event types they carry (per segment; a worker "
                    "sends its task events in batches, once a second: `video_worker/monitoring/batching.py`; "
                    "a batch is listed by the distinct types in it):", "",
                    "| caller | event | " + " | ".join(t.system for t in over) + " |",
                    "|---|---|" + "---:|" * len(over)]
            for e in events:
                out.append(f"| {e[0]} | {e[1]} | " + " | ".join(
                    f"{t.events[e] / t.segments:.2f}" if t.events[e] else "" for t in over) + " |")
            out.append("")
        startup = [t for t in over if t.startup]
        if startup:
            out += ["One-time requests of a worker host at start-up (before the workload; not in the figures above):",
                    ""]
            for t in startup:
                out.append(f"- {t.system}: " + ", ".join(f"{s}:{a} {n}" for (_, s, a), n in sorted(t.startup.items())))
            out.append("")
    for lat in res.latency:
        if lat.error or not lat.samples:
            continue
        out += [f"### Latency samples: {lat.system}", "",
                f"{len(lat.samples)} samples after one cold one ({lat.cold:.3f} s): min {min(lat.samples):.3f}, "
                f"p50 {lat.pct(50):.3f}, p95 {lat.pct(95):.3f}, max {max(lat.samples):.3f} s.", ""]
    profs = [x for x in res.latency if x.system != "reference" and x.profile]
    if profs:
        prof = profs[0]
        names = list(dict.fromkeys(name for x in profs for name, _ in x.profile_stages))
        out += ["## Profile of one segment's path", "",
                f"The median sample of each latency run (RTT {res.plan.round_trip * 1000:.0f} ms, 1 MiB, idle "
                "system): " + ", ".join(f"{x.system} {x.profile_latency:.3f} s" for x in profs) + " from the "
                "upload to the row. Stage times come from the worker's log (received, and started = finished - "
                "run time) and the proxy's log; a stage run by chain affinity is \"received\" when the previous "
                "stage's task continues with it on the same host (a difference of ±1 ms is log rounding).", "",
                "Time per stage, ms:", "", "| stage | " + " | ".join(x.system for x in profs) + " |",
                "|---|" + "---:|" * len(profs)]
        for name in names:
            out.append(f"| {name} | " + " | ".join(
                next((f"{sec * 1000:.0f}" for n, sec in x.profile_stages if n == name), "") for x in profs) + " |")
        out += ["", "Time per AWS call kind during that segment, ms (the part of each call between the event and "
                "the row; calls overlap, so the sum can exceed the latency; a long poll counts from the event until "
                "it returns the message; idle polls are left out):", "",
                "| caller service:action | " + " | ".join(f"{x.system}: n | ms" for x in profs) + " |",
                "|---|" + "---:|---:|" * len(profs)]
        kinds = list(dict.fromkeys(name for x in profs for name, _, _ in x.profile_calls))
        for call in kinds:
            cells = []
            for x in profs:
                hit = next(((n, sec) for name, n, sec in x.profile_calls if name == call), None)
                cells.append(f"{hit[0]} | {hit[1] * 1000:.0f}" if hit else " | ")
            out.append(f"| {call} | " + " | ".join(cells) + " |")
        out += ["", f"<details><summary>Timeline of the {prof.system} sample</summary>", "",
                "| +ms | who | what | ms |", "|---:|---|---|---:|"]
        out += [f"| {off * 1000:.0f} | {who} | {what} | {sec * 1000:.0f} |" for off, who, what, sec in prof.profile]
        out += ["", "</details>", ""]
    ref_prof = next((x for x in res.latency if x.system == "reference" and x.profile), None)
    if ref_prof:
        out += [f"Reference, median sample ({ref_prof.profile_latency:.3f} s), per AWS call:", "",
                "| caller service:action | n | total ms |", "|---|---:|---:|"]
        out += [f"| {name} | {n} | {sec * 1000:.0f} |" for name, n, sec in ref_prof.profile_calls]
        out.append("")
    mem = [m for m in res.memory if not m.error]
    if mem:
        out += ["### Memory", "",
                "| segment | idle tree RSS | peak tree RSS (sum) | peak tree PSS (sum) | Σ per-process VmHWM | "
                "processes | chains run | seconds | bytes in/out | check |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for m in mem:
            out.append(f"| {mib(m.size)} | {m.idle_rss / 1e6:.0f} MB | {m.peak_rss / 1e6:.0f} MB | "
                       f"{m.peak_pss / 1e6:.0f} MB | {m.hwm_sum / 1e6:.0f} MB | {m.processes} | {m.chains} | "
                       f"{m.seconds:.1f} | "
                       f"{m.bytes_in / m.size:.2f}x / {m.bytes_out / m.size:.2f}x | {m.verified} |")
        out += ["", "Per process (idle RSS → own peak RSS): " + "; ".join(
            f"{mib(m.size)}: " + ", ".join(f"{name} {idle / 1e6:.0f} → {peak / 1e6:.0f} MB"
                                           for name, idle, peak in m.per_process) for m in mem) + "."]
        out += ["", "Sampled every 50 ms from /proc: RSS summed over the worker's main process and its pool "
                "processes (shared pages counted in each), PSS (shared pages split), and the sum of each "
                "process's own kernel-kept peak (VmHWM; an upper bound: the peaks need not coincide).", ""]
    return out


def machine() -> str:
    cpu = "?"
    with_path = Path("/proc/cpuinfo")
    if with_path.exists():
        for line in with_path.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        mem = f"{int(meminfo.read_text().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {mem}, Python {platform.python_version()}"


def render(res: Results, command: str) -> str:
    versions = ", ".join(f"{p} {version(p)}" for p in ("celery", "kombu", "boto3", "moto"))
    lines = [BEGIN, "", "## Results", "",
             f"Command: `{command}` — run on {dt.datetime.fromtimestamp(res.started, dt.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{res.finished - res.started:.0f} s in all{' (--quick: smaller counts)' if res.quick else ''}.",
             f"Machine: {machine()}; {versions}. Shared with other jobs: load average at the start of each "
             "workload: " + ", ".join(f"{name} {load[0]:.1f}" for name, load in res.load) + ".",
             "Figures are comparable within this run only."]
    if res.overrides.describe():
        lines.append(f"**Not the defaults**: the project ran with {res.overrides.describe()}.")
    lines.append("")
    lines += summary_table(res)
    lines += ["", *details(res), END]
    return "\n".join(lines) + "\n"


def write_report(path: Path, generated: str) -> None:
    """Replace the generated part of ``path`` (between the markers), keeping the rest."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            path.write_text(head + generated.rstrip("\n") + tail, encoding="utf-8")
            return
    header = ("# Benchmarks\n\nThe video worker against the reference loop (`bench/reference.py`): "
              "`python -m bench.run` (issue #6). See `bench/run.py` for how each figure is measured.\n\n")
    path.write_text(header + generated, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (about 3 minutes)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="report file (default: BENCHMARKS.md)")
    parser.add_argument("--only", help="comma-separated: accelerator,scaling,overhead,latency,memory")
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
        m.error for m in res.memory if m.error]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

