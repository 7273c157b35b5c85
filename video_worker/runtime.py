"""Build a worker process's ``Runtime`` from ``Settings`` (the one place clients are made)."""

from __future__ import annotations

import atexit
import logging
import threading

from video_worker.aws import make_client
from video_worker.completions import DynamoCompletionStore
from video_worker.deadletters import DeadLetterQueue
from video_worker.inference import load_model
from video_worker.model_process import InlineRunner, ModelRunner, ProcessRunner
from video_worker.pipeline import Runtime
from video_worker.scratch import Scratch
from video_worker.settings import Settings
from video_worker.storage import S3Storage


def build_model_runner(settings: Settings) -> ModelRunner:
    """The model, in its own processes (started and warmed up now) or in this one."""
    if settings.model_isolation == "inline":
        return InlineRunner(load_model(settings.model), settings.infer_concurrency)
    runner = ProcessRunner(settings.model, settings.infer_concurrency,
                           start_timeout=settings.model_start_timeout_seconds)
    atexit.register(runner.close)
    runner.start()
    return runner


log = logging.getLogger(__name__)

#: How often a worker process removes scratch files older than ``SCRATCH_MAX_AGE_SECONDS``.
SWEEP_SECONDS = 900.0


def start_sweeping(scratch: Scratch, max_age_seconds: float, every: float = SWEEP_SECONDS) -> threading.Event:
    """Sweep now, then every ``every`` seconds in a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                removed = scratch.sweep(max_age_seconds)
            except OSError as exc:  # the disk's problem shows up in the stages; never stop sweeping
                log.warning("scratch sweep of %s failed: %s", scratch.root, exc)
            else:
                if removed:
                    log.info("scratch sweep: removed %d file(s) older than %ds", removed, max_age_seconds)
            if stop.wait(every):
                return

    threading.Thread(target=loop, name="video-worker-scratch-sweep", daemon=True).start()
    return stop


def build_runtime(settings: Settings) -> Runtime:
    scratch = Scratch(settings.scratch_dir)
    start_sweeping(scratch, settings.scratch_max_age_seconds)
    return Runtime(
        storage=S3Storage(
            make_client("s3", settings),
            chunk_mib=settings.transfer_chunk_mib,
            threads=settings.transfer_threads,
        ),
        completions=DynamoCompletionStore(
            make_client("dynamodb", settings), settings.segment_completions_table_name
        ),
        model=build_model_runner(settings),
        model_name=settings.model,
        scratch=scratch,
        output_bucket=settings.output_bucket_name,
        max_segment_bytes=settings.max_segment_bytes,
    )


def build_dead_letters(settings: Settings) -> DeadLetterQueue:
    """``VIDEO_WORKER_DLQ_URL``, or the queue ``{BROKER_QUEUE_PREFIX}dead-letters`` (created if missing)."""
    sqs = make_client("sqs", settings)
    if settings.video_worker_dlq_url:
        return DeadLetterQueue(sqs, settings.video_worker_dlq_url)
    return DeadLetterQueue.named(sqs, f"{settings.broker_queue_prefix}dead-letters")
