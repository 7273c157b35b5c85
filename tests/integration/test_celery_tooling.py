"""Every stage is a Celery task to Celery's tooling, also when chain affinity runs it: signals, tracing,
``inspect active``, ``control revoke`` (real workers on a moto server).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import dead_letters
from tests.support.stack import Aws, Processes, wait_until
from video_worker.celery_app import create_app
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.ops.sample import sample_segment
from video_worker.segments import Segment, s3_uri
from video_worker.stages import STAGE_NAMES
from video_worker.worker.chain import build_chain

pytestmark = pytest.mark.integration


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _put(aws: Aws, job: str, data: bytes, index: int = 0, total: int = 1) -> Segment:
    key = build_segment_key(job, index, total, "sbs")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
    return Segment(job_id=job, segment_index=index, total_segments=total, mode="sbs",
                   segment_s3_uri=s3_uri(aws.resources.input_bucket, key))


@pytest.mark.parametrize("affinity", ["on", "off"])
def test_one_segment_is_one_trace_of_four_task_spans_in_order(aws: Aws, procs: Processes, tmp_path: Path,
                                                              affinity: str) -> None:
    """OpenTelemetry's Celery instrumentation and the SDK's in-memory exporter, in a real worker (``-I``): the
    same trace whether chain affinity runs the stages or Celery publishes each one."""
    spans_file = tmp_path / "spans.jsonl"
    worker = procs.worker("traced", "-I", "tests.support.otel_trace", OTEL_TEST_SPANS=str(spans_file),
                          CHAIN_AFFINITY=affinity)
    procs.bridge()
    _put(aws, "traced", sample_segment(30_000))
    wait_until(lambda: aws.completion_rows("traced"), 60, "the row")
    runs = wait_until(lambda: (r := [s for s in _lines(spans_file) if s["name"].startswith("run/")])
                      and len(r) >= 4 and r, 30, "four run spans")
    runs.sort(key=lambda s: s["start"])
    assert [s["name"] for s in runs] == [f"run/{name}" for name in STAGE_NAMES]
    assert len({s["trace_id"] for s in runs}) == 1, "one trace for the segment"
    if affinity == "on":  # one slot runs them; published, the next may start before the last span ends
        assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(runs)), "one after the other"
    publishes = {s["span_id"]: s for s in _lines(spans_file) if s["name"].startswith("apply_async/")}
    for before, stage in itertools.pairwise(runs):  # each stage links to the one before, as Celery's do
        producer = publishes[stage["parent_id"]]
        assert producer["parent_id"] == before["span_id"]
    assert worker.alive()


def test_signals_fire_for_every_stage_with_its_own_id(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """A ``-I`` module records prerun/postrun/success/failure/retry; three segments: fine, rejected, retried."""
    log = tmp_path / "signals.jsonl"
    procs.worker("signalled", "-I", "tests.support.signal_log", SIGNAL_LOG=str(log),
                 MODEL="tests.support.models:misbehaving", MISBEHAVE_STATE_DIR=str(tmp_path / "state"),
                 TASK_RETRY_BASE_SECONDS="0.5")
    procs.bridge()
    _put(aws, "sig-ok", sample_segment(20_000))
    _put(aws, "sig-reject", b"REJECT" + sample_segment(20_000))
    _put(aws, "sig-retry", b"DISKFULL" + sample_segment(20_000, seed=2))
    wait_until(lambda: aws.completion_rows("sig-ok") and aws.completion_rows("sig-retry"), 90, "two rows")
    wait_until(lambda: dead_letters(procs), 60, "the rejected segment's dead letter")
    records = wait_until(lambda: (r := _lines(log)) and Counter(x["signal"] for x in r)["task_postrun"] >= 11
                         and r, 30, "every postrun")
    by_signal = Counter((x["signal"], x["task"]) for x in records)
    for name in STAGE_NAMES:
        assert by_signal[("task_prerun", name)] == by_signal[("task_postrun", name)] >= 2, name
    assert by_signal[("task_success", "video_worker.record")] == 2
    assert by_signal[("task_failure", "video_worker.infer")] == 1, "the rejected segment"
    assert by_signal[("task_retry", "video_worker.infer")] == 1, "the full disk, retried"
    ids = {x["id"] for x in records if x["signal"] == "task_prerun"}
    assert len(ids) == sum(v for (s, _), v in by_signal.items() if s == "task_prerun") - 1, \
        "each stage with its own id (the retried infer runs twice with the same id)"


def test_inspect_active_lists_the_stage_that_runs(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("busy", MODEL="simulated", SIMULATED_INFER_SECONDS="6")
    procs.bridge()
    _put(aws, "busy", sample_segment(20_000))
    wait_until(lambda: "video_worker.infer[" in worker.log() and "continued on this host" in worker.log(), 60,
               "infer to start")
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "video_worker", "inspect", "active", "--json"],
                         env=procs.env(), capture_output=True, text=True, timeout=60)
    active = [task for tasks in json.loads(out.stdout.strip().splitlines()[-1]).values() for task in tasks]
    assert "video_worker.infer" in {task["name"] for task in active}, out.stdout


def test_a_stage_revoked_before_it_starts_stops_the_segment_there(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("revoking", MODEL="simulated", SIMULATED_INFER_SECONDS="2")
    wait_until(lambda: " ready." in worker.log(), 60, "the worker")
    chain = build_chain(_put(aws, "revoked", sample_segment(20_000)), create_app(aws.settings()))
    chain.freeze()
    upload_id = chain.tasks[2].id
    revoke = subprocess.run([sys.executable, "-m", "celery", "-A", "video_worker", "control", "revoke", upload_id],
                            env=procs.env(), capture_output=True, text=True, timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    wait_until(lambda: "revoked" in worker.log() or "tasks flagged as revoked" in worker.log(), 30,
               "the worker to hear of the revoke")
    chain.apply_async()
    [letter] = wait_until(lambda: dead_letters(procs), 60, "the revoked segment's dead letter")
    assert letter["error_type"] == "Revoked" and letter["task_id"] == upload_id
    assert letter["payload"]["job_id"] == "revoked", "replayable: the segment is in it"
    assert aws.completion_rows("revoked") == [] and aws.output(build_output_segment_key("revoked", 0)) is None


def test_celerys_time_limit_applies_to_each_stage_in_the_threads_pool(aws: Aws, procs: Processes) -> None:
    """The threads pool enforces no time limit; ``--time-limit 3`` is each stage's limit there (the hung one)."""
    procs.worker("limited", "--time-limit", "3", MODEL="tests.support.models:misbehaving", TASK_MAX_RETRIES="0")
    procs.bridge()
    _put(aws, "limit-ok", sample_segment(20_000))
    _put(aws, "limit-hung", b"HANG" + sample_segment(20_000))
    [letter] = wait_until(lambda: dead_letters(procs), 60, "the hung segment's dead letter")
    assert letter["error_type"] == "StageTimeout" and letter["failed_task"] == "video_worker.infer"
    assert "time limit of 3s" in letter["error"] and letter["payload"]["job_id"] == "limit-hung"
    wait_until(lambda: aws.completion_rows("limit-ok"), 60, "the good segment's row")
