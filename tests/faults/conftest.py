"""Fault-injection suite: shared helpers and the RELIABILITY.md report.

Run ``RELIABILITY_REPORT=RELIABILITY.md .venv/bin/pytest tests/faults`` to
rewrite the report from a fresh run.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import platform
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.awsproxy import AwsProxy
from tests.conftest import Aws, Proc, wait_until
from video_worker.keys import build_output_segment_key
from video_worker.sample import sample_segment
from video_worker.submit import segment_key


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
        aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=segment_key(job, i, count, mode), Body=sent[i])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, sent))
    return sent


def settle(aws: Aws, job: str, sent: dict[int, bytes], timeout: float, dead: int = 0) -> None:
    wait_until(lambda: aws.completion_count(job) + dead >= len(sent), timeout, f"{len(sent)} rows of {job}")


def absorbed(job: str, workers: list[Proc]) -> int:
    """Duplicate deliveries that idempotency absorbed (skipped before download, or row already there)."""
    logs = "".join(w.log() for w in workers)
    return len(re.findall(rf"(?:skipping|already recorded) '{re.escape(job)}'/", logs))


def verify(aws: Aws, job: str, sent: dict[int, bytes], workers: list[Proc]) -> tuple[int, int, int]:
    """(completed, lost, duplicate rows): every row's output bytes are checked."""
    rows = {int(r["segment_index"]["N"]): r for r in aws.completion_rows(job)}
    completed = sum(1 for i, data in sent.items()
                    if i in rows and aws.output(build_output_segment_key(job, i)) == data)
    logs = "".join(w.log() for w in workers)
    recorded = re.findall(rf"(?<!already )recorded '{re.escape(job)}'/(\d+)\b", logs)
    duplicates = len(recorded) - len(set(recorded))
    return completed, len(sent) - completed, duplicates


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("RELIABILITY_REPORT")
    if not target or not _REPORT.outcomes:
        return
    lines = [
        "# Reliability",
        "",
        "Fault-injection suite against a real moto server (`moto[server]`), the real bridge",
        "(`video-worker bridge`) and real workers (`celery -A video_worker worker`) over the SQS",
        "broker. Faults are injected at the HTTP level by `tests/awsproxy.py` (real AWS error",
        "responses, delays, dropped connections, an endpoint that goes away), or by killing processes.",
        "",
        f"Reproduce: `RELIABILITY_REPORT=RELIABILITY.md .venv/bin/pytest tests/faults` — run on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d}, {platform.platform()}, {os.cpu_count()} cores; "
        f"pytest exit status {int(exitstatus)}.",
        "",
        "| scenario | segments | completed | dead-lettered | lost | duplicate rows | faults injected | seconds | notes |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for o in _REPORT.outcomes:
        lines.append(f"| {o.scenario} | {o.segments} | {o.completed} | {o.dead_lettered} | {o.lost} | "
                     f"{o.duplicate_rows} | {o.faults} | {o.seconds:.1f} | {o.notes} |")
    total_lost = sum(o.lost for o in _REPORT.outcomes)
    total_dup = sum(o.duplicate_rows for o in _REPORT.outcomes)
    lines += ["", f"Segments lost: **{total_lost}**. Duplicate completion rows: **{total_dup}**.", "",
              "\"Duplicate rows\" counts completion rows written more than once for the same upload (the",
              "table's key makes a second row per segment impossible; a second write would overwrite the",
              "first). \"Lost\" is segments with neither a correct output + row nor a dead letter.", ""]
    Path(target).write_text("\n".join(lines), encoding="utf-8")
