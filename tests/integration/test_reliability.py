"""Nothing lost, nothing done twice, nothing let in — against a real moto server and workers."""

from __future__ import annotations

import base64
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.events import s3_notification_body
from tests.support.stack import Aws, Processes, wait_until
from video_worker.celery_app import create_app
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.ops.sample import sample_segment
from video_worker.segments import Segment, s3_uri
from video_worker.worker.chain import build_chain

pytestmark = pytest.mark.integration


def _cli(procs: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "video_worker", *args], env=procs.env(), capture_output=True,
                          text=True, timeout=120)


def _dead_letters(procs: Processes) -> list[dict[str, object]]:
    out = _cli(procs, "dlq", "list", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_duplicate_events_for_one_upload_give_one_completion(aws: Aws, procs: Processes) -> None:
    worker = procs.worker()
    procs.bridge()
    data = sample_segment(80_000, seed=5)
    key = build_segment_key("dup-events", 0, 1, "sbs")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
    etag = aws.s3.head_object(Bucket=aws.resources.input_bucket, Key=key)["ETag"].strip('"')
    # S3 delivers at least once: the same event arrives twice more, later.
    out_key = build_output_segment_key("dup-events", 0)
    wait_until(lambda: aws.completion_rows("dup-events"), 60, "first completion")
    body = s3_notification_body(aws.resources.input_bucket, key, size=len(data), etag=etag)
    for _ in range(2):
        aws.sqs.send_message(QueueUrl=aws.resources.queue_url, MessageBody=body)
    wait_until(lambda: worker.log().count("skipping 'dup-events'/0: already completed") == 2, 60, "two skips")
    rows = aws.completion_rows("dup-events")
    assert len(rows) == 1 and rows[0]["source_etag"] == {"S": etag}
    assert aws.output(out_key) == data
    assert len(re.findall(r"(?<!already )recorded 'dup-events'/0", worker.log())) == 1
    assert worker.log().count("inferred 'dup-events'/0") == 1, "duplicates stopped before download"


def test_two_workers_racing_on_one_segment_end_with_one_output_and_one_row(aws: Aws, procs: Processes) -> None:
    a = procs.worker("race-a", scratch=procs.tmp / "a")
    b = procs.worker("race-b", scratch=procs.tmp / "b")
    data = sample_segment(700_000, seed=8)
    key = build_segment_key("race", 0, 1, "sbs")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
    payload = Segment(job_id="race", segment_index=0, total_segments=1, mode="sbs",
                                 segment_s3_uri=s3_uri(aws.resources.input_bucket, key))
    app = create_app(aws.settings())
    for _ in range(4):  # four deliveries of the same work at once
        build_chain(payload, app).apply_async()
    logs = lambda: a.log() + b.log()  # noqa: E731
    wait_until(lambda: len(re.findall(r"(?:skipping|already recorded|(?<!already )recorded) 'race'/0", logs()))
               == 4, 90, "all four chains to finish")
    rows = aws.completion_rows("race")
    assert len(rows) == 1
    assert aws.output(build_output_segment_key("race", 0)) == data
    assert len(re.findall(r"(?<!already )recorded 'race'/0", logs())) == 1


def test_a_new_upload_of_the_same_key_is_processed_again(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    procs.worker()
    procs.bridge()
    key = build_segment_key("reupload", 0, 1, "anaglyph")
    out_key = build_output_segment_key("reupload", 0)
    first, second = sample_segment(60_000, seed=1), sample_segment(61_000, seed=2)
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=first)
    wait_until(lambda: aws.output(out_key) == first, 60, "first output")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=second)
    wait_until(lambda: aws.output(out_key) == second, 60, "second output")
    etag = aws.s3.head_object(Bucket=aws.resources.input_bucket, Key=key)["ETag"].strip('"')
    rows = wait_until(lambda: [r for r in aws.completion_rows("reupload") if r["source_etag"]["S"] == etag],
                      30, "row of the new upload")
    assert len(aws.completion_rows("reupload")) == 1 and rows


def test_failed_chain_is_dead_lettered_then_replayed(aws: Aws, procs: Processes) -> None:
    worker = procs.worker()
    key = build_segment_key("not-yet", 2, 3, "sbs")
    payload = Segment(job_id="not-yet", segment_index=2, total_segments=3,
                                 segment_s3_uri=s3_uri(aws.resources.input_bucket, key), mode="sbs")
    build_chain(payload, create_app(aws.settings())).apply_async()
    letters = wait_until(lambda: _dead_letters(procs), 60, "dead letter")
    assert len(letters) == 1
    letter = letters[0]
    assert letter["failed_task"] == "video_worker.download"
    assert letter["error_type"] == "ObjectNotFound" and "404" in str(letter["error"])
    assert letter["attempts"] == 1, "a permanent error is not retried"
    assert letter["payload"]["job_id"] == "not-yet"  # type: ignore[index]
    listing = _cli(procs, "dlq", "list")
    assert f"{letter['id']}" in listing.stdout and "1 dead letter(s)" in listing.stdout
    assert "failed for good after 1 attempt(s)" in worker.log()

    data = sample_segment(33_000, seed=3)
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
    replay = _cli(procs, "dlq", "replay", str(letter["id"]))
    assert replay.returncode == 0, replay.stderr
    assert f"replayed {letter['id']}" in replay.stdout
    assert wait_until(lambda: aws.output(build_output_segment_key("not-yet", 2)), 60, "replayed output") == data
    assert len(wait_until(lambda: aws.completion_rows("not-yet"), 30, "row")) == 1
    assert _dead_letters(procs) == []
    assert _cli(procs, "dlq", "replay", "nonexistent").returncode == 1


def test_segments_over_the_size_limit_are_refused_before_download(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    procs.worker(MAX_SEGMENT_BYTES="50000", scratch=tmp_path / "scratch")
    procs.bridge()
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("huge", 0, 1, "sbs"), Body=b"x" * 50_001)
    letters = wait_until(lambda: _dead_letters(procs), 60, "dead letter")
    assert letters[0]["error_type"] == "SegmentTooLarge"
    assert "50001 bytes; the limit is 50000" in str(letters[0]["error"])
    assert not [p for p in (tmp_path / "scratch").rglob("*.mp4")], "nothing was downloaded"
    assert aws.completion_rows("huge") == []


def test_pickled_task_message_is_rejected_never_executed(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    worker = procs.worker()
    marker = tmp_path / "pwned"
    evil = (subprocess.check_call, (["touch", str(marker)],))

    class Exploit:
        def __reduce__(self) -> tuple[object, ...]:
            return evil

    body = base64.b64encode(pickle.dumps(((Exploit(),), {}, {}))).decode()
    envelope = {
        "body": body, "content-encoding": "binary", "content-type": "application/x-python-serialize",
        "headers": {"lang": "py", "task": "video_worker.download", "id": "evil-1", "root_id": "evil-1",
                    "parent_id": None, "group": None, "retries": 0, "eta": None, "expires": None},
        "properties": {"correlation_id": "evil-1", "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                       "delivery_tag": "evil-1", "delivery_info": {"exchange": "", "routing_key": "tasks"}},
    }
    queue_url = aws.sqs.create_queue(QueueName=f"{aws.prefix}-tasks")["QueueUrl"]
    aws.sqs.send_message(QueueUrl=queue_url, MessageBody=base64.b64encode(json.dumps(envelope).encode()).decode())
    wait_until(lambda: "application/x-python-serialize" in worker.log(), 60, "refusal in the log")
    assert not marker.exists()
    assert worker.alive()
    # The worker keeps working afterwards.
    data = sample_segment(20_000)
    key = build_segment_key("after-pickle", 0, 1, "sbs")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
    build_chain(Segment(job_id="after-pickle", segment_index=0, total_segments=1,
                                   segment_s3_uri=s3_uri(aws.resources.input_bucket, key), mode="sbs"),
                create_app(aws.settings())).apply_async()
    assert wait_until(lambda: aws.output(build_output_segment_key("after-pickle", 0)), 60, "output") == data


def test_credentials_never_reach_the_logs(aws: Aws, procs: Processes) -> None:
    secret = "s3cr3tVALUEnotTObeLOGGED"
    host_port = aws.endpoint.removeprefix("http://")
    worker = procs.worker(CELERY_BROKER_URL=f"sqs://testing:{secret}@{host_port}", AWS_SECRET_ACCESS_KEY=secret)
    bridge = procs.bridge(AWS_SECRET_ACCESS_KEY=secret)
    wait_until(lambda: "ready." in worker.log(), 60, "worker ready")
    wait_until(lambda: "bridge polling" in bridge.log(), 60, "bridge polling")
    bad = subprocess.run(
        [sys.executable, "-m", "video_worker", "bridge"],
        env={**procs.env(), "CELERY_BROKER_URL": f"redis://user:{secret}@host"}, capture_output=True, text=True,
        timeout=60)
    assert bad.returncode == 2 and "CELERY_BROKER_URL" in bad.stderr
    for text in (worker.log(), bridge.log(), bad.stderr):
        assert secret not in text
