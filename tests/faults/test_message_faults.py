"""Faults at the broker: receive errors, bad task messages, failed retry publishes and dead-letter writes.

Each fault is injected at one named call (service, action, queue, caller) by
the AWS proxy, deterministically; each scenario asserts the end state: every
good segment completed with correct bytes, every failure a dead letter with
its reason, nothing lost, the worker up all along (the same process).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest

from bench.awsproxy import AwsProxy, Fault, call, json_error, s3_error
from tests.faults.conftest import Outcome, Report, dead_letters, settle, upload, verify
from tests.support.stack import Aws, Proc, Processes, wait_until

pytestmark = pytest.mark.integration

SQS_500 = json_error("InternalError", 500)
#: botocore's attempts per call (``retries={"max_attempts": 3}`` is 3 retries after the first): a fault this many
#: times in a row makes the call itself fail.
BOTOCORE_ATTEMPTS = 4


def _fault(match: Any, times: int, error: tuple[int, bytes, str], **kwargs: Any) -> Fault:
    status, body, ctype = error
    return Fault(match, times=times, status=status, body=body, content_type=ctype, **kwargs)


def _through_proxy(proxy: AwsProxy) -> dict[str, str]:
    """Every AWS call of the process, the broker's included, through the proxy."""
    return {"AWS_ENDPOINT_URL": proxy.endpoint}


def test_receive_errors_on_the_task_queue_do_not_stop_the_worker(
        aws: Aws, procs: Processes, proxy: AwsProxy, report: Report) -> None:
    """Finding 1: a 5xx (kombu's async client gives ``[]``) or a reset connection on the worker's ReceiveMessage."""
    receive = call("sqs", "ReceiveMessage", target=f"{aws.prefix}-tasks", caller="worker")
    errors = proxy.add(_fault(receive, 3, SQS_500, skip=1))
    resets = proxy.add(Fault(receive, times=2, drop=True))
    worker = procs.worker(**_through_proxy(proxy))
    procs.bridge()
    wait_until(lambda: errors.hits == 3 and resets.hits == 2, 90, "three 500s and two resets on ReceiveMessage")
    started = time.monotonic()
    sent = upload(aws, "receive-errors", 4)
    settle(aws, "receive-errors", sent, 90)
    completed, lost, dups = verify(aws, "receive-errors", sent, [worker])
    report.outcomes.append(Outcome("worker's ReceiveMessage on the task queue: 3 x HTTP 500, then 2 reset "
                                   "connections", len(sent), completed, 0, lost, dups, "5 failed receives",
                                   time.monotonic() - started, "receive retried with backoff; worker kept consuming"))
    assert worker.alive() and "Unrecoverable error" not in worker.log()
    assert "ReceiveMessage on" in worker.log() and "works again" in worker.log()
    assert (completed, lost, dups) == (4, 0, 0)


def _celery_message(task: str, body: Any, *, content_type: str = "application/json") -> str:
    """A broker message as kombu's SQS transport writes it (Celery protocol 2), with any ``body``."""
    task_id = str(uuid.uuid4())
    envelope = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(), "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": {"lang": "js", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
                    "group": None, "retries": 0, "eta": None, "expires": None},
        "properties": {"correlation_id": task_id, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                       "delivery_tag": task_id, "delivery_info": {"exchange": "", "routing_key": "tasks"}},
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode()


BAD_MESSAGES = {
    "body of the wrong shape": (_celery_message("video_worker.download", {"a": 1}), "is not [args, kwargs, embed]"),
    "not a Celery message": ("hello, not JSON", "not a Celery task message"),
    "unknown task": (_celery_message("video_worker.nope", [[{}], {}, {}]), "unknown task 'video_worker.nope'"),
    "wrong arguments": (_celery_message("video_worker.infer", [[{}, {}], {"x": 1}, {}]),
                        "takes one payload argument, got 2 positional and 1 keyword"),
    "not JSON content": (_celery_message("video_worker.download", [[{}], {}, {}],
                                         content_type="application/x-python-serialize"), "is not accepted"),
}


def test_bad_task_messages_become_dead_letters_and_the_worker_carries_on(
        aws: Aws, procs: Processes, report: Report) -> None:
    """Finding 2 (and 5's unknown names and wrong arguments): each bad message dead-lettered with its raw body."""
    worker = procs.worker()
    wait_until(lambda: "ready." in worker.log(), 60, "worker ready")
    pid = worker.popen.pid
    queue_url = aws.sqs.get_queue_url(QueueName=f"{aws.prefix}-tasks")["QueueUrl"]
    started = time.monotonic()
    for body, _ in BAD_MESSAGES.values():
        aws.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    procs.bridge()
    sent = upload(aws, "after-bad", 3)
    letters = wait_until(lambda: (got := dead_letters(procs)) and len(got) >= len(BAD_MESSAGES) and got, 90,
                         "a dead letter per bad message")
    settle(aws, "after-bad", sent, 60)
    completed, lost, dups = verify(aws, "after-bad", sent, [worker])
    report.outcomes.append(Outcome(f"bad task messages on the broker queue: {', '.join(BAD_MESSAGES)}",
                                   len(sent) + len(BAD_MESSAGES), completed, len(letters), lost, dups,
                                   f"{len(BAD_MESSAGES)} bad messages", time.monotonic() - started,
                                   "each dead-lettered with its raw body and reason; worker never restarted"))
    assert len(letters) == len(BAD_MESSAGES)
    for name, (_body, reason) in BAD_MESSAGES.items():
        [letter] = [d for d in letters if reason in d["error"]] or [None]
        assert letter is not None, f"{name}: no dead letter with {reason!r} in {[d['error'] for d in letters]}"
        assert letter["error_type"] == "BadMessage" and letter["raw_message"]["body"], name
    assert worker.alive() and worker.popen.pid == pid and "Unrecoverable error" not in worker.log()
    wait_until(lambda: aws.queue_depth(queue_url) == 0, 30, "the broker queue to be empty")
    assert (completed, lost, dups) == (3, 0, 0)


def _download_fails_then_its_retry_is_refused(aws: Aws, procs: Processes, proxy: AwsProxy, job: str,
                                              refusals: int, patience: str) -> tuple[Fault, Fault, Proc]:
    """Segment 0 of ``job``: its GET fails (503, every botocore attempt), then its retry's SendMessage fails."""
    get = call("s3", "GetObject", caller="worker", path=f"/segments/{job}/00000_")
    slow_down = proxy.add(_fault(get, BOTOCORE_ATTEMPTS, s3_error("SlowDown", 503)))
    refused = proxy.add(_fault(call("sqs", "SendMessage", target=f"{aws.prefix}-tasks", caller="worker"), refusals,
                               SQS_500))
    worker = procs.worker(**_through_proxy(proxy), TASK_RETRY_BASE_SECONDS="1", PUBLISH_PATIENCE_SECONDS=patience)
    procs.bridge()
    return slow_down, refused, worker


def test_a_retry_whose_publish_fails_is_published_again_not_lost(
        aws: Aws, procs: Processes, proxy: AwsProxy, report: Report) -> None:
    """Finding 3: S3 503 on a download, then the broker refuses the retry's SendMessage (4 x 500)."""
    slow_down, refused, worker = _download_fails_then_its_retry_is_refused(aws, procs, proxy, "retry-publish", 4, "30")
    started = time.monotonic()
    sent = upload(aws, "retry-publish", 2)
    settle(aws, "retry-publish", sent, 120)
    completed, lost, dups = verify(aws, "retry-publish", sent, [worker])
    report.outcomes.append(Outcome("S3 503 on a download, then 4 x HTTP 500 on the retry's SendMessage", len(sent),
                                   completed, 0, lost, dups, f"{slow_down.hits} x 503, {refused.hits} x 500",
                                   time.monotonic() - started, "the retry was published on the 5th attempt"))
    assert (slow_down.hits, refused.hits) == (BOTOCORE_ATTEMPTS, 4)
    assert "publishing the retry of video_worker.download failed" in worker.log()
    assert "reject requeue=False" not in worker.log()
    assert (completed, lost, dups) == (2, 0, 0)


def test_a_retry_the_broker_keeps_refusing_goes_back_to_the_queue(
        aws: Aws, procs: Processes, proxy: AwsProxy, report: Report) -> None:
    """Finding 3: the broker refuses the retry for longer than the publish patience: the message comes again."""
    _, refused, worker = _download_fails_then_its_retry_is_refused(aws, procs, proxy, "retry-returned", 1000, "2")
    started = time.monotonic()
    sent = upload(aws, "retry-returned", 1)
    wait_until(lambda: "the message goes back to the queue" in worker.log(), 90, "the message to be handed back")
    refused.times = refused.hits  # the broker is back
    settle(aws, "retry-returned", sent, 120)
    completed, lost, dups = verify(aws, "retry-returned", sent, [worker])
    report.outcomes.append(Outcome("the broker refuses a retry's SendMessage beyond the publish patience", len(sent),
                                   completed, 0, lost, dups, f"{refused.hits} x 500 on SendMessage",
                                   time.monotonic() - started, "message handed back (visible again), then completed"))
    assert (completed, lost, dups) == (1, 0, 0)


def test_a_dead_letter_the_queue_refuses_is_written_later_not_lost(
        aws: Aws, procs: Processes, proxy: AwsProxy, report: Report) -> None:
    """A permanent failure (source object gone) whose dead-letter SendMessage fails 3 times."""
    from video_worker.celery_app import create_app
    from video_worker.keys import build_segment_key
    from video_worker.segments import Segment, s3_uri
    from video_worker.worker.chain import build_chain

    refused = proxy.add(_fault(call("sqs", "SendMessage", target=f"{aws.prefix}-dead-letters", caller="worker"),
                               BOTOCORE_ATTEMPTS * 2, SQS_500))  # two failed puts, then it goes through
    worker = procs.worker(**_through_proxy(proxy), PUBLISH_PATIENCE_SECONDS="30")
    started = time.monotonic()
    gone = Segment(job_id="dlq-refused", segment_index=0, total_segments=1, mode="sbs",
                              segment_s3_uri=s3_uri(aws.resources.input_bucket, build_segment_key("dlq-refused", 0, 1, "sbs")))
    build_chain(gone, create_app(aws.settings())).apply_async()
    found = wait_until(lambda: dead_letters(procs), 90, "the dead letter")
    report.outcomes.append(Outcome("HTTP 500 on the dead-letter SendMessages of a permanent failure", 1, 0,
                                   len(found), 1 - len(found), 0, f"{refused.hits} x 500",
                                   time.monotonic() - started, "dead letter written by its third put"))
    assert refused.hits == BOTOCORE_ATTEMPTS * 2 and len(found) == 1 and found[0]["error_type"] == "ObjectNotFound"
    assert "dead letter for video_worker.download failed" in worker.log()
    assert worker.alive()
