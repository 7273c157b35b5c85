"""Chain affinity (``video_worker/worker/affinity.py``): the rest of a chain runs where its files are, each stage
through Celery's own tracer, so its signals fire with its own id.

Unit scope: the stages run against in-process moto; the first task is traced as a worker traces it (its
``__trace__``, which Celery builds with ``build_tracer``); what would be published goes to Celery's in-memory
broker and is read back from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import signals
from celery.app.trace import build_tracer
from celery.exceptions import Reject
from celery.worker import state as worker_state

from tests.support.unit import dependencies, put_segment
from video_worker.adapters.model_process import InlineRunner
from video_worker.celery_app import create_app
from video_worker.errors import ModelRejected, TransientError
from video_worker.ops.sample import sample_segment
from video_worker.segments import Mode
from video_worker.settings import Settings
from video_worker.stages import STAGE_NAMES
from video_worker.worker.app import VideoWorkerApp

HOST = "w1@host"


class Events:
    """Stands in for the worker's event dispatcher: keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.buffer_group = ["task"]

    def send(self, type_: str, **fields: Any) -> None:
        self.sent.append((type_, fields))

    def of(self, task_id: str) -> list[str]:
        return [t for t, f in self.sent if f.get("uuid") == task_id]


class FlakyUpload:
    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def upload(self, src: Path, uri: str, **conditions: Any) -> str:
        raise TransientError(f"upload {uri}: 503 SlowDown")


class Rejecting:
    def infer(self, src: Path, dst: Path, mode: Mode) -> None:
        raise ModelRejected("not a video")


@pytest.fixture
def app(clients: dict[str, Any], tmp_path: Path) -> Iterator[VideoWorkerApp]:
    res = clients["res"]
    settings = Settings(INPUT_BUCKET_NAME=res.input_bucket, OUTPUT_BUCKET_NAME=res.output_bucket,
                        SEGMENT_COMPLETIONS_TABLE_NAME=res.table, MONITORING=False,
                        VIDEO_WORKER_DLQ_URL=res.dlq_url, PUBLISH_PATIENCE_SECONDS=1)
    app = create_app(settings)
    app.conf.update(broker_url="memory://", broker_transport=None, broker_transport_options={})
    app.context.use(dependencies=dependencies(clients, tmp_path / "s"))
    app.context.worker_events = Events()
    for name, task in app.tasks.items():  # what the worker's consumer does at start
        task.__trace__ = build_tracer(name, task, app.loader, HOST, app=app)
    yield app


@pytest.fixture
def signalled() -> Iterator[list[tuple[str, str, str]]]:
    """(signal, task name, task id) of every task signal, in order."""
    seen: list[tuple[str, str, str]] = []

    def receiver(name: str) -> Any:
        def receive(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
            task_id = task_id or getattr(kwargs.get("request"), "id", None) or sender.request.id
            seen.append((name, sender.name, task_id))
        return receive

    receivers = {s: receiver(n) for s, n in [(signals.task_prerun, "prerun"), (signals.task_postrun, "postrun"),
                                              (signals.task_success, "success"), (signals.task_failure, "failure"),
                                              (signals.task_retry, "retry")]}
    for signal, receive in receivers.items():
        signal.connect(receive, weak=False)
    yield seen
    for signal, receive in receivers.items():
        signal.disconnect(receive)


def _chain_of(app: VideoWorkerApp, *names: str) -> list[dict[str, Any]]:
    """A chain's ``request.chain`` as Celery delivers it: the next step last, ids frozen."""
    return [dict(app.signature(n).set(task_id=f"id-{n.split('.')[-1]}")) for n in reversed(names)]


def _run_chain(app: VideoWorkerApp, clients: dict[str, Any], data: bytes, *after: str,
               chain: list[dict[str, Any]] | None = None) -> Any:
    """Trace ``download`` as the worker does, with the rest of the pipeline (and ``after``) as its chain."""
    segment = put_segment(clients, data).model_dump(mode="json")
    request = {"chain": chain if chain is not None else _chain_of(app, *STAGE_NAMES[1:], *after),
               "hostname": HOST, "delivery_info": {"routing_key": "tasks", "exchange": ""}, "is_eager": False,
               "root_id": "id-download", "id": "id-download"}
    return app.tasks[STAGE_NAMES[0]].__trace__("id-download", (segment,), {}, request)


def _published(app: VideoWorkerApp, queue: str | None = None) -> list[tuple[dict[str, Any], Any]]:
    """(headers, body) of every task message waiting on ``queue`` (default: the task queue)."""
    out = []
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue or app.conf.task_default_queue, no_ack=True)) is not None:
            out.append((message.headers, json.loads(message.body)))
    return out


def _events(app: VideoWorkerApp) -> Events:
    events = app.context.worker_events
    assert isinstance(events, Events)
    return events


def test_each_stage_runs_here_through_celerys_tracer_one_after_the_other(
        app: VideoWorkerApp, clients: dict[str, Any], signalled: list[tuple[str, str, str]]) -> None:
    data = sample_segment(300_000)
    traced = _run_chain(app, clients, data)

    assert traced.info is None, "the first task succeeded"
    out = clients["s3"].get_object(Bucket=clients["res"].output_bucket, Key="jobs/job-1/segments/2.mp4")
    assert out["Body"].read() == data
    assert _published(app) == [], "nothing went through the broker"
    ids = [f"id-{n.split('.')[-1]}" for n in STAGE_NAMES]
    assert signalled == [(s, name, i) for name, i in zip(STAGE_NAMES, ids, strict=True)
                         for s in ("prerun", "success", "postrun")], "each stage's signals, sequential"
    for task_id in ids[1:]:
        assert _events(app).of(task_id) == ["task-received", "task-started", "task-succeeded"]
    received = {f["uuid"]: f for t, f in _events(app).sent if t == "task-received"}
    assert received["id-infer"]["parent_id"] == "id-download" and received["id-record"]["parent_id"] == "id-upload"
    assert received["id-upload"]["root_id"] == "id-download" and received["id-upload"]["name"] == STAGE_NAMES[2]


def test_a_continued_stage_is_announced_as_published_so_tracing_can_link_it(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    published: list[tuple[str, str]] = []

    def before(sender: Any = None, headers: Any = None, **_: Any) -> None:
        headers["traceparent"] = f"from-{sender}"  # what a tracing integration injects
        published.append((sender, headers["id"]))

    seen_in_request: list[str | None] = []

    def prerun(sender: Any = None, **_: Any) -> None:
        seen_in_request.append(getattr(sender.request, "traceparent", None))

    signals.before_task_publish.connect(before, weak=False)
    signals.task_prerun.connect(prerun, weak=False)
    try:
        _run_chain(app, clients, b"x" * 1000)
    finally:
        signals.before_task_publish.disconnect(before)
        signals.task_prerun.disconnect(prerun)
    assert published == [(n, f"id-{n.split('.')[-1]}") for n in STAGE_NAMES[1:]]
    assert seen_in_request == [None, *(f"from-{n}" for n in STAGE_NAMES[1:])], "the context reaches the stage"


def test_a_transient_failure_republishes_that_stage_with_the_rest_of_the_chain(
        app: VideoWorkerApp, clients: dict[str, Any], signalled: list[tuple[str, str, str]]) -> None:
    app.context.dependencies.storage = FlakyUpload(app.context.dependencies.storage)
    _run_chain(app, clients, b"x" * 1000)

    [(headers, body)] = _published(app)
    assert headers["task"] == "video_worker.upload" and headers["id"] == "id-upload" and headers["retries"] == 1
    assert headers["parent_id"] == "id-infer" and headers["root_id"] == "id-download"
    args, _, options = body
    assert args[0]["output"]["path"] and args[0]["segment"]["job_id"] == "job-1"
    assert [step["task"] for step in options["chain"]] == ["video_worker.record"]
    assert ("retry", "video_worker.upload", "id-upload") in signalled
    assert _events(app).of("id-upload") == ["task-received", "task-started", "task-retried"]
    assert _events(app).of("id-record") == []


def test_a_permanent_failure_is_dead_lettered_and_stops_the_chain(
        app: VideoWorkerApp, clients: dict[str, Any], signalled: list[tuple[str, str, str]]) -> None:
    app.context.dependencies.model = InlineRunner(Rejecting())
    _run_chain(app, clients, b"x" * 1000)

    assert _published(app) == []
    [received] = list(app.context.dead_letters.receive_all(hold_seconds=0))
    letter = received.letter
    assert letter is not None and letter.failed_task == "video_worker.infer" and letter.error_type == "ModelRejected"
    assert letter.task_id == "id-infer" and letter.payload and letter.payload.job_id == "job-1"
    assert ("failure", "video_worker.infer", "id-infer") in signalled
    assert _events(app).of("id-infer")[-1] == "task-failed"
    assert _events(app).of("id-upload") == []


def test_a_stage_revoked_before_it_starts_ends_the_segment_as_a_dead_letter(
        app: VideoWorkerApp, clients: dict[str, Any], signalled: list[tuple[str, str, str]]) -> None:
    worker_state.revoked.add("id-upload")
    try:
        _run_chain(app, clients, b"x" * 1000)
    finally:
        worker_state.revoked.discard("id-upload")
    assert [name for _, name, _ in signalled if name != "video_worker.download"] == ["video_worker.infer"] * 3
    [received] = list(app.context.dead_letters.receive_all(hold_seconds=0))
    assert received.letter is not None and received.letter.error_type == "Revoked"
    assert received.letter.payload is not None and received.letter.task_id == "id-upload"
    assert _events(app).of("id-upload") == ["task-received", "task-revoked"]
    assert _published(app) == []


def test_rate_limited_or_foreign_steps_go_through_the_broker_with_the_last_result(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    app.tasks["video_worker.upload"].rate_limit = "1/m"
    try:
        _run_chain(app, clients, b"x" * 1000)
    finally:
        app.tasks["video_worker.upload"].rate_limit = None
    [(headers, body)] = _published(app)
    assert headers["task"] == "video_worker.upload" and headers["parent_id"] == "id-infer"
    assert body[0][0]["model"] == "passthrough", "upload gets infer's result, which ran here"

    # A caller's own task after the pipeline's: published with record's result.
    _run_chain(app, clients, b"y" * 1000, "billing.segment_done")
    [(headers, body)] = _published(app)
    assert headers["task"] == "billing.segment_done" and body[0][0]["output_s3_uri"].endswith("/2.mp4")


def test_a_step_routed_to_a_queue_this_worker_does_not_consume_is_published(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    chain = _chain_of(app, *STAGE_NAMES[1:])
    chain[-1]["options"]["queue"] = "gpu"
    _run_chain(app, clients, b"x" * 1000, chain=chain)
    [(headers, _)] = _published(app, "gpu")
    assert headers["task"] == "video_worker.infer" and _events(app).sent == []


def test_affinity_off_publishes_the_next_step_after_the_task(app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    app._settings = app.settings.model_copy(update={"chain_affinity": False})
    _run_chain(app, clients, b"x")
    [(headers, body)] = _published(app)
    assert headers["task"] == "video_worker.infer" and headers["parent_id"] == "id-download"
    assert [step["task"] for step in body[2]["chain"]] == list(reversed(STAGE_NAMES[2:]))
    assert _events(app).sent == []


def test_a_broker_that_refuses_the_next_step_sends_the_segment_back(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    app.context.dependencies.storage = FlakyUpload(app.context.dependencies.storage)
    app.conf.update(broker_url="sqs://k:s@127.0.0.1:1", broker_transport_options={"is_secure": False},
                    broker_connection_max_retries=0, task_publish_retry=False)
    with pytest.raises(Reject) as rejected:
        _run_chain(app, clients, b"x" * 1000)
    assert rejected.value.requeue is True, "the message goes back; it is not deleted"


class FailingOnce:
    """Storage whose first download fails with a transient error (the retry's succeeds)."""

    def __init__(self, storage: Any) -> None:
        import threading

        self.storage, self.raised = storage, threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    def download(self, *args: Any, **kwargs: Any) -> Any:
        if not self.raised.is_set():
            self.raised.set()
            raise TransientError("download: 503 SlowDown")
        return self.storage.download(*args, **kwargs)


def test_a_retry_running_beside_its_failed_run_keeps_the_rest_of_its_chain(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    """A retry keeps its task id and may start in another slot before the failed run's trace is over: the failed
    run must not take (and run, unacknowledged by nothing) what the retry handed over."""
    import threading

    storage = FailingOnce(app.context.dependencies.storage)
    app.context.dependencies.storage = storage
    retried_succeeded = threading.Event()
    failed_run: list[threading.Thread] = []
    infer_ran_in: list[int] = []

    def postrun(sender: Any = None, state: str | None = None, **_: Any) -> None:
        if sender.name != STAGE_NAMES[0]:
            return
        if state == "RETRY":  # the failed run: hold its trace open until the retry handed its chain over
            assert retried_succeeded.wait(30)
        else:  # the retry: let the failed run finish first
            failed_run[0].join(30)

    def success(sender: Any = None, **_: Any) -> None:
        if sender.name == STAGE_NAMES[0]:
            retried_succeeded.set()

    def prerun(sender: Any = None, **_: Any) -> None:
        if sender.name == STAGE_NAMES[1]:
            infer_ran_in.append(threading.get_ident())

    hooks = [(signals.task_postrun, postrun), (signals.task_success, success), (signals.task_prerun, prerun)]
    for signal, hook in hooks:
        signal.connect(hook, weak=False)
    try:
        failed_run.append(threading.Thread(target=_run_chain, args=(app, clients, b"x" * 1000)))
        failed_run[0].start()
        assert storage.raised.wait(30), "the failed run's download raised"
        retry = threading.Thread(target=_run_chain, args=(app, clients, b"x" * 1000))
        retry.start()
        retry.join(60)
    finally:
        for signal, hook in hooks:
            signal.disconnect(hook)
    assert infer_ran_in == [retry.ident], "infer ran once, in the retry's slot"
