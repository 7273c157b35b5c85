"""Build a worker process's ``Runtime`` from ``Settings`` (the one place clients are made)."""

from __future__ import annotations

import threading

from video_worker.aws import make_client
from video_worker.completions import DynamoCompletionStore
from video_worker.deadletters import DeadLetterQueue
from video_worker.inference import load_model
from video_worker.pipeline import Runtime
from video_worker.scratch import Scratch
from video_worker.settings import Settings
from video_worker.storage import S3Storage


def build_runtime(settings: Settings) -> Runtime:
    scratch = Scratch(settings.scratch_dir)
    scratch.sweep(settings.scratch_max_age_seconds)
    return Runtime(
        storage=S3Storage(
            make_client("s3", settings),
            chunk_mib=settings.transfer_chunk_mib,
            threads=settings.transfer_threads,
        ),
        completions=DynamoCompletionStore(
            make_client("dynamodb", settings), settings.segment_completions_table_name
        ),
        model=load_model(settings.model),
        model_name=settings.model,
        scratch=scratch,
        output_bucket=settings.output_bucket_name,
        max_segment_bytes=settings.max_segment_bytes,
        accelerator=threading.BoundedSemaphore(settings.infer_concurrency),
    )


def build_dead_letters(settings: Settings) -> DeadLetterQueue:
    """``VIDEO_WORKER_DLQ_URL``, or the queue ``{BROKER_QUEUE_PREFIX}dead-letters`` (created if missing)."""
    sqs = make_client("sqs", settings)
    if settings.video_worker_dlq_url:
        return DeadLetterQueue(sqs, settings.video_worker_dlq_url)
    return DeadLetterQueue.named(sqs, f"{settings.broker_queue_prefix}dead-letters")
