"""Fault-injection suite: shared helpers and the RELIABILITY.md report.

Run ``RELIABILITY_REPORT=RELIABILITY.md .venv/bin/pytest tests/faults`` to
rewrite the report from a fresh run.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.awsproxy import AwsProxy
from tests.support.stack import Aws, Proc, Processes, wait_until
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.ops.sample import sample_segment


@dataclass
class Outcome:
    scenario: str
    segments: int
    completed: int
    dead_lettered: int
    lost: int
    duplicate_rows: int
    faults: str
    seconds: float = 0.0
    notes: str = ""
    stale_outputs: int = 0
    worker_restarts: int = 0


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)


_REPORT = Report()


@pytest.fixture
def report() -> Report:
    return _REPORT


@pytest.fixture
def proxy(emulator: str) -> Iterator[AwsProxy]:
    p = AwsProxy(emulator).start()
    yield p
    p.stop()


def upload(aws: Aws, job: str, count: int, size: int = 20_000, mode: str = "sbs") -> dict[int, bytes]:
    """Upload ``count`` segments of ``job`` straight to the emulator (S3 notifies the raw queue)."""
    sent = {i: sample_segment(size + i, seed=i) for i in range(count)}

    def put(i: int) -> None:
        aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key(job, i, count, mode), Body=sent[i])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, sent))
    return sent


def settle(aws: Aws, job: str, sent: dict[int, bytes], timeout: float, dead: int = 0) -> None:
    wait_until(lambda: aws.completion_count(job) + dead >= len(sent), timeout, f"{len(sent)} rows of {job}")


def absorbed(job: str, workers: list[Proc]) -> int:
    """Duplicate deliveries that idempotency absorbed (skipped before download, or row already there)."""
    logs = "".join(w.log() for w in workers)
    return len(re.findall(rf"(?:skipping|already recorded) '{re.escape(job)}'/", logs))


def verify(aws: Aws, job: str, sent: dict[int, bytes], workers: list[Proc],
           dead: frozenset[int] = frozenset()) -> tuple[int, int, int]:
    """(completed, lost, duplicate rows): every row's output bytes are checked; ``dead`` are dead-lettered."""
    rows = {int(r["segment_index"]["N"]): r for r in aws.completion_rows(job)}
    completed = sum(1 for i, data in sent.items()
                    if i in rows and aws.output(build_output_segment_key(job, i)) == data)
    logs = "".join(w.log() for w in workers)
    recorded = re.findall(rf"(?<!already )recorded '{re.escape(job)}'/(\d+)\b", logs)
    duplicates = len(recorded) - len(set(recorded))
    return completed, len(sent) - completed - len(dead), duplicates


def stale_outputs(aws: Aws, job: str, latest: dict[int, bytes]) -> int:
    """Outputs whose bytes are not those of the segment's latest upload (pass-through model)."""
    return sum(1 for i, data in latest.items()
               if (out := aws.output(build_output_segment_key(job, i))) is not None and out != data)


def dead_letters(procs: Processes) -> list[dict[str, Any]]:
    """Every dead letter now on the queue, through the real CLI."""
    out = subprocess.run([sys.executable, "-m", "video_worker", "dlq", "list", "--json"], env=procs.env(),
                         capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def scratch_files(root: Path) -> list[Path]:
    """Segment files left in a scratch directory (the model's lock file is not one)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix == ".mp4")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("RELIABILITY_REPORT")
    if not target or not _REPORT.outcomes:
        return
    lines = [
        "# Reliability",
        "",
        "Fault-injection suite against a real moto server (`moto[server]`), the real bridge",
        "(`video-worker bridge`) and real workers (`celery -A video_worker worker`) over the SQS",
        "broker. Faults are injected at named calls by `bench/awsproxy/` (real AWS error",
        "responses, delays, dropped connections, an endpoint that goes away), or by killing processes.",
        "",
        f"Reproduce: `RELIABILITY_REPORT=RELIABILITY.md .venv/bin/pytest tests/faults` — run on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d}, {platform.platform()}, {os.cpu_count()} cores; "
        f"pytest exit status {int(exitstatus)}.",
        "",
        "| scenario | segments | completed | dead-lettered | lost | duplicate rows | stale outputs | "
        "worker restarts | faults injected | seconds | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for o in _REPORT.outcomes:
        lines.append(f"| {o.scenario} | {o.segments} | {o.completed} | {o.dead_lettered} | {o.lost} | "
                     f"{o.duplicate_rows} | {o.stale_outputs} | {o.worker_restarts} | {o.faults} | "
                     f"{o.seconds:.1f} | {o.notes} |")
    total = {name: sum(getattr(o, name) for o in _REPORT.outcomes)
             for name in ("segments", "completed", "dead_lettered", "lost", "duplicate_rows", "stale_outputs")}
    lines += ["", f"Segments: **{total['segments']}**; completed **{total['completed']}**, dead-lettered "
              f"**{total['dead_lettered']}** (each with its reason), lost **{total['lost']}**. Duplicate completion "
              f"rows: **{total['duplicate_rows']}**. Stale outputs: **{total['stale_outputs']}**.", "",
              "\"Lost\" is segments with neither a correct output + row nor a dead letter. \"Duplicate rows\" counts",
              "completion rows written more than once for the same upload (the table's key makes a second row per",
              "segment impossible; a second write would overwrite the first). \"Stale outputs\" counts outputs",
              "whose bytes are not the latest upload's. \"Worker restarts\" counts worker processes the test had to",
              "start again because one died (a supervisor's job); every other worker stayed up throughout.", ""]
    Path(target).write_text("\n".join(lines), encoding="utf-8")


def direct_broker(aws: Aws) -> dict[str, str]:
    """Broker straight to the emulator while AWS_ENDPOINT_URL goes through the proxy."""
    return {"CELERY_BROKER_URL": "sqs://" + aws.endpoint.removeprefix("http://"), "BROKER_USE_TLS": "false"}
