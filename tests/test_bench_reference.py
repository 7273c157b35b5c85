"""The benchmark's yardstick and its accounting (``bench/``), on a tiny workload against a real moto server.

The reference loop must produce the project's outputs and rows, and the proxy
must attribute every request to a service and an action (S3 by REST shape),
so that BENCHMARKS.md's requests-per-segment figures add up. No timing is
asserted here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from bench import logs, reference
from bench.awsproxy import AwsProxy, count
from bench.awsproxy.actions import json_action, s3_action
from tests.support.stack import Aws
from video_worker.adapters.aws import make_client
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.ops.sample import sample_segment

MIB = 1024 * 1024


@pytest.fixture
def proxy(emulator: str) -> Iterator[AwsProxy]:
    p = AwsProxy(emulator).start()
    yield p
    p.stop()


@pytest.mark.integration
def test_reference_loop_processes_each_segment_with_six_counted_requests(
    aws: Aws, proxy: AwsProxy, tmp_path: Path
) -> None:
    job = "bench-ref"
    sent = {i: sample_segment(20_000 + i, seed=i) for i in range(3)}
    for i, data in sent.items():
        aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key(job, i, 3, "sbs"), Body=data)
    env = {**aws.resources.env(), "AWS_ENDPOINT_URL": proxy.endpoint, "AWS_REGION": "us-east-1",
           "MODEL": "passthrough"}

    def three_rows() -> bool:
        return sum(1 for r in proxy.requests() if r.action == "PutItem" and r.status == 200) >= 3

    done = reference.run(env, tmp_path, stop=three_rows, wait_seconds=1)

    assert done == 3
    for i, data in sent.items():
        assert aws.output(build_output_segment_key(job, i)) == data
    rows = {int(r["segment_index"]["N"]): r for r in aws.completion_rows(job)}
    assert sorted(rows) == [0, 1, 2]
    assert all(int(r["total_segments"]["N"]) == 3 for r in rows.values())

    requests = proxy.requests()
    counts = count(requests)
    # Every request is attributed to its caller, a service and a named action.
    assert {r.caller for r in requests} == {"testing"}
    assert all(r.service in ("s3", "sqs", "dynamodb") and r.action not in ("", "?") for r in requests), counts
    # Per segment: receive, HEAD + GET (boto3's managed download), PUT, PutItem, delete. The raw queue also
    # holds the s3:TestEvent that configuring the notification sent: one receive and one delete more.
    receives = counts[("sqs", "ReceiveMessage")]
    assert receives in (3, 4)
    assert counts == Counter({
        ("sqs", "ReceiveMessage"): receives,
        ("sqs", "DeleteMessage"): receives,
        ("s3", "HeadObject"): 3,
        ("s3", "GetObject"): 3,
        ("s3", "PutObject"): 3,
        ("dynamodb", "PutItem"): 3,
    })
    assert all(r.detail.startswith("max=1 wait=1 got=") for r in requests if r.action == "ReceiveMessage")
    assert {r.target for r in requests if r.service == "sqs"} == {aws.resources.queue_url.rsplit("/", 1)[-1]}
    # Each segment's bytes cross once in and once out (an upload may add a few bytes of checksum framing).
    total = sum(len(d) for d in sent.values())
    assert sum(r.received for r in requests if r.action == "GetObject") == total
    assert total <= sum(r.sent for r in requests if r.action == "PutObject") <= total + 1024 * len(sent)


@pytest.mark.integration
def test_proxy_names_multipart_transfers(aws: Aws, proxy: AwsProxy, tmp_path: Path) -> None:
    s3 = make_client("s3", aws.settings(aws_endpoint_url=proxy.endpoint).aws)
    src = tmp_path / "big.mp4"
    src.write_bytes(sample_segment(11 * MIB, seed=3))
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2)
    s3.upload_file(str(src), aws.resources.output_bucket, "jobs/x/segments/0.mp4", Config=config)
    s3.download_file(aws.resources.output_bucket, "jobs/x/segments/0.mp4", str(tmp_path / "back.mp4"),
                     Config=config)

    assert (tmp_path / "back.mp4").read_bytes() == src.read_bytes()
    counts = count(proxy.requests())
    assert counts[("s3", "CreateMultipartUpload")] == 1
    assert counts[("s3", "UploadPart")] == 3
    assert counts[("s3", "CompleteMultipartUpload")] == 1
    assert counts[("s3", "HeadObject")] == 1
    assert counts[("s3", "GetObject")] == 3  # ranged GETs of 5 MiB
    assert sum(r.received for r in proxy.requests() if r.action == "GetObject") == 11 * MIB
    # A HEAD's Content-Length (the object's size) survives the proxy.
    assert s3.head_object(Bucket=aws.resources.output_bucket, Key="jobs/x/segments/0.mp4")["ContentLength"] == 11 * MIB


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("GET", "/in/segments/j/00000_00001_sbs.mp4", "", {}, "GetObject"),
        ("HEAD", "/in/segments/j/a.mp4", "", {}, "HeadObject"),
        ("PUT", "/out/jobs/j/segments/0.mp4", "", {}, "PutObject"),
        ("PUT", "/out/k", "", {"x-amz-copy-source": "/in/k"}, "CopyObject"),
        ("POST", "/out/k", "uploads", {}, "CreateMultipartUpload"),
        ("PUT", "/out/k", "partNumber=2&uploadId=abc", {}, "UploadPart"),
        ("POST", "/out/k", "uploadId=abc", {}, "CompleteMultipartUpload"),
        ("DELETE", "/out/k", "uploadId=abc", {}, "AbortMultipartUpload"),
        ("DELETE", "/out/k", "", {}, "DeleteObject"),
        ("POST", "/out", "delete", {}, "DeleteObjects"),
        ("GET", "/out", "list-type=2&prefix=jobs%2F", {}, "ListObjectsV2"),
        ("PUT", "/in", "notification", {}, "PutBucketNotificationConfiguration"),
        ("HEAD", "/in", "", {}, "HeadBucket"),
        ("PUT", "/in", "", {}, "CreateBucket"),
        ("GET", "/", "", {}, "ListBuckets"),
    ],
)
def test_s3_actions_are_named_by_rest_shape(method: str, path: str, query: str, headers: dict[str, str],
                                            expected: str) -> None:
    assert s3_action(method, path, query, headers)[0] == expected


def test_json_and_query_protocol_actions_name_their_target() -> None:
    body = b'{"QueueUrl": "http://h:1/123456789012/video-worker-tasks", "MaxNumberOfMessages": 2}'
    action, target, params = json_action("sqs", "AmazonSQS.ReceiveMessage", body, "/")
    assert (action, target, params["MaxNumberOfMessages"]) == ("ReceiveMessage", "video-worker-tasks", 2)
    action, target, _ = json_action("sqs", "", b"Action=DeleteMessage&ReceiptHandle=x", "/123456789012/q-events")
    assert (action, target) == ("DeleteMessage", "q-events")
    action, target, _ = json_action("sns", "", b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At", "/")
    assert (action, target) == ("Publish", "t")
    action, target, _ = json_action("dynamodb", "DynamoDB_20120810.PutItem", b'{"TableName": "rows"}', "/")
    assert (action, target) == ("PutItem", "rows")


def test_worker_log_gives_each_stage_its_times() -> None:
    text = "\n".join([
        "[2026-11-25 09:00:00,000: INFO/MainProcess] Task video_worker.download[a-1] received",
        "[2026-11-25 09:00:00,500: INFO/ForkPoolWorker-1] Task video_worker.download[a-1] succeeded in 0.4s: "
        "{'segment': {'job_id': 'j', 'segment_index': 3, 'total_segments': 4}}",
        "[2026-11-25 09:00:00,600: INFO/MainProcess] Task video_worker.infer[b-2] received",
        "[2026-11-25 09:00:01,700: INFO/ForkPoolWorker-2] Task video_worker.infer[b-2] succeeded in 1.0s: "
        "{'segment': {'job_id': 'j', 'segment_index': 3, 'total_segments': 4}, 'output': {}}",
    ])
    runs = logs.parse(text, "host1")
    chain = logs.chains(runs)[("j", 3)]
    assert set(chain) == {"video_worker.download", "video_worker.infer"}
    stats = {s.stage: s for s in logs.stage_stats(runs)}
    assert stats["download"].wait == pytest.approx(0.1, abs=1e-3)
    assert stats["infer"].hop == pytest.approx(0.1, abs=1e-3)
    assert stats["infer"].wait == pytest.approx(0.1, abs=1e-3)
    assert stats["infer"].run == pytest.approx(1.0, abs=1e-3)
    assert stats["infer"].other_host == 0


def test_stereo_model_alone_converts_back_to_back_in_a_fresh_process(tmp_path: Path) -> None:
    from bench.stereo_alone import alone
    from video_worker.models.stereo.synthetic import write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip, seconds=0.4, width=64, height=48, fps=10, audio=False, gop=10)
    run = alone([clip, clip], "sbs", tmp_path, "alone", {})

    assert [(r.frames, r.output_size) for r in run.reports] == [(4, (128, 48)), (4, (128, 48))]
    # each segment after the first is given the one before it as context, as the worker does
    assert [r.context_frames for r in run.reports] == [0, 4] and len(set(run.digests)) == 2
    assert run.wall > 0 and run.cpu > 0 and run.cv_threads >= 1 and run.peak_rss > 0
