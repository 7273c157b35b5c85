"""Prometheus metrics, scraped over HTTP from a real worker (threads, then prefork) and a real bridge.

What ran is known exactly (good segments, a rejected one, a retried one, a duplicate event, a malformed
message, a key that is not a segment), so every count is asserted against it and against what AWS holds.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.conftest import dead_letters
from tests.support.events import s3_notification_body
from tests.support.flower import free_port
from tests.support.stack import Aws, Processes, wait_until
from video_worker.keys import build_segment_key
from video_worker.ops.sample import sample_segment

pytestmark = pytest.mark.integration

MISBEHAVING = "tests.support.models:misbehaving"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples | None:
    """Every sample at ``http://127.0.0.1:port/metrics``, by (name, sorted labels); None if not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _put(aws: Aws, job: str, data: bytes, index: int = 0, total: int = 1) -> str:
    key = build_segment_key(job, index, total, "sbs")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
    return key


def _excerpt(port: int, prefix: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return "\n".join(line for line in lines if line.startswith(prefix) and "_created" not in line)


def test_worker_and_bridge_metrics_count_what_ran(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    worker_port, bridge_port = free_port(), free_port()
    worker = procs.worker("metered", METRICS_PORT=str(worker_port), MODEL=MISBEHAVING,
                          MISBEHAVE_STATE_DIR=str(tmp_path / "state"), TASK_RETRY_BASE_SECONDS="0.5")
    bridge = procs.bridge(BRIDGE_METRICS_PORT=str(bridge_port))
    wait_until(lambda: scrape(worker_port) and scrape(bridge_port), 60, "both endpoints")

    good = [sample_segment(30_000 + 1_000 * i, seed=i) for i in range(3)]
    keys = [_put(aws, "m-good", data, i, 3) for i, data in enumerate(good)]
    rejected = b"REJECT" + sample_segment(21_000, seed=7)
    retried = b"DISKFULL" + sample_segment(22_000, seed=8)
    _put(aws, "m-rejected", rejected)
    _put(aws, "m-retried", retried)
    aws.sqs.send_message(QueueUrl=aws.resources.queue_url, MessageBody="this is not an S3 event")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key="segments/m-bad/00003_00003_sbs.mp4", Body=b"x")
    wait_until(lambda: aws.completion_count("m-good") == 3 and aws.completion_count("m-retried") == 1, 120, "rows")
    # A duplicate delivery of the first segment's event, once its row is there: skipped before any download.
    head = aws.s3.head_object(Bucket=aws.resources.input_bucket, Key=keys[0])
    aws.sqs.send_message(QueueUrl=aws.resources.queue_url, MessageBody=s3_notification_body(
        aws.resources.input_bucket, keys[0], size=head["ContentLength"], etag=head["ETag"].strip('"')))

    def settled() -> Samples | None:
        w = scrape(worker_port)
        ok = w and (value(w, "video_worker_segments_total", outcome="completed") == 4
                    and value(w, "video_worker_segments_total", outcome="dead_lettered") == 1
                    and value(w, "video_worker_segments_total", outcome="skipped") == 1
                    and value(w, "video_worker_segments_in_progress") == 0)
        return w if ok else None

    w = wait_until(settled, 90, "the worker's counts")
    wait_until(lambda: aws.queue_depth(aws.resources.raw_dlq_url) == 1, 60, "the malformed message in the DLQ")
    b = wait_until(lambda: (s := scrape(bridge_port)) and value(s, "video_worker_bridge_messages_total",
                                                                 outcome="published") == 6 and s, 30, "bridge")

    [letter] = dead_letters(procs)
    assert letter["payload"]["job_id"] == "m-rejected"
    rows = sum(aws.completion_count(job) for job in ("m-good", "m-retried", "m-rejected"))
    assert value(w, "video_worker_segments_total", outcome="completed") == rows == 4
    runs = {"download": 6, "infer": 6, "upload": 4, "record": 4}  # good 3, rejected, retried (infer twice), dup
    for stage, count in runs.items():
        assert value(w, "video_worker_stage_seconds_count", stage=stage) == count, stage
        assert value(w, "video_worker_stage_seconds_bucket", stage=stage, le="+Inf") == count, stage
        assert value(w, "video_worker_stage_seconds_sum", stage=stage) > 0, stage
        assert value(w, "video_worker_retries_total", stage=stage) == (1 if stage == "infer" else 0), stage
    # In: every download (the retried infer fetched its input again: a failed stage removes it); out: outputs.
    assert value(w, "video_worker_bytes_total", direction="in") == sum(map(len, good)) + len(rejected) + 2 * len(
        retried)
    assert value(w, "video_worker_bytes_total", direction="out") == sum(map(len, good)) + len(retried)
    assert value(w, "video_worker_model_seconds_total") > 0

    # Bridge: 6 messages with a chain (3 good, rejected, retried, the duplicate); the bad key's message skipped;
    # the malformed one counted at each of its 2 receives (maxReceiveCount 2) before the redrive took it.
    assert value(b, "video_worker_bridge_messages_total", outcome="published") == 6
    assert value(b, "video_worker_bridge_messages_total", outcome="invalid") == 2
    assert value(b, "video_worker_bridge_skipped_records_total", reason="not_segment_key") == 1
    skipped_messages = value(b, "video_worker_bridge_messages_total", outcome="skipped")
    test_events = value(b, "video_worker_bridge_skipped_records_total", reason="test_event")
    assert skipped_messages == 1 + test_events  # plus the s3:TestEvent of the notification's set-up, if sent
    assert worker.alive() and bridge.alive()
    print(_excerpt(worker_port, "video_worker_"), _excerpt(bridge_port, "video_worker_"), sep="\n")


def test_segments_in_progress_while_they_run(aws: Aws, procs: Processes) -> None:
    """Two segments on a 3-slot worker with one model: both held (one infers, one waits for the model), then none."""
    port = free_port()
    procs.worker("busy", METRICS_PORT=str(port), MODEL="simulated", SIMULATED_INFER_SECONDS="3")
    procs.bridge()
    wait_until(lambda: scrape(port), 60, "the endpoint")
    for i in range(2):
        _put(aws, "busy", sample_segment(20_000, seed=i), i, 2)
    wait_until(lambda: (s := scrape(port)) and value(s, "video_worker_segments_in_progress") == 2, 60, "2 in progress")
    # A row is counted while ``record`` runs, the gauge drops once it has ended: wait for both.
    done = wait_until(lambda: (s := scrape(port)) and value(s, "video_worker_segments_total", outcome="completed") == 2
                      and value(s, "video_worker_segments_in_progress") == 0 and s, 60, "both completed")
    assert value(done, "video_worker_model_seconds_total") >= 2 * 3 * 0.9


def test_prefork_children_add_up_in_the_main_process(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """``-P prefork -c 2``, each child replaced after 2 segments: one endpoint, the sum over every child."""
    port = free_port()
    worker = procs.worker("forked", "-P", "prefork", "-c", "2", "--max-tasks-per-child", "2", WORKER_POOL="prefork",
                          METRICS_PORT=str(port), MODEL=MISBEHAVING)
    procs.bridge()
    wait_until(lambda: scrape(port), 60, "the endpoint")
    good = [sample_segment(25_000 + 500 * i, seed=i) for i in range(5)]
    for i, data in enumerate(good):
        _put(aws, "forked", data, i, 5)
    rejected = b"REJECT" + sample_segment(20_000, seed=9)
    _put(aws, "forked-rejected", rejected)

    def settled() -> Samples | None:
        s = scrape(port)
        ok = s and (value(s, "video_worker_segments_total", outcome="completed") == 5
                    and value(s, "video_worker_segments_total", outcome="dead_lettered") == 1
                    and value(s, "video_worker_stage_seconds_count", stage="record") == 5)
        return s if ok else None

    s = wait_until(settled, 180, "the counts of every child")
    assert aws.completion_count("forked") == 5 and len(dead_letters(procs)) == 1
    assert value(s, "video_worker_stage_seconds_count", stage="download") == 6
    assert value(s, "video_worker_stage_seconds_count", stage="infer") == 6
    assert value(s, "video_worker_bytes_total", direction="in") == sum(map(len, good)) + len(rejected)
    assert value(s, "video_worker_bytes_total", direction="out") == sum(map(len, good))
    assert value(s, "video_worker_model_seconds_total") > 0
    assert wait_until(lambda: (x := scrape(port)) is not None and value(x, "video_worker_segments_in_progress") == 0,
                      30, "no segment in progress")
    # The counts are in the files of at least 3 children (6 segments, at most 2 per child), the main process's
    # own file aside; a child that exited left its counters but not its live gauge.
    files = Path(tmp_path / "scratch" / f".metrics-{port}")
    pids = {int(p.stem.rsplit("_", 1)[1]) for p in files.glob("counter_*.db")} - {worker.popen.pid}
    assert len(pids) >= 3, sorted(p.name for p in files.iterdir())
    live = {int(p.stem.rsplit("_", 1)[1]) for p in files.glob("gauge_livesum_*.db")}
    assert len(live - {worker.popen.pid}) <= 2, "only the running children's live gauges"
    assert worker.alive()
    print(_excerpt(port, "video_worker_segments"), _excerpt(port, "video_worker_bytes"), sep="\n")


def test_a_metrics_port_in_use_stops_the_worker_with_one_line(procs: Processes) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = procs.worker("clash", METRICS_PORT=str(port))
        assert worker.popen.wait(120) == 2
    assert f"video-worker: METRICS_PORT {port}: Address already in use" in worker.log()
