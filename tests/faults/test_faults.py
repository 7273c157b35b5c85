"""Each scenario asserts the end state: every segment has exactly one completion row
and correct output bytes, or is a dead letter with its error. Figures go to RELIABILITY.md."""

from __future__ import annotations

import json
import os
import random
import re
import time

import pytest

from tests.awsproxy import AwsProxy, Fault, json_error, s3_error
from tests.conftest import Aws, Proc, Processes, wait_until
from tests.faults.conftest import Outcome, Report, absorbed, scratch_files, settle, upload, verify
from video_worker.events import s3_notification_body
from video_worker.submit import segment_key

pytestmark = pytest.mark.integration


def _direct_broker(aws: Aws) -> dict[str, str]:
    """Broker straight to the emulator while AWS_ENDPOINT_URL goes through the proxy."""
    return {"CELERY_BROKER_URL": "sqs://" + aws.endpoint.removeprefix("http://"), "BROKER_USE_TLS": "false"}


def test_worker_killed_mid_inference_is_redelivered(aws: Aws, procs: Processes, report: Report) -> None:
    slow = {"MODEL": "simulated", "SIMULATED_INFER_SECONDS": "3", "BROKER_VISIBILITY_TIMEOUT": "10"}
    first = procs.worker("doomed", "-c", "1", **slow)
    procs.bridge(BROKER_VISIBILITY_TIMEOUT="10")  # the deployment's setting, for every process
    started = time.monotonic()
    sent = upload(aws, "sigkill", 3)
    wait_until(lambda: "Task video_worker.infer[" in first.log(), 60, "an inference to start")
    first.kill_hard()
    assert "inferred 'sigkill'" not in first.log(), "killed before any inference finished"
    second = procs.worker("survivor", "-c", "1", **slow)
    settle(aws, "sigkill", sent, 120)
    completed, lost, dups = verify(aws, "sigkill", sent, [first, second])
    report.outcomes.append(Outcome("worker SIGKILLed mid-`infer`, then restarted", len(sent), completed, 0,
                                   lost, dups, "1 kill -9 (whole process group)", time.monotonic() - started,
                                   "message visible again after the 10 s visibility timeout"))
    assert (completed, lost, dups) == (3, 0, 0)


def test_s3_errors_and_dynamodb_throttling_are_retried(
    aws: Aws, procs: Processes, proxy: AwsProxy, report: Report
) -> None:
    def s3(method: str) -> Fault:
        status, body, ctype = s3_error("SlowDown" if method == "GET" else "InternalError",
                                       503 if method == "GET" else 500)
        return Fault(lambda c: c.service == "s3" and c.method == method, times=7, status=status, body=body,
                     content_type=ctype)

    def ddb(action: str, error: str) -> Fault:
        status, body, ctype = json_error(f"com.amazonaws.dynamodb.v20120810#{error}")
        return Fault(lambda c: c.service == "dynamodb" and c.action == action, times=7, status=status,
                     body=body, content_type=ctype)

    for fault in (s3("GET"), s3("PUT"), ddb("GetItem", "ThrottlingException"),
                  ddb("PutItem", "ProvisionedThroughputExceededException")):
        proxy.add(fault)
    # One slot: the errors hit one call after another, so botocore's 3 attempts run out and the
    # task-level retry runs too (with 3 slots the 7 errors of a kind spread over 3 calls and
    # botocore alone absorbs them).
    env = {"AWS_ENDPOINT_URL": proxy.endpoint, "TASK_RETRY_BASE_SECONDS": "1", "WORKER_CONCURRENCY": "1",
           **_direct_broker(aws)}
    worker = procs.worker(**env)
    procs.bridge()
    started = time.monotonic()
    sent = upload(aws, "throttled", 5)
    settle(aws, "throttled", sent, 180)
    completed, lost, dups = verify(aws, "throttled", sent, [worker])
    retries = len(re.findall(r"retry \d+ in \d+s", worker.log()))
    report.outcomes.append(Outcome("S3 503 SlowDown / 500 and DynamoDB throttling on the first calls",
                                   len(sent), completed, 0, lost, dups,
                                   f"{proxy.injected()} error responses", time.monotonic() - started,
                                   f"{retries} task retries with SQS DelaySeconds backoff"))
    assert proxy.injected() == 28
    assert retries > 0
    assert (completed, lost, dups) == (5, 0, 0)


def test_bridge_killed_between_publish_and_delete(
    aws: Aws, procs: Processes, proxy: AwsProxy, report: Report
) -> None:
    worker = procs.worker()
    bridge = procs.bridge(AWS_ENDPOINT_URL=proxy.endpoint, **_direct_broker(aws))
    wait_until(lambda: "s3:TestEvent" in bridge.log() and aws.queue_depth(aws.resources.queue_url) == 0,
               60, "the bucket's test event to be handled and deleted")
    # The bridge's next delete (one DeleteMessageBatch per receive) hangs, then the bridge dies:
    # its message comes back.
    proxy.add(Fault(lambda c: c.service == "sqs" and c.action == "DeleteMessageBatch", times=1, delay=30,
                    drop=True))
    started = time.monotonic()
    sent = upload(aws, "bridge-kill", 1)
    wait_until(lambda: "published chain for 'bridge-kill'" in bridge.log(), 60, "first publish")
    wait_until(lambda: proxy.injected() == 1, 30, "the delete to hang")
    bridge.kill_hard()
    again = procs.start("bridge-2", bridge.popen.args, procs.env())  # type: ignore[arg-type]
    wait_until(lambda: "published chain for 'bridge-kill'" in again.log(), 60, "duplicate publish")
    settle(aws, "bridge-kill", sent, 60)
    wait_until(lambda: "skipping 'bridge-kill'/0" in worker.log() or "already recorded 'bridge-kill'/0"
               in worker.log(), 60, "the duplicate chain to be recognised")
    completed, lost, dups = verify(aws, "bridge-kill", sent, [worker])
    report.outcomes.append(Outcome("bridge SIGKILLed between publishing a chain and deleting its message",
                                   1, completed, 0, lost, dups, "1 hung DeleteMessageBatch + kill -9",
                                   time.monotonic() - started, "the duplicate chain was skipped"))
    assert (completed, lost, dups) == (1, 0, 0)


def test_aws_endpoint_goes_away_several_times_mid_run(
        aws: Aws, procs: Processes, proxy: AwsProxy, report: Report) -> None:
    """Five outages of 3-6 s at random moments (seeded): new connections refused, open ones reset.

    Every AWS call of the worker and the bridge, the broker's included, goes through the proxy.
    """
    rng = random.Random(int(os.environ.get("OUTAGE_SEED", "20261201")))
    via_proxy = {"AWS_ENDPOINT_URL": proxy.endpoint, "BROKER_VISIBILITY_TIMEOUT": "20",
                 "MODEL": "simulated", "SIMULATED_INFER_SECONDS": "0.3"}
    worker = procs.worker(**via_proxy)
    bridge = procs.bridge(**via_proxy)
    started = time.monotonic()
    sent = upload(aws, "outage", 40)
    outages: list[float] = []
    for _ in range(5):
        done = aws.completion_count("outage")
        if done >= len(sent):
            break
        wait_until(lambda done=done: aws.completion_count("outage") > done, 120, "progress between outages")
        outages.append(rng.uniform(3.0, 6.0))
        time.sleep(rng.uniform(0.0, 1.0))  # a random moment after some progress
        proxy.outage(outages[-1])
    settle(aws, "outage", sent, 300)
    completed, lost, dups = verify(aws, "outage", sent, [worker])
    report.outcomes.append(Outcome(f"AWS endpoint (S3, DynamoDB, SQS, broker) gone {len(outages)} times "
                                   f"({', '.join(f'{s:.1f}' for s in outages)} s), open connections reset",
                                   len(sent), completed, 0, lost, dups, f"{len(outages)} outages", time.monotonic() - started,
                                   "worker and bridge reconnect by themselves; BROKER_VISIBILITY_TIMEOUT=20"))
    assert len(outages) >= 3, "the outages came while segments were in progress"
    assert worker.alive() and bridge.alive() and "Unrecoverable error" not in worker.log()
    assert (completed, lost, dups) == (40, 0, 0)


def test_same_segment_twice_and_two_events_for_one_upload(aws: Aws, procs: Processes, report: Report) -> None:
    worker = procs.worker()
    procs.bridge()
    started = time.monotonic()
    first = upload(aws, "twice", 2, size=30_000)
    settle(aws, "twice", first, 60)
    # Two more events for one upload (at-least-once delivery) ...
    key = segment_key("twice", 0, 2, "sbs")
    etag = aws.s3.head_object(Bucket=aws.resources.input_bucket, Key=key)["ETag"].strip('"')
    body = s3_notification_body(aws.resources.input_bucket, key, size=len(first[0]), etag=etag)
    for _ in range(2):
        aws.sqs.send_message(QueueUrl=aws.resources.queue_url, MessageBody=body)
    wait_until(lambda: worker.log().count("skipping 'twice'/0: already completed") == 2, 60, "duplicates skipped")
    # ... and the same segment uploaded again with new content.
    second = upload(aws, "twice", 2, size=31_000)
    wait_until(lambda: len({r["source_etag"]["S"] for r in aws.completion_rows("twice")}) == 2
               and all(r["source_etag"]["S"] != etag for r in aws.completion_rows("twice")), 60, "re-uploads done")
    completed, lost, _ = verify(aws, "twice", second, [worker])
    recorded = re.findall(r"(?<!already )recorded 'twice'/(\d+)\b", worker.log())
    dups = len(recorded) - 2 * len(second)  # each segment recorded once per distinct upload
    report.outcomes.append(Outcome("same segment uploaded twice; two extra events for one upload",
                                   len(second), completed, 0, lost, dups, "2 duplicate events, 2 re-uploads",
                                   time.monotonic() - started, "duplicates skipped before download"))
    assert (completed, lost, dups) == (2, 0, 0)


def test_prefetch_and_warm_shutdown_run_nothing_twice(
    aws: Aws, procs: Processes, report: Report, tmp_path: object
) -> None:
    """Prefetched messages outlive the visibility timeout; then one worker is stopped with SIGTERM."""
    slow = {"MODEL": "simulated", "SIMULATED_INFER_SECONDS": "2", "BROKER_VISIBILITY_TIMEOUT": "10",
            "WORKER_PREFETCH_MULTIPLIER": "4"}
    a = procs.worker("host-a", "-c", "1", scratch=procs.tmp / "a", **slow)
    b = procs.worker("host-b", "-c", "1", scratch=procs.tmp / "b", **slow)
    procs.bridge(BROKER_VISIBILITY_TIMEOUT="10")
    started = time.monotonic()
    sent = upload(aws, "prefetch", 10)
    wait_until(lambda: a.log().count("inferred 'prefetch'") >= 2, 120, "host A to be busy")
    a.popen.terminate()  # warm shutdown: finish the running task, hand the reserved ones back
    assert a.popen.wait(60) == 0
    settle(aws, "prefetch", sent, 180)
    completed, lost, dups = verify(aws, "prefetch", sent, [a, b])
    logs = a.log() + b.log()
    inferred = re.findall(r"inferred 'prefetch'/(\d+)\b", logs)
    reruns = len(inferred) - len(set(inferred))
    report.outcomes.append(Outcome("prefetch beyond the visibility timeout; SIGTERM (warm shutdown) of one "
                                   "of two workers", len(sent), completed, 0, lost, dups, "1 SIGTERM",
                                   time.monotonic() - started, f"{reruns} inferences run twice"))
    assert (completed, lost, dups, reruns) == (10, 0, 0, 0)


LOAD_SEGMENTS = int(os.environ.get("LOAD_SEGMENTS", "500"))


def test_load_run_through_two_worker_processes(aws: Aws, procs: Processes, report: Report) -> None:
    workers = [procs.worker("load-a", scratch=procs.tmp / "a"), procs.worker("load-b", scratch=procs.tmp / "b")]
    procs.bridge()
    started = time.monotonic()
    sent = upload(aws, "load", LOAD_SEGMENTS, size=16 * 1024)
    settle(aws, "load", sent, 900)
    elapsed = time.monotonic() - started
    completed, lost, dups = verify(aws, "load", sent, workers)
    shares = [len(re.findall(r"(?<!already )recorded 'load'/", w.log())) for w in workers]
    report.outcomes.append(Outcome(f"load: {LOAD_SEGMENTS} segments of 16 KiB, two worker processes",
                                   len(sent), completed, 0, lost, dups, "none", elapsed,
                                   f"{len(sent) / elapsed:.1f} segments/s; rows written by each worker: {shares}; "
                                   f"{absorbed('load', workers)} duplicate deliveries absorbed"))
    assert (completed, lost, dups) == (LOAD_SEGMENTS, 0, 0)
    assert all(share > 0 for share in shares), "both workers took part"


def test_parser_fuzz_never_raises_and_never_lets_an_unsafe_job_id_in(report: Report) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from video_worker.errors import MalformedMessage
    from video_worker.events import parse_message
    from video_worker.payloads import check_job_id

    tried = {"inputs": 0, "segments": 0}
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=20)
    hostile_keys = st.text(min_size=0, max_size=300).map(lambda t: "segments/" + t + "/00000_00002_sbs.mp4")

    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(json_values.map(json.dumps),
                     hostile_keys.map(lambda k: s3_notification_body("in-bucket", k, size=1, etag="e")),
                     st.binary(max_size=200)))
    def run(body: str | bytes) -> None:
        tried["inputs"] += 1
        try:
            parsed = parse_message(body, "in-bucket")
        except MalformedMessage:
            return
        for event in parsed.segments:
            tried["segments"] += 1
            check_job_id(event.payload.job_id)
            assert "/" not in event.payload.job_id and ".." not in event.payload.job_id

    run()
    report.outcomes.append(Outcome(f"parser fuzz (hypothesis): {tried['inputs']} random JSON documents, "
                                   "S3 events with hostile keys, raw bytes", 0, 0, 0, 0, 0, "none", 0.0,
                                   f"0 crashes, 0 unsafe job ids; {tried['segments']} inputs parsed as segments"))
    assert tried["inputs"] >= 1500


def test_random_kills_of_workers_and_bridge_during_a_run(aws: Aws, procs: Processes, report: Report) -> None:
    """An independent-client-style chaos run: kill -9 a random process at random moments, restart it."""
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261125")))
    env = {"BROKER_VISIBILITY_TIMEOUT": "10", "MODEL": "simulated", "SIMULATED_INFER_SECONDS": "0.05"}
    roles: dict[str, Proc] = {
        "worker-a": procs.worker("worker-a", scratch=procs.tmp / "a", **env),
        "worker-b": procs.worker("worker-b", scratch=procs.tmp / "b", **env),
        "bridge": procs.bridge(**env),
    }
    everyone = list(roles.values())
    started = time.monotonic()
    sent = upload(aws, "chaos", 200, size=8 * 1024)
    kills = []
    for round_ in range(5):
        done = aws.completion_count("chaos")
        if done >= len(sent):
            break
        wait_until(lambda done=done: aws.completion_count("chaos") > done, 120, "progress")
        victim = rng.choice(sorted(roles))
        roles[victim].kill_hard()
        kills.append(victim)
        if victim == "bridge":
            roles[victim] = procs.start(f"bridge-{round_}", roles[victim].popen.args, procs.env(**env))  # type: ignore[arg-type]
        else:
            roles[victim] = procs.worker(f"{victim}-{round_}", scratch=procs.tmp / victim[-1], **env)
        everyone.append(roles[victim])
    settle(aws, "chaos", sent, 600)
    completed, lost, dups = verify(aws, "chaos", sent, everyone)
    report.outcomes.append(Outcome("chaos: 200 segments, random kill -9 of workers and the bridge, restarted",
                                   len(sent), completed, 0, lost, dups, f"{len(kills)} kills: {', '.join(kills)}",
                                   time.monotonic() - started,
                                   f"{absorbed('chaos', everyone)} duplicate deliveries absorbed"))
    assert len(kills) >= 3
    assert (completed, lost, dups) == (200, 0, 0)


def test_permanent_errors_end_as_dead_letters_not_losses(
    aws: Aws, procs: Processes, proxy: AwsProxy, report: Report
) -> None:
    """Access denied on one output, one oversized segment, one missing source: 3 dead letters, 1 completion."""
    import subprocess
    import sys

    from video_worker.app import build_chain, create_app
    from video_worker.payloads import VideoWorkerPayload, s3_uri

    status, body, ctype = s3_error("AccessDenied", 403)
    proxy.add(Fault(lambda c: c.service == "s3" and c.method == "PUT" and "/jobs/perm/segments/1.mp4" in c.path,
                    times=1000, status=status, body=body, content_type=ctype))
    env = {"AWS_ENDPOINT_URL": proxy.endpoint, "MAX_SEGMENT_BYTES": "100000", **_direct_broker(aws)}
    worker = procs.worker(**env)
    procs.bridge()
    started = time.monotonic()
    sent = upload(aws, "perm", 2, size=30_000)  # index 1: its output may not be written
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=segment_key("perm-big", 0, 1, "sbs"), Body=b"x" * 100_001)
    missing = VideoWorkerPayload(job_id="perm-gone", segment_index=0, total_segments=1, mode="sbs",
                                 segment_s3_uri=s3_uri(aws.resources.input_bucket, segment_key("perm-gone", 0, 1, "sbs")))
    build_chain(missing, create_app(aws.settings())).apply_async()

    def letters() -> list[dict[str, object]]:
        out = subprocess.run([sys.executable, "-m", "video_worker", "dlq", "list", "--json"], env=procs.env(),
                             capture_output=True, text=True, timeout=60, check=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    found = wait_until(lambda: (got := letters()) and len(got) >= 3 and got, 90, "three dead letters")
    settle(aws, "perm", {0: sent[0]}, 60)
    kinds = sorted(str(letter["error_type"]) for letter in found)
    completed, _, dups = verify(aws, "perm", {0: sent[0]}, [worker])
    report.outcomes.append(Outcome("permanent errors: output AccessDenied, segment over MAX_SEGMENT_BYTES, "
                                   "source object missing", 4, completed, len(found), 4 - completed - len(found),
                                   dups, "403 on one output key", time.monotonic() - started,
                                   f"dead letters: {', '.join(kinds)}; each with 1 attempt"))
    assert kinds == ["AccessDenied", "ObjectNotFound", "SegmentTooLarge"]
    assert all(letter["attempts"] == 1 for letter in found)
    assert (completed, dups) == (1, 0)
    assert scratch_files(procs.tmp / "scratch") == [], "failed stages leave no files"
