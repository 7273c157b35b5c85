"""End to end: a real moto server, `video-worker bridge` and `celery -A video_worker worker`.

Segments are uploaded to the input bucket; S3 notifies the raw queue; the
bridge publishes chains over the SQS broker; workers write outputs and rows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.flower import ready
from tests.support.stack import Aws, Processes, wait_until
from video_worker.celery_app import create_app
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.ops.sample import sample_segment
from video_worker.ops.submit import submit_segment
from video_worker.segments import Segment, s3_uri
from video_worker.worker.chain import build_chain

pytestmark = pytest.mark.integration


def _upload(aws: Aws, tmp: Path, job_id: str, index: int, total: int, mode: str, size: int) -> bytes:
    data = sample_segment(size, seed=index)
    path = tmp / f"in-{index}.mp4"
    path.write_bytes(data)
    submit_segment(aws.s3, aws.resources.input_bucket, path, job_id=job_id, index=index, total=total, mode=mode)
    return data


def test_uploaded_segments_come_out_identical_with_one_row_each(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    worker = procs.worker()
    bridge = procs.bridge()
    jobs = {"job-plain": "sbs", "job with spaces+plus": "anaglyph", "jöb-ünïcode-視頻": "sbs"}
    sent: dict[tuple[str, int], bytes] = {}
    for job_id, mode in jobs.items():
        for index in range(2):
            sent[(job_id, index)] = _upload(aws, tmp_path, job_id, index, 2, mode, size=96 * 1024 + index)
    # One segment over the multipart threshold (8 MiB) to exercise streaming transfers.
    sent[("job-large", 0)] = _upload(aws, tmp_path, "job-large", 0, 1, "sbs", size=9 * 1024 * 1024 + 3)

    for (job_id, index), data in sent.items():
        key = build_output_segment_key(job_id, index)
        got = wait_until(lambda key=key: aws.output(key), 90, f"output {key}")
        assert got == data, f"output bytes of {key} differ from the input"
    for job_id in {job for job, _ in sent}:
        rows = wait_until(
            lambda job_id=job_id: (r := aws.completion_rows(job_id)) and
            len(r) == sum(1 for j, _ in sent if j == job_id) and r,
            30, f"rows of {job_id}",
        )
        indexes = sorted(int(r["segment_index"]["N"]) for r in rows)
        assert indexes == sorted(i for j, i in sent if j == job_id)
        for row in rows:
            index = int(row["segment_index"]["N"])
            assert row["output_s3_uri"]["S"] == s3_uri(
                aws.resources.output_bucket, build_output_segment_key(job_id, index)
            )
            assert int(row["total_segments"]["N"]) == (1 if job_id == "job-large" else 2)
            assert int(row["completed_at"]["N"]) > 1_700_000_000
    wait_until(lambda: aws.queue_depth(aws.resources.queue_url) == 0, 30, "raw queue drained")
    assert worker.alive() and bridge.alive()
    assert "published chain for 'job with spaces+plus'/1 of 2" in bridge.log()


def test_skipped_and_malformed_messages_produce_nothing_and_processes_keep_running(
    aws: Aws, procs: Processes, tmp_path: Path
) -> None:
    worker = procs.worker()
    bridge = procs.bridge()
    q = aws.resources.queue_url
    # Malformed: not JSON, and JSON of no known shape -> left for the redrive policy.
    aws.sqs.send_message(QueueUrl=q, MessageBody="this is not json")
    aws.sqs.send_message(QueueUrl=q, MessageBody=json.dumps({"hello": "world"}))
    # Nothing to do: a test event and a non-segment key -> deleted with a logged reason.
    aws.sqs.send_message(
        QueueUrl=q,
        MessageBody=json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": aws.resources.input_bucket}),
    )
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"x" * 100)
    for key in ("segments/job-bad/00003_00003_sbs.mp4", "segments/job-bad/00000_00001_3d.mp4",
                "segments/../00000_00001_sbs.mp4", "segments/job-bad/notes.mp4"):
        aws.s3.upload_file(str(bad), aws.resources.input_bucket, key)

    wait_until(lambda: aws.queue_depth(aws.resources.raw_dlq_url) == 2, 60, "malformed messages in the DLQ")
    dead = aws.sqs.receive_message(QueueUrl=aws.resources.raw_dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(["this is not json", json.dumps({"hello": "world"})])
    wait_until(lambda: aws.queue_depth(q) == 0, 30, "raw queue drained")
    log = bridge.log()
    assert log.count("is malformed") >= 2
    assert "s3:TestEvent" in log
    assert "segment index is not below total segments" in log
    assert "mode '3d' is not anaglyph or sbs" in log

    # Still alive and still working: a valid segment goes through afterwards.
    data = _upload(aws, tmp_path, "job-after", 0, 1, "sbs", size=50_000)
    key = build_output_segment_key("job-after", 0)
    assert wait_until(lambda: aws.output(key), 60, "output after bad input") == data
    assert aws.completion_rows("job-bad") == []
    assert aws.s3.list_objects_v2(Bucket=aws.resources.output_bucket, Prefix="jobs/job-bad/")["KeyCount"] == 0
    assert worker.alive() and bridge.alive()


def test_chain_spread_over_two_hosts_without_shared_disk(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """Host A and host B have separate scratch dirs and separate queues, so each
    stage lands on the host the test chooses; outputs must still be right."""
    prefix = f"{aws.prefix}-"
    host_a = procs.worker("host-a", "-Q", "host-a", scratch=tmp_path / "scratch-a")
    host_b = procs.worker("host-b", "-Q", "host-b", scratch=tmp_path / "scratch-b")
    app = create_app(aws.settings(scratch_dir=tmp_path / "unused"))
    placements = {
        # job: the host of download, infer, upload, record
        "spread-infer": ("host-a", "host-b", "host-b", "host-b"),
        "spread-upload": ("host-a", "host-a", "host-b", "host-a"),
    }
    sent = {}
    for job_id, hosts in placements.items():
        data = sample_segment(200_000, seed=len(job_id))
        key = build_segment_key(job_id, 0, 1, "sbs")
        aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
        payload = Segment(
            job_id=job_id, segment_index=0, total_segments=1,
            segment_s3_uri=s3_uri(aws.resources.input_bucket, key), mode="sbs",
        )
        signature = build_chain(payload, app)
        for task, host in zip(signature.tasks, hosts, strict=True):
            task.set(queue=host)
        signature.apply_async()
        sent[job_id] = data
    for job_id, data in sent.items():
        key = build_output_segment_key(job_id, 0)
        assert wait_until(lambda key=key: aws.output(key), 90, f"output {key}") == data
        wait_until(lambda job_id=job_id: len(aws.completion_rows(job_id)) == 1, 30, f"row of {job_id}")
    assert "input of spread-infer/0 is not on this host" in host_b.log()
    assert "output of spread-upload/0 is not on this host" in host_b.log()
    # B cleaned up after itself; nothing of B's is left in its scratch dir.
    assert not any(p.is_file() for p in (tmp_path / "scratch-b").rglob("*"))
    assert host_a.alive() and host_b.alive()
    assert prefix  # queues were namespaced per test


def _stage_lines(log: str, stage: str) -> set[tuple[str, int]]:
    """(job, index) of every successful ``stage`` in a worker's log."""
    pattern = rf"Task video_worker\.{stage}\[[0-9a-f-]+\] succeeded in .*'job_id': '([^']*)', 'segment_index': (\d+)"
    return {(job, int(index)) for job, index in re.findall(pattern, log)}


def test_hosts_sharing_the_queue_keep_each_segment_on_one_host(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """Two hosts (separate scratch dirs, each its own accelerator) on the default queue:
    every segment's four stages run on the host that downloaded it, each input is
    fetched once, and both hosts take work."""
    env = {"MODEL": "simulated", "SIMULATED_INFER_SECONDS": "0.3"}
    hosts = [procs.worker(name, scratch=tmp_path / name, **env) for name in ("gpu-a", "gpu-b")]
    for host in hosts:
        wait_until(lambda host=host: ready(host), 30, f"{host.name} ready")
    procs.bridge()
    sent = {("shared", i): _upload(aws, tmp_path, "shared", i, 10, "sbs", size=50_000 + i) for i in range(10)}
    for (job_id, index), data in sent.items():
        key = build_output_segment_key(job_id, index)
        assert wait_until(lambda key=key: aws.output(key), 90, f"output {key}") == data
    wait_until(lambda: len(aws.completion_rows("shared")) == 10, 30, "10 rows")

    logs = [host.log() for host in hosts]
    taken = [_stage_lines(log, "download") for log in logs]
    assert taken[0] and taken[1], "both hosts took segments"
    assert taken[0] | taken[1] == set(sent) and not taken[0] & taken[1]
    for log, mine in zip(logs, taken, strict=True):
        for stage in ("infer", "upload", "record"):
            assert _stage_lines(log, stage) == mine, f"{stage} ran where the segment was downloaded"
        assert log.count("continued on this host") == 3 * len(mine)
        assert "is not on this host" not in log, "no input fetched twice, no inference run twice"
