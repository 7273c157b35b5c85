"""Chain affinity (``video_worker/affinity.py``): the rest of a chain runs where its files are.

Unit scope: the stages run against in-process moto; what would be published
goes to Celery's in-memory broker and is read back from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Reject

from tests.support.unit import dependencies, put_segment
from video_worker import stages
from video_worker.adapters.model_process import InlineRunner
from video_worker.errors import ModelRejected, TransientError
from video_worker.ops.sample import sample_segment
from video_worker.segments import Mode
from video_worker.settings import Settings
from video_worker.worker import affinity
from video_worker.worker.app import VideoWorkerApp, create_app

STAGES = ("video_worker.infer", "video_worker.upload", "video_worker.record")


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
    yield app


def _chain_of(app: VideoWorkerApp, *names: str) -> list[dict[str, Any]]:
    """A chain's ``request.chain`` as Celery delivers it: the next step last, ids frozen."""
    return [dict(app.signature(n).set(task_id=f"id-{n.split('.')[-1]}")) for n in reversed(names)]


def _task(chain: list[dict[str, Any]]) -> SimpleNamespace:
    request = SimpleNamespace(chain=chain, is_eager=False, hostname="w1@host", id="id-download", root_id=None)
    return SimpleNamespace(request=request)


def _downloaded(app: VideoWorkerApp, clients: dict[str, Any], data: bytes) -> dict[str, Any]:
    seg = put_segment(clients, data)
    return stages.download(seg, app.context.dependencies).model_dump(mode="json")


def _published(app: VideoWorkerApp) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(headers, body args) of every task message waiting on the default queue."""
    out = []
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(app.conf.task_default_queue, no_ack=True)) is not None:
            out.append((message.headers, json.loads(message.body)))
    return out


def _events(app: VideoWorkerApp) -> Events:
    events = app.context.worker_events
    assert isinstance(events, Events)
    return events


def test_the_rest_of_the_chain_runs_here_with_its_ids_and_events(app: VideoWorkerApp,
                                                                 clients: dict[str, Any]) -> None:
    data = sample_segment(300_000)
    task = _task(_chain_of(app, *STAGES))
    affinity.continue_chain(task, app, _downloaded(app, clients, data))  # type: ignore[arg-type]

    out = clients["s3"].get_object(Bucket=clients["res"].output_bucket, Key="jobs/job-1/segments/2.mp4")
    assert out["Body"].read() == data
    row = clients["dynamodb"].get_item(TableName=clients["res"].table,
                                       Key={"job_id": {"S": "job-1"}, "segment_index": {"N": "2"}})["Item"]
    assert row["output_s3_uri"]["S"].endswith("/jobs/job-1/segments/2.mp4")
    assert task.request.chain is None and _published(app) == [], "nothing went through the broker"
    events = _events(app)
    for stage in ("infer", "upload", "record"):
        assert events.of(f"id-{stage}") == ["task-received", "task-started", "task-succeeded"]
    received = {f["uuid"]: f for t, f in events.sent if t == "task-received"}
    assert received["id-infer"]["parent_id"] == "id-download" and received["id-record"]["parent_id"] == "id-upload"
    assert received["id-upload"]["root_id"] == "id-download" and received["id-upload"]["name"] == STAGES[1]


def test_a_transient_failure_republishes_that_stage_with_the_rest_of_the_chain(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    downloaded = _downloaded(app, clients, b"x" * 1000)
    app.context.dependencies.storage = FlakyUpload(app.context.dependencies.storage)
    task = _task(_chain_of(app, *STAGES))
    affinity.continue_chain(task, app, downloaded)  # type: ignore[arg-type]

    [(headers, body)] = _published(app)
    assert headers["task"] == "video_worker.upload" and headers["id"] == "id-upload" and headers["retries"] == 1
    assert headers["parent_id"] == "id-infer" and headers["root_id"] == "id-download"
    args, _, options = body
    assert args[0]["output"]["path"] and args[0]["segment"]["job_id"] == "job-1"
    assert [step["task"] for step in options["chain"]] == ["video_worker.record"]
    assert _events(app).of("id-upload") == ["task-received", "task-started", "task-retried"]
    assert _events(app).of("id-record") == []


def test_a_permanent_failure_is_dead_lettered_and_stops_the_chain(app: VideoWorkerApp,
                                                                  clients: dict[str, Any]) -> None:
    downloaded = _downloaded(app, clients, b"x" * 1000)
    app.context.dependencies.model = InlineRunner(Rejecting())
    task = _task(_chain_of(app, *STAGES))
    affinity.continue_chain(task, app, downloaded)  # type: ignore[arg-type]

    assert _published(app) == []
    [received] = list(app.context.dead_letters.receive_all(hold_seconds=0))
    letter = received.letter
    assert letter is not None and letter.failed_task == "video_worker.infer" and letter.error_type == "ModelRejected"
    assert letter.task_id == "id-infer" and letter.payload and letter.payload.job_id == "job-1"
    assert _events(app).of("id-infer")[-1] == "task-failed"
    assert _events(app).of("id-upload") == []


def test_rate_limited_or_foreign_steps_go_through_the_broker_with_the_last_result(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    downloaded = _downloaded(app, clients, b"x" * 1000)
    app.tasks["video_worker.upload"].rate_limit = "1/m"
    try:
        task = _task(_chain_of(app, *STAGES))
        affinity.continue_chain(task, app, downloaded)  # type: ignore[arg-type]
    finally:
        app.tasks["video_worker.upload"].rate_limit = None
    [(headers, body)] = _published(app)
    assert headers["task"] == "video_worker.upload" and headers["parent_id"] == "id-infer"
    assert body[0][0]["model"] == "passthrough", "upload gets infer's result, which ran here"

    # A caller's own task after the pipeline's: published with record's result.
    downloaded = _downloaded(app, clients, b"y" * 1000)
    task = _task(_chain_of(app, *STAGES, "billing.segment_done"))
    affinity.continue_chain(task, app, downloaded)  # type: ignore[arg-type]
    [(headers, body)] = _published(app)
    assert headers["task"] == "billing.segment_done" and body[0][0]["output_s3_uri"].endswith("/2.mp4")


def test_a_step_routed_to_a_queue_this_worker_does_not_consume_is_published(
        app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    downloaded = _downloaded(app, clients, b"x" * 1000)
    chain = _chain_of(app, *STAGES)
    chain[-1]["options"]["queue"] = "gpu"
    affinity.continue_chain(_task(chain), app, downloaded)  # type: ignore[arg-type]
    with app.connection_for_read() as conn:
        message = conn.default_channel.basic_get("gpu", no_ack=True)
    assert message is not None and message.headers["task"] == "video_worker.infer"
    assert _events(app).sent == []


def test_affinity_off_leaves_the_chain_to_celery(app: VideoWorkerApp, clients: dict[str, Any]) -> None:
    app._settings = app.settings.model_copy(update={"chain_affinity": False})
    chain = _chain_of(app, *STAGES)
    task = _task(list(chain))
    affinity.continue_chain(task, app, _downloaded(app, clients, b"x"))  # type: ignore[arg-type]
    assert task.request.chain == chain and _events(app).sent == [] and _published(app) == []


def test_a_broker_that_refuses_the_next_step_sends_the_segment_back(app: VideoWorkerApp,
                                                                    clients: dict[str, Any]) -> None:
    downloaded = _downloaded(app, clients, b"x" * 1000)
    app.context.dependencies.storage = FlakyUpload(app.context.dependencies.storage)
    app.conf.update(broker_url="sqs://k:s@127.0.0.1:1", broker_transport_options={"is_secure": False},
                    broker_connection_max_retries=0, task_publish_retry=False)
    with pytest.raises(Reject) as rejected:
        affinity.continue_chain(_task(_chain_of(app, *STAGES)), app, downloaded)  # type: ignore[arg-type]
    assert rejected.value.requeue is True, "the message goes back; it is not deleted"
