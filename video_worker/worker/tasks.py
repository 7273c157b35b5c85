"""The Celery tasks, registered from ``stages.STAGES``: each one's body is ``lifecycle.StageLifecycle.run``.

``register`` makes one task per stage and the entry task for non-Python
publishers (``video_worker.process``), all on ``PipelineTask``: late ack, a
lost worker's message redelivered, arguments checked by the lifecycle, and a
tracer that lets chain affinity run the next stages once a message's own
trace is over (``StageLifecycle.trace_message``). A task revoked before it
ran is dead-lettered (``StageLifecycle.on_revoked``, on Celery's
``task_revoked``, connected by ``register``).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task, signals

from video_worker.stages import ENTRY_TASK, STAGES, Stage
from video_worker.worker import upstream
from video_worker.worker.lifecycle import StageLifecycle


class PipelineTask(upstream.TracedTask):
    """Base of the pipeline's tasks (late ack; a lost worker's message is redelivered)."""

    acks_late = True
    reject_on_worker_lost = True
    #: A Celery hard time limit (prefork) hands the message back; it comes again, bounded by MAX_DELIVERIES.
    acks_on_timeout = False
    #: Arguments are checked by the lifecycle: wrong arguments end as a dead letter, not as a dropped message.
    typing = False
    #: Set on each app's subclass (``register``).
    lifecycle: StageLifecycle | None = None

    def around_trace(self, task_id: str, trace: Any) -> Any:
        if self.lifecycle is None:
            return trace()
        return self.lifecycle.trace_message(self.name, task_id, trace)


def register(app: Celery, lifecycle: StageLifecycle) -> None:
    """Register a task per stage of ``STAGES``, and the entry task for non-Python publishers, on ``app``."""
    base = type("PipelineTask", (PipelineTask,), {"lifecycle": lifecycle, "__module__": __name__})
    options: dict[str, Any] = {"base": base, "shared": False, "bind": True}

    def stage_task(stage: Stage) -> Any:
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            return lifecycle.run(self, stage, args, kwargs)

        run.__name__, run.__doc__ = stage.name.rsplit(".", 1)[-1], stage.run.__doc__
        return run

    for stage in STAGES:
        app.task(name=stage.name, **options)(stage_task(stage))

    @app.task(name=ENTRY_TASK, **options)
    def process(self: Task, *args: Any, **kwargs: Any) -> str:
        """Entry point for non-Python publishers: start the chain for one segment."""
        return lifecycle.start_chain(self, args, kwargs)

    def revoked(sender: Any = None, request: Any = None, expired: bool = False, **_: Any) -> None:
        if isinstance(sender, PipelineTask) and sender.lifecycle is lifecycle and request is not None:
            lifecycle.on_revoked(sender.name, getattr(request, "id", None), getattr(request, "args", None) or (),
                                 expired)

    signals.task_revoked.connect(revoked, weak=False, dispatch_uid=f"video_worker.revoked.{id(lifecycle)}")
