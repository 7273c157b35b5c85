"""Segments that kill, hang or stall the model: bounded by MAX_DELIVERIES, STAGE_TIME_LIMITS and
STEREO_STALL_SECONDS, then dead-lettered.

The models are ``tests.support.models:misbehaving``: a pass-through that
SIGKILLs itself, aborts or never returns on inputs holding a marker. Good
segments uploaded beside the bad one must complete; the worker stays up
(the model runs in a child process), or, with ``MODEL_ISOLATION=inline``,
the test restarts it as a supervisor would until the poison is bounded.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.faults.conftest import Outcome, Report, dead_letters, scratch_files, settle, verify
from tests.support.stack import Aws, Proc, Processes, wait_until
from video_worker.keys import build_segment_key
from video_worker.ops.sample import sample_segment

pytestmark = pytest.mark.integration

MISBEHAVING = {"MODEL": "tests.support.models:misbehaving"}


def _upload_marked(aws: Aws, job: str, total: int, marked: dict[int, bytes]) -> dict[int, bytes]:
    """Upload ``total`` segments of ``job``; those in ``marked`` start with their marker."""
    sent = {}
    for i in range(total):
        data = marked.get(i, b"") + sample_segment(20_000 + i, seed=i)
        aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key(job, i, total, "sbs"), Body=data)
        sent[i] = data
    return sent


@pytest.mark.parametrize("marker, signal_name", [(b"POISON", "SIGKILL"), (b"ABORT", "SIGABRT")])
def test_a_segment_that_kills_the_model_is_dead_lettered_and_the_worker_stays_up(
        aws: Aws, procs: Processes, report: Report, marker: bytes, signal_name: str) -> None:
    worker = procs.worker(**MISBEHAVING, TASK_RETRY_BASE_SECONDS="0.5")
    procs.bridge()
    wait_until(lambda: "ready." in worker.log(), 60, "worker ready")
    pid = worker.popen.pid
    started = time.monotonic()
    job = f"poison-{signal_name.lower()}"
    sent = _upload_marked(aws, job, 4, {1: marker})
    [letter] = wait_until(lambda: dead_letters(procs), 120, "the poison's dead letter")
    good = {i: data for i, data in sent.items() if i != 1}
    settle(aws, job, good, 60)
    completed, lost, dups = verify(aws, job, sent, [worker], dead=frozenset({1}))
    report.outcomes.append(Outcome(f"a segment whose model process dies ({signal_name}) on it, among 3 good ones",
                                   len(sent), completed, 1, lost, dups, f"3 x {signal_name} of the model process",
                                   time.monotonic() - started, f"dead letter: {letter['error'][:90]}"))
    assert letter["error_type"] == "WorkerLost" and letter["failed_task"] == "video_worker.infer"
    assert f"killed by {signal_name} while running video_worker.infer (3 times; MAX_DELIVERIES=3)" in letter["error"]
    assert letter["payload"]["segment_index"] == 1 and letter["attempts"] == 3
    assert worker.alive() and worker.popen.pid == pid
    assert (completed, lost, dups) == (3, 0, 0)
    assert scratch_files(procs.tmp / "scratch") == []


def test_a_segment_that_kills_an_inline_model_is_bounded_by_deliveries(
        aws: Aws, procs: Processes, report: Report) -> None:
    """No process boundary: the worker itself dies each time; a supervisor (this test) restarts it.

    One slot: segments held beside the poison by a dying worker die with it each time (and are bounded
    alike); that is what the default ``MODEL_ISOLATION=process`` prevents.
    """
    env = {**MISBEHAVING, "MODEL_ISOLATION": "inline", "BROKER_VISIBILITY_TIMEOUT": "10", "WORKER_CONCURRENCY": "1"}
    procs.bridge(BROKER_VISIBILITY_TIMEOUT="10")
    workers: list[Proc] = [procs.worker("inline-0", **env)]
    started = time.monotonic()
    sent = _upload_marked(aws, "poison-inline", 3, {0: b"POISON"})

    def supervise() -> list[dict[str, object]]:
        if not workers[-1].alive():
            workers.append(procs.worker(f"inline-{len(workers)}", **env))
        return dead_letters(procs)

    [letter] = wait_until(supervise, 240, "the poison's dead letter")
    good = {i: data for i, data in sent.items() if i != 0}
    settle(aws, "poison-inline", good, 90)
    completed, lost, dups = verify(aws, "poison-inline", sent, workers, dead=frozenset({0}))
    restarts = len(workers) - 1
    report.outcomes.append(Outcome("MODEL_ISOLATION=inline: a segment that SIGKILLs the worker, among 2 good ones",
                                   len(sent), completed, 1, lost, dups, f"{restarts} worker deaths",
                                   time.monotonic() - started, f"dead letter: {letter['error'][:90]}",
                                   worker_restarts=restarts))
    assert letter["error_type"] == "WorkerLost" and "delivered 4 times without finishing" in str(letter["error"])
    assert letter["payload"]["segment_index"] == 0  # the segment is in it: replayable once the model is fixed
    assert restarts == 3
    assert (completed, lost, dups) == (2, 0, 0)


def test_a_hung_model_is_killed_at_its_time_limit_and_the_host_keeps_working(
        aws: Aws, procs: Processes, report: Report) -> None:
    env = {**MISBEHAVING, "STAGE_TIME_LIMITS": '{"video_worker.infer": 3}', "TASK_MAX_RETRIES": "1",
           "TASK_RETRY_BASE_SECONDS": "0.5"}
    worker = procs.worker(**env)
    procs.bridge()
    started = time.monotonic()
    sent = _upload_marked(aws, "hang", 4, {2: b"HANG"})
    [letter] = wait_until(lambda: dead_letters(procs), 120, "the hung segment's dead letter")
    good = {i: data for i, data in sent.items() if i != 2}
    settle(aws, "hang", good, 60)
    completed, lost, dups = verify(aws, "hang", sent, [worker], dead=frozenset({2}))
    stop = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    code = worker.popen.wait(60)
    shutdown = time.monotonic() - stop
    report.outcomes.append(Outcome("a model that never returns on one segment (infer limit 3 s), among 3 good ones",
                                   len(sent), completed, 1, lost, dups, "2 hangs, each killed at 3 s",
                                   time.monotonic() - started,
                                   f"dead letter: {letter['error'][:70]}; warm shutdown took {shutdown:.1f}s"))
    assert letter["error_type"] == "StageTimeout" and "exceeded its time limit of 3s" in str(letter["error"])
    assert letter["attempts"] == 2
    assert (completed, lost, dups) == (3, 0, 0)
    assert code == 0
    assert scratch_files(procs.tmp / "scratch") == []


def test_a_model_that_stops_making_progress_is_dead_lettered_after_max_deliveries_in_seconds(
        aws: Aws, procs: Processes, report: Report) -> None:
    """A model that reports progress (``reports_progress``) and stops: killed after ``STEREO_STALL_SECONDS`` (2 s
    here), not at the infer time limit (its default, 1 h); ``ModelStalled`` is a ``WorkerLost``: retried, then
    dead-lettered after ``MAX_DELIVERIES`` (3). Two segments share one model process: the others complete."""
    env = {"MODEL": "tests.support.models:progressing", "STEREO_STALL_SECONDS": "2", "INFER_CONCURRENCY": "2",
           "INFER_PER_PROCESS": "2", "TASK_RETRY_BASE_SECONDS": "0.5"}
    worker = procs.worker(**env)
    procs.bridge()
    wait_until(lambda: "ready." in worker.log(), 60, "worker ready")
    pid = worker.popen.pid
    started = time.monotonic()
    sent = _upload_marked(aws, "stall", 4, {2: b"STALL"})
    [letter] = wait_until(lambda: dead_letters(procs), 120, "the stalled segment's dead letter")
    dead_after = time.monotonic() - started
    good = {i: data for i, data in sent.items() if i != 2}
    settle(aws, "stall", good, 60)
    completed, lost, dups = verify(aws, "stall", sent, [worker], dead=frozenset({2}))
    report.outcomes.append(Outcome("a model that stops making progress on one segment (STEREO_STALL_SECONDS=2, "
                                   "infer limit 1 h), among 3 good ones, 2 segments per model process",
                                   len(sent), completed, 1, lost, dups, "3 stalls, each killed after 2 s",
                                   time.monotonic() - started,
                                   f"dead-lettered after {dead_after:.0f}s: {letter['error'][:70]}"))
    assert letter["error_type"] == "ModelStalled" and letter["failed_task"] == "video_worker.infer"
    assert re.search(r"the model made no progress for \d+s while running video_worker\.infer "
                     r"\(STEREO_STALL_SECONDS=2\) after 3 progress report\(s\)", letter["error"])
    assert "(3 times; MAX_DELIVERIES=3)" in letter["error"]
    assert letter["payload"]["segment_index"] == 2 and letter["attempts"] == 3
    assert worker.log().count("killing model process") == 3
    assert dead_after < 60, "three stalls of 2 s and two short backoffs, not three infer time limits"
    assert worker.alive() and worker.popen.pid == pid
    assert (completed, lost, dups) == (3, 0, 0)
    assert scratch_files(procs.tmp / "scratch") == []


def test_a_full_disk_is_retried_after_cleanup(aws: Aws, procs: Processes, report: Report) -> None:
    """ENOSPC from the first inference of a segment: transient, its files removed, retried, completed."""
    worker = procs.worker(**MISBEHAVING, MISBEHAVE_STATE_DIR=str(procs.tmp / "state"),
                          TASK_RETRY_BASE_SECONDS="0.5")
    procs.bridge()
    started = time.monotonic()
    sent = _upload_marked(aws, "disk-full", 2, {0: b"DISKFULL"})
    settle(aws, "disk-full", sent, 90)
    completed, lost, dups = verify(aws, "disk-full", sent, [worker])
    report.outcomes.append(Outcome("ENOSPC on the first inference of a segment", len(sent), completed, 0, lost, dups,
                                   "1 x ENOSPC", time.monotonic() - started, "DiskFull is transient: retried"))
    assert "scratch disk full (ENOSPC" in worker.log() and "retry 1 in" in worker.log()
    assert (completed, lost, dups) == (2, 0, 0)
    assert scratch_files(procs.tmp / "scratch") == []


def test_a_celery_hard_time_limit_under_prefork_hands_the_message_back_until_it_is_bounded(
        aws: Aws, procs: Processes, report: Report) -> None:
    """``--time-limit`` (prefork kills the pool process): the message is not acked, it comes again;
    after ``MAX_DELIVERIES`` it is dead-lettered. Without ``acks_on_timeout=False`` it was deleted."""
    env = {**MISBEHAVING, "WORKER_POOL": "prefork", "WORKER_CONCURRENCY": "1"}
    worker = procs.worker("prefork", "--time-limit", "4", **env)
    procs.bridge()
    started = time.monotonic()
    sent = _upload_marked(aws, "hard-limit", 2, {0: b"HANG"})
    [letter] = wait_until(lambda: dead_letters(procs), 180, "the hung segment's dead letter")
    settle(aws, "hard-limit", {1: sent[1]}, 60)
    completed, lost, dups = verify(aws, "hard-limit", sent, [worker], dead=frozenset({0}))
    report.outcomes.append(Outcome("WORKER_POOL=prefork with `--time-limit 4`: a model that never returns, among a "
                                   "good segment", len(sent), completed, 1, lost, dups, "3 hard time limits",
                                   time.monotonic() - started, f"dead letter: {letter['error'][:80]}"))
    assert letter["error_type"] == "WorkerLost" and "delivered 4 times without finishing" in letter["error"]
    assert worker.log().count("Hard time limit (4") == 3
    assert (completed, lost, dups) == (1, 0, 0)
