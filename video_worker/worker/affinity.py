"""Chain affinity: the rest of a segment's chain runs on the host that holds its files.

The bridge publishes ``download → infer → upload → record`` as a Celery chain.
Sent through the broker hop by hop, each step could land on another host with
no copy of the files (a re-download, or a re-run of the model), and each hop
costs three SQS requests and a poll's wait while the accelerator idles. So a
stage task that succeeds runs the next stages of its chain itself, in the same
worker slot, as long as they are pipeline stages bound for a queue this worker
consumes, carry no arguments of their own and have no rate limit (Celery
enforces rate limits in the consumer only). The message of the first task
stays unacknowledged until the last local stage is done, so a worker that
dies mid-chain leaves the whole chain to be redelivered.

Each stage keeps the task id the chain gave it and sends the task events a
worker sends (received, started, succeeded, failed, retried), so Flower and
``celery events`` show all four tasks. A stage that fails transiently is
re-published as its own task (same id, ``retries`` + 1, SQS ``DelaySeconds``)
with the rest of the chain; one that fails for good is dead-lettered. Anything
after the last local stage (a caller's own task, a rate-limited stage) is
published with the last result, as Celery would have. ``CHAIN_AFFINITY=off``
restores plain hop-by-hop chains.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.canvas import Signature, signature
from celery.exceptions import Reject
from celery.utils import uuid
from celery.utils.saferepr import saferepr

from video_worker import delivery
from video_worker.errors import Undelivered
from video_worker.limits import Deadline
from video_worker.segments import parse_payload
from video_worker.stages import BY_NAME, STAGE_NAMES
from video_worker.worker.failures import on_stage_failure

if TYPE_CHECKING:
    from video_worker.worker.app import VideoWorkerApp

log = logging.getLogger(__name__)

#: The stages a chain may continue with on this host (the first one always runs as its own task).
CONTINUED = frozenset(STAGE_NAMES[1:])


def _runs_here(app: VideoWorkerApp, step: dict[str, Any]) -> bool:
    name = step.get("task")
    if name not in CONTINUED or step.get("args") or step.get("kwargs") or step.get("immutable"):
        return False
    options = step.get("options") or {}
    if app.tasks[name].rate_limit or options.get("link") or options.get("link_error"):
        return False  # Celery's consumer applies rate limits; its tracer runs callbacks
    options = {k: v for k, v in options.items() if k in ("queue", "exchange", "routing_key")}
    queue = app.amqp.router.route(options, name)["queue"].name
    return queue in app.amqp.queues.consume_from


def continue_chain(task: Task, app: VideoWorkerApp, result: dict[str, Any]) -> None:
    """Run the next steps of ``task``'s chain here while they may (see the module's doc)."""
    request = task.request
    chain: list[dict[str, Any]] = list(request.chain or [])
    if not chain or request.is_eager or not app.settings.chain_affinity:
        return
    request.chain = None  # from here on, this function dispatches what is left
    events = app.context.stage_events(request.hostname)
    parent_id, root_id = request.id, request.root_id or request.id
    limits = app.settings.stage_time_limits
    while chain and _runs_here(app, chain[-1]):
        step = chain.pop()
        step.setdefault("options", {}).setdefault("task_id", uuid())
        name, task_id = step["task"], step["options"]["task_id"]
        stage = BY_NAME[name]
        events.send("task-received", uuid=task_id, name=name, args=saferepr((result,)), kwargs="{}",
                    root_id=root_id, parent_id=parent_id, retries=0, eta=None, expires=None)
        log.info("Task %s[%s] continued on this host", name, task_id)
        events.send("task-started", uuid=task_id)
        started = time.monotonic()
        try:
            deadline = Deadline.start(name, limits[name])
            outcome = stage.run(parse_payload(stage.input, result), app.context.dependencies, deadline)
        except Exception as exc:
            _failed(app, events, step, chain, result, exc, parent_id, root_id)
            return
        nxt = outcome.model_dump(mode="json")
        runtime = time.monotonic() - started
        log.info("Task %s[%s] succeeded in %ss: %s", name, task_id, round(runtime, 6), saferepr(nxt))
        events.send("task-succeeded", uuid=task_id, result=saferepr(nxt), runtime=runtime)
        events.flush_if_unbatched()
        if getattr(outcome, "skipped", None):
            return  # nothing left to do for this upload (a newer one's output is there)
        result, parent_id = nxt, task_id
    if chain:  # not for this host: publish the next step with the last result, as Celery would
        _publish(app, signature(chain[-1], app=app), result, chain[:-1], parent_id, root_id)


def _failed(app: VideoWorkerApp, events: Any, step: dict[str, Any], rest: list[dict[str, Any]],
            payload: dict[str, Any], exc: Exception, parent_id: str, root_id: str) -> None:
    """Retry the stage as a task of its own (with the rest of the chain), or dead-letter it."""
    name, task_id = step["task"], step["options"]["task_id"]
    # The retry's own events must not come first (a late RETRY would win in Flower): announce it before publishing.
    retried = {"sent": False}

    def republish(delay: int) -> None:
        if not retried["sent"]:
            events.send("task-retried", uuid=task_id, exception=saferepr(exc), traceback="")
            events.flush_if_unbatched()
            retried["sent"] = True
        signature(step, app=app).apply_async((payload,), chain=rest or None, parent_id=parent_id, root_id=root_id,
                                             retries=1, delay_seconds=delay)

    decision = on_stage_failure(app, name, task_id, payload, exc, 0, republish)
    if isinstance(decision, delivery.DeadLetterIt):
        events.send("task-failed", uuid=task_id, exception=saferepr(exc), traceback="")
    events.flush_if_unbatched()


def _publish(app: VideoWorkerApp, step: Signature, payload: dict[str, Any], rest: list[dict[str, Any]],
             parent_id: str, root_id: str) -> None:
    """Hand ``step`` (and the chain after it) to the broker, patiently; if the broker keeps refusing,
    the segment's message goes back to the queue (``Reject``), so the whole chain runs again rather than
    being lost."""
    try:
        delivery.patiently(
            lambda: step.apply_async((payload,), chain=rest or None, parent_id=parent_id, root_id=root_id),
            f"handing {step.task} to the broker", patience=app.settings.publish_patience_seconds)
    except Undelivered as undelivered:
        log.error("%s; the segment's message goes back to the queue", undelivered)
        raise Reject(undelivered, requeue=True) from undelivered
