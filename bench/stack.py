"""The stack a workload runs on: a moto server process behind the counting AWS proxy, provisioned resources,
and the project's processes (workers, bridge) or the reference loop, started as users start them."""

from __future__ import annotations

import concurrent.futures
import os
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from bench import procs
from bench.awsproxy import AwsProxy, Request
from bench.procs import Child
from video_worker.keys import build_segment_key
from video_worker.ops.provision import Resources, provision

KIB, MIB = 1024, 1024 * 1024
REPO = Path(__file__).resolve().parent.parent


def mib(n: float) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / KIB:.0f} KiB"


def kind(caller: str) -> str:
    """``worker3`` → ``worker``: requests are grouped by role, not by host."""
    return caller.rstrip("0123456789")


@dataclass(frozen=True)
class Overrides:
    """Non-default settings for the project's processes (to try a proposed change); none by default."""

    env: tuple[tuple[str, str], ...] = ()
    worker_args: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.env] + ([f"worker args `{' '.join(self.worker_args)}`"]
                                                       if self.worker_args else [])
        return ", ".join(parts)


#: The project's defaults (what every run uses unless ``--env``/``--worker-args`` say otherwise).
NO_OVERRIDES = Overrides()


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


class Stack:
    """A fresh emulator process, the proxy in front of it, the resources, and the processes started.

    The processes get only the seed variables, ``AWS_ENDPOINT_URL`` (the proxy), what the workload adds
    (``MODEL``/``SIMULATED_INFER_SECONDS``), the scratch directory and fake credentials whose access key id
    names the process in the proxy's log. The benchmark's own calls (``self.s3`` …) go straight to the
    emulator: they are neither delayed nor counted.
    """

    def __init__(self, root: Path, name: str, round_trip: float, overrides: Overrides = NO_OVERRIDES) -> None:
        self.overrides = overrides
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.emulator, self.direct = procs.start_emulator(self.dir)
        self.proxy = AwsProxy(self.direct, round_trip).start()
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
            "MODEL": "passthrough",  # the plumbing families measure the pipeline, not the converter (extra overrides)
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
        """Upload ``count`` synthetic segments of ``size`` bytes as ``job`` (see ``upload_files``)."""
        files = self.dir / "uploads"
        files.mkdir(exist_ok=True)
        paths = [files / f"{job}-{i}.mp4" for i in range(count)]
        with concurrent.futures.ThreadPoolExecutor(min(threads, count)) as pool:
            list(pool.map(lambda i: write_segment(paths[i], size, seed=i), range(count)))
        try:
            return self.upload_files(job, paths, threads=threads)
        finally:
            for path in paths:
                path.unlink(missing_ok=True)

    def upload_files(self, job: str, paths: list[Path], mode: str = "sbs", threads: int = 8) -> list[str]:
        """Upload ``paths`` as the segments 0…n-1 of ``job`` straight to the emulator (S3 notifies the raw queue).

        One PUT per segment whatever its size: moto 5 sends two ``ObjectCreated`` events for a
        multipart upload (``CompleteMultipartUpload`` and ``Put``) where S3 sends one.
        """
        keys = [build_segment_key(job, i, len(paths), mode) for i in range(len(paths))]

        def put(i: int) -> None:
            with paths[i].open("rb") as body:
                self.s3.put_object(Bucket=self.res.input_bucket, Key=keys[i], Body=body)

        with concurrent.futures.ThreadPoolExecutor(min(threads, len(paths))) as pool:
            list(pool.map(put, range(len(paths))))
        return keys

    def completions(self, since: float = 0.0) -> list[Request]:
        """The completion rows (successful DynamoDB ``PutItem`` requests, as the proxy passed them)."""
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

    def output(self, key: str) -> bytes:
        """The bytes of the output object ``key``."""
        data: bytes = self.s3.get_object(Bucket=self.res.output_bucket, Key=key)["Body"].read()
        return data

    def emulator_cpu(self) -> float:
        return procs.cpu_seconds(procs.tree(self.emulator.pid))

    def cpu_by_role(self, children: list[Child]) -> dict[str, float]:
        """CPU seconds so far: the emulator, this process (the proxy's threads), ``children`` by role and part."""
        out = {"emulator": self.emulator_cpu(), "proxy + benchmark": procs.cpu_seconds([os.getpid()])}
        for c in children:
            pids = procs.tree(c.pid)
            role = kind(c.name)
            main = f"{role} main" if role == "worker" else role
            out[main] = out.get(main, 0.0) + procs.cpu_seconds(pids[:1])
            if len(pids) > 1:
                out[f"{role} pool"] = out.get(f"{role} pool", 0.0) + procs.cpu_seconds(pids[1:])
        return out

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
def stack(root: Path, name: str, round_trip: float, overrides: Overrides = NO_OVERRIDES) -> Iterator[Stack]:
    st = Stack(root, name, round_trip, overrides)
    try:
        yield st
    finally:
        st.close()
