"""Processes killed mid-run (SIGKILL of a worker or the bridge, random kill -9s, warm shutdown):
every segment still ends with one row and correct bytes."""


from __future__ import annotations

import inspect
import json
import os
import random
import re
import time

import pytest

from bench.awsproxy import AwsProxy, Fault
from tests.faults.conftest import Outcome, Report, absorbed, direct_broker, settle, upload, verify
from tests.support.stack import Aws, Proc, Processes, wait_until
from video_worker.ops.provision import provision

pytestmark = pytest.mark.integration

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


def test_bridge_killed_between_publish_and_delete(
    aws: Aws, procs: Processes, proxy: AwsProxy, report: Report
) -> None:
    worker = procs.worker()
    bridge = procs.bridge(AWS_ENDPOINT_URL=proxy.endpoint, **direct_broker(aws))
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


def _as_provisioned_for_production(aws: Aws) -> None:
    """The raw event queue with ``provision``'s own defaults (60 s visibility, 3 receives), not the fixture's 2 s
    and 2 receives (which make malformed messages reach the DLQ quickly in other tests).

    A bridge killed during its 20 s long poll leaves the poll running in the emulator: it takes the messages that
    arrive meanwhile, again each time they become visible. With 2 s visibility and 2 receives it moves unpublished
    S3 events to the DLQ within seconds (seen here as 2-10 segments never converted); with a visibility longer
    than the long poll, as provisioned, they come back once, after 60 s, to the bridge that replaced it."""
    defaults = inspect.signature(provision).parameters
    dlq_arn = aws.sqs.get_queue_attributes(QueueUrl=aws.resources.raw_dlq_url,
                                           AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.sqs.set_queue_attributes(QueueUrl=aws.resources.queue_url, Attributes={
        "VisibilityTimeout": str(defaults["visibility_timeout"].default),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(defaults["max_receive_count"].default)})})


def test_random_kills_of_workers_and_bridge_during_a_run(aws: Aws, procs: Processes, report: Report) -> None:
    """An independent-client-style chaos run: kill -9 a random process at random moments, restart it."""
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261125")))
    _as_provisioned_for_production(aws)
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
