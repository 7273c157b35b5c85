"""Chain affinity: the rest of a segment's chain runs on the host that holds its files, each stage a Celery task.

The bridge publishes ``download → infer → upload → record`` as a Celery chain.
Sent through the broker hop by hop, each step could land on another host with
no copy of the files (a re-download, or a re-run of the model), and each hop
costs three SQS requests and a poll's wait while the accelerator idles. So when
a stage succeeds, its task takes the rest of the chain over from Celery's
tracer (``ChainAffinity.take``, in the task body: the tracer then publishes
nothing) and, once the task's own trace is over (``ChainAffinity.run_after``,
called by ``lifecycle.StageLifecycle.trace_message``), runs the next stages in
the same worker slot,
each through Celery's own tracer: ``task_prerun``, ``task_postrun``,
``task_success``, ``task_failure`` and ``task_retry`` fire with that stage's
task id, name and arguments (what Sentry and OpenTelemetry hook), one after
the other. When a stage hands the next one over (in its task body, inside its
trace, where Celery would publish it), ``before_task_publish`` and
``after_task_publish`` fire with the headers it would have been published with,
and what receivers add to them (a trace context) is in the next stage's
request, so tracing integrations link it to the stage before (one trace per
segment).
While a stage runs it is listed by ``celery inspect active``; a stage revoked
before it starts (``celery control revoke <id>``) is not run: the segment ends
there as a dead letter (``Revoked``) that ``dlq replay`` resumes.

A stage runs here only if it is a pipeline stage bound for a queue this worker
consumes, carries no arguments of its own, no callbacks and no rate limit
(Celery enforces rate limits in the consumer only); otherwise it, and the rest
of the chain, is published with the last result from the task body, patiently,
where Celery would have (a broker that keeps refusing hands the segment's
message back). The
message of the first task stays unacknowledged until the last local stage is
done, so a worker that dies mid-chain leaves the whole chain to be redelivered.
Each stage sends the task events a worker sends (received, started, succeeded,
failed, retried), so Flower shows all four tasks. ``CHAIN_AFFINITY=off``: every
next step is published (still patiently).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task, signals
from celery.canvas import signature
from celery.exceptions import Reject
from celery.utils import uuid
from celery.utils.saferepr import saferepr

from video_worker import failure_policy, logs
from video_worker.errors import PermanentError, Undelivered
from video_worker.settings import Settings
from video_worker.stages import STAGE_NAMES
from video_worker.worker import upstream
from video_worker.worker.dead_letters import DeadLetterWriter, letter_for
from video_worker.worker.stage_events import StageEvents

log = logging.getLogger(__name__)

#: The stages a chain may continue with on this host (the first one always runs as its own task).
CONTINUED = frozenset(STAGE_NAMES[1:])


class Revoked(PermanentError):
    """An operator revoked the stage before it started (``celery control revoke``)."""


@dataclass
class Handover:
    """What a finished stage leaves: the rest of its chain (next step last) and the result to feed it."""

    steps: list[dict[str, Any]]
    payload: Any
    parent_id: str
    root_id: str
    hostname: str | None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    #: What publish-signal receivers (a tracing integration) added to the next step's headers.
    headers: dict[str, Any] = field(default_factory=dict)


class ChainAffinity:
    """Runs the rest of a segment's chain in the slot (thread) that ran its first stage (see the module's doc).

    ``take`` (in a stage's task body) keeps the rest of the chain from Celery's tracer; ``run_after`` (once that
    task's trace is over) runs it here, stage after stage; ``discard`` forgets it (the trace failed).
    """

    def __init__(self, app: Celery, settings: Callable[[], Settings], dead_letters: DeadLetterWriter,
                 events: Callable[[str | None], StageEvents]) -> None:
        self._app = app  # the Celery app: its tasks, routes and broker
        self._settings = settings
        self._dead_letters = dead_letters
        self._events = events  # where the events of the stages run here go (by worker hostname)
        #: Handovers by (task id, thread): a retry keeps its task id, and its new run may start in another slot
        #: before the failed run's trace is over; each run takes only what it handed over itself.
        self._pending: dict[tuple[str, int], Handover] = {}
        self._lock = threading.Lock()

    def take(self, task: Task, result: Any) -> None:
        """In a stage's task body, after it succeeded: keep the rest of its chain from Celery's tracer."""
        request = task.request
        if request.is_eager:
            return
        steps = upstream.take_chain(request)  # Celery's tracer would publish it inside this task's trace
        if not steps:
            return
        handover = Handover(steps, result, request.id, request.root_id or request.id, request.hostname,
                            dict(request.delivery_info or {}))
        step = steps[-1]
        if not self._runs_here(step):
            self._publish(handover)  # here, inside this task's trace, as Celery's tracer publishes a chain
            return
        step.setdefault("options", {}).setdefault("task_id", uuid())
        handover.headers = _announce(step, step["options"]["task_id"], handover)
        with self._lock:
            self._pending[(request.id, threading.get_ident())] = handover

    def run_after(self, task_id: str) -> None:
        """After a task's own trace: run here the stage it handed over, then the one that stage hands over, ..."""
        handover = self._taken(task_id)
        while handover is not None:
            handover = self._run_stage(handover)

    def discard(self, task_id: str) -> None:
        """Forget what ``task_id`` handed over in this slot (its trace failed outside the task body)."""
        self._taken(task_id)

    def _taken(self, task_id: str) -> Handover | None:
        with self._lock:
            return self._pending.pop((task_id, threading.get_ident()), None)

    def _runs_here(self, step: dict[str, Any]) -> bool:
        name = step.get("task")
        if (not self._settings().chain_affinity or name not in CONTINUED or step.get("args") or step.get("kwargs")
                or step.get("immutable")):
            return False
        options = step.get("options") or {}
        if self._app.tasks[name].rate_limit or options.get("link") or options.get("link_error"):
            return False  # Celery's consumer applies rate limits; callbacks are Celery's to dispatch
        options = {k: v for k, v in options.items() if k in ("queue", "exchange", "routing_key")}
        return upstream.consumes(self._app, upstream.queue_of(self._app, name, options))

    def _run_stage(self, handover: Handover) -> Handover | None:
        """Run the next step of ``handover`` here through Celery's tracer; return what it hands over."""
        step = handover.steps[-1]
        name, task_id = step["task"], step["options"]["task_id"]  # given by ``take``
        with logs.bound(task_id=task_id, stage=name.rsplit(".", 1)[-1],
                        **logs.segment_of(handover.payload)):  # until Celery's tracer makes the task current
            return self._trace_stage(handover, name, task_id)

    def _trace_stage(self, handover: Handover, name: str, task_id: str) -> Handover | None:
        rest = handover.steps[:-1]
        events = self._events(handover.hostname)
        args = (handover.payload,)
        events.send("task-received", uuid=task_id, name=name, args=saferepr(args), kwargs="{}",
                    root_id=handover.root_id, parent_id=handover.parent_id, retries=0, eta=None, expires=None)
        if upstream.is_revoked(task_id):
            self._revoked(name, task_id, handover.payload)
            events.send("task-revoked", uuid=task_id, terminated=False, signum=None, expired=False)
            events.flush_if_unbatched()
            return None
        added = handover.headers
        request = {**added, "id": task_id, "task": name, "root_id": handover.root_id,
                   "parent_id": handover.parent_id, "retries": 0, "args": args, "kwargs": {}, "chain": rest or None,
                   "hostname": handover.hostname, "delivery_info": handover.delivery_info, "is_eager": False,
                   "called_directly": False, "correlation_id": task_id, "reply_to": None, "headers": added or None}
        log.info("Task %s[%s] continued on this host", name, task_id)
        events.send("task-started", uuid=task_id)
        active = upstream.ActiveStage(task_id, name, args, handover.hostname, handover.delivery_info,
                                      _cannot_terminate)
        with upstream.listed_as_active(active):
            traced = upstream.trace(self._app, self._app.tasks[name], task_id, args, request)
        if traced.state == "REJECTED":  # the stage could not record its outcome anywhere:
            events.flush_if_unbatched()
            raise traced.error  # the segment's message goes back (Celery rejects the first task with requeue)
        if traced.state is None:
            events.send("task-succeeded", uuid=task_id, result=traced.retstr, runtime=traced.runtime)
        elif traced.state == "RETRY":
            events.send("task-retried", uuid=task_id, exception=saferepr(getattr(traced.error, "exc", None)),
                        traceback="")
        else:
            events.send("task-failed", uuid=task_id, exception=saferepr(traced.error), traceback="")
        events.flush_if_unbatched()
        return self._taken(task_id)

    def _revoked(self, name: str, task_id: str, payload: Any) -> None:
        """A revoked stage ends its segment as a dead letter, so ``status`` shows it and ``dlq replay`` resumes
        it."""
        log.warning("Task %s[%s] revoked before it started: the segment stops here (dead-lettered)", name, task_id)
        reason = f"{name} was revoked before it started (celery control revoke)"
        self._dead_letters.write(letter_for(name, task_id, payload, Revoked(reason), 1, reason))

    def _publish(self, handover: Handover) -> None:
        """Hand the next step (and the chain after it) to the broker, patiently; if the broker keeps refusing,
        the segment's message goes back to the queue (``Reject``): the whole chain runs again, nothing is lost."""
        step = signature(handover.steps[-1], app=self._app)
        rest = handover.steps[:-1] or None
        try:
            failure_policy.patiently(
                lambda: step.apply_async((handover.payload,), chain=rest, parent_id=handover.parent_id,
                                         root_id=handover.root_id),
                f"handing {step.task} to the broker", patience=self._settings().publish_patience_seconds)
        except Undelivered as undelivered:
            log.error("%s; the segment's message goes back to the queue", undelivered)
            raise Reject(undelivered, requeue=True) from undelivered


def _announce(step: dict[str, Any], task_id: str, handover: Handover) -> dict[str, Any]:
    """Fire the publish signals with the headers the step would be published with; return what receivers (a
    tracing integration) added to them, which the stage's request then carries, as a consumed message's would."""
    base: dict[str, Any] = {"lang": "py", "task": step["task"], "id": task_id, "root_id": handover.root_id,
                            "parent_id": handover.parent_id, "retries": 0}
    headers = dict(base)
    body: tuple[Any, ...] = ((handover.payload,), {}, {"chain": handover.steps[:-1] or None})
    routing_key = handover.delivery_info.get("routing_key")
    signals.before_task_publish.send(sender=step["task"], body=body, exchange="", routing_key=routing_key,
                                     headers=headers, properties={}, declare=[], retry_policy=None)
    signals.after_task_publish.send(sender=step["task"], body=body, headers=headers, exchange="",
                                    routing_key=routing_key)
    return {key: value for key, value in headers.items() if key not in base}


def _cannot_terminate(stage: upstream.ActiveStage) -> None:
    """``revoke --terminate``: a continued stage cannot be killed alone; it ends within its time limit."""
    log.warning("cannot terminate %s[%s] on its own: it runs in its segment's slot", stage.name, stage.id)
