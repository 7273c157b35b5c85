"""The Celery tasks: thin wrappers that validate, call ``pipeline``, dump.

Retry policy lives here, in one place: ``TransientError`` is retried with
exponential backoff and jitter; every other error fails the chain at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from celery import Task
from pydantic import BaseModel, ValidationError

from video_worker import pipeline
from video_worker.errors import InvalidPayload, TransientError
from video_worker.payloads import Downloaded, Inferred, Uploaded, VideoWorkerPayload

if TYPE_CHECKING:
    from video_worker.app import VideoWorkerApp

M = TypeVar("M", bound=BaseModel)

RETRY_BACKOFF_MAX_SECONDS = 300  # well below the broker's visibility timeout


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidPayload(f"invalid {model.__name__} payload: {where}: {first['msg']}") from None


class PipelineTask(Task):
    """Base of the pipeline's tasks: the retry bound comes from ``Settings``."""

    autoretry_for = (TransientError,)
    retry_backoff = 2
    retry_backoff_max = RETRY_BACKOFF_MAX_SECONDS
    retry_jitter = True
    acks_late = True
    reject_on_worker_lost = True

    @property
    def max_retries(self) -> int:
        return int(self.app.settings.max_retries)


def register(app: VideoWorkerApp) -> None:
    """Register the pipeline's tasks on ``app``."""
    retry = {"base": PipelineTask, "shared": False}

    @app.task(name="video_worker.download", bind=True, **retry)
    def download(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        segment = _parse(VideoWorkerPayload, payload)
        return pipeline.download(segment, app.runtime).model_dump(mode="json")

    @app.task(name="video_worker.infer", bind=True, **retry)
    def infer(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return pipeline.infer(_parse(Downloaded, payload), app.runtime).model_dump(mode="json")

    @app.task(name="video_worker.upload", bind=True, **retry)
    def upload(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return pipeline.upload(_parse(Inferred, payload), app.runtime).model_dump(mode="json")

    @app.task(name="video_worker.record", bind=True, **retry)
    def record(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return pipeline.record(_parse(Uploaded, payload), app.runtime).model_dump(mode="json")

    @app.task(name="video_worker.process", bind=True, **retry)
    def process(self: Task, payload: dict[str, Any]) -> str:
        """Entry point for non-Python publishers: start the chain for one segment."""
        from video_worker.app import build_chain

        segment = _parse(VideoWorkerPayload, payload)
        result = build_chain(segment, app).apply_async()
        return str(result.id)
