"""The four stages as plain functions; the Celery tasks only wrap them.

Each stage takes the previous stage's payload and a ``Runtime`` (injected
dependencies) and returns the next payload.

Tasks of one chain may run on different hosts that share no disk. Each
``LocalFile`` names the host that holds it; a stage that finds its input file
is not on this host (or is gone) fetches it again from the segment's source
object, and ``upload`` re-runs the model if the inferred output is elsewhere.
This costs transfer (and, in the rare upload case, inference) time but never
correctness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from video_worker.completions import CompletionStore, sortable_sequencer
from video_worker.errors import SegmentTooLarge
from video_worker.inference import Model
from video_worker.keys import build_output_segment_key
from video_worker.payloads import (
    Downloaded,
    Inferred,
    SegmentCompletion,
    Uploaded,
    VideoWorkerPayload,
    s3_uri,
)
from video_worker.scratch import Scratch
from video_worker.storage import ObjectStorage

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a stage needs, built once per worker process."""

    storage: ObjectStorage
    completions: CompletionStore
    model: Model
    model_name: str
    scratch: Scratch
    output_bucket: str
    max_segment_bytes: int = 2 * 1024**3
    clock: Callable[[], float] = field(default=time.time)
    #: Inferences at a time in this process (``INFER_CONCURRENCY``): the model and its
    #: accelerator are shared by the pool's threads.
    accelerator: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))


def _fetch_input(segment: VideoWorkerPayload, rt: Runtime) -> Path:
    dest = rt.scratch.path_for(segment, "input")
    with rt.scratch.writing(dest) as tmp:
        rt.storage.download(segment.segment_s3_uri, tmp, segment.source_version_id, segment.source_size)
    return dest


def _with_source(segment: VideoWorkerPayload, rt: Runtime) -> VideoWorkerPayload:
    """The segment with its source version and size (one HEAD if the event did not carry them)."""
    if segment.source_etag and segment.source_size is not None:
        return segment
    info = rt.storage.head(segment.segment_s3_uri)
    return segment.model_copy(
        update={
            "source_etag": info.etag,
            "source_size": info.size,
            "source_version_id": segment.source_version_id or info.version_id,
        }
    )


def already_done(segment: VideoWorkerPayload, rt: Runtime) -> str | None:
    """Why this source version needs no work (its row exists, or a newer upload's does), or None."""
    row = rt.completions.get(segment.job_id, segment.segment_index)
    if row is None:
        return None
    if row.source_etag and row.source_etag == segment.source_etag:
        return f"already completed for ETag {segment.source_etag}"
    if row.source_sequencer and segment.source_sequencer and (
        sortable_sequencer(segment.source_sequencer) < row.source_sequencer
    ):
        return "a newer upload of this segment is already completed"
    return None


def _run_model(segment: VideoWorkerPayload, src: Path, rt: Runtime) -> Path:
    dest = rt.scratch.path_for(segment, "output")
    with rt.accelerator, rt.scratch.writing(dest) as tmp:
        rt.model.infer(src, tmp, segment.mode)
    return dest


def download(segment: VideoWorkerPayload, rt: Runtime) -> Downloaded:
    """Fetch the segment to scratch, unless this upload was already processed.

    Before any byte moves: the size limit is checked and the completion row is
    read (one GetItem), so a duplicate event or a redelivered chain costs two
    small requests, not a download and an inference.
    """
    segment = _with_source(segment, rt)
    if segment.source_size is not None and segment.source_size > rt.max_segment_bytes:
        raise SegmentTooLarge(
            f"{segment.segment_s3_uri} is {segment.source_size} bytes; the limit is {rt.max_segment_bytes}"
        )
    reason = already_done(segment, rt)
    if reason:
        log.info("skipping %r/%d: %s", segment.job_id, segment.segment_index, reason)
        return Downloaded(segment=segment, input=None, skipped=reason)
    path = _fetch_input(segment, rt)
    return Downloaded(segment=segment, input=rt.scratch.describe(path))


def infer(prev: Downloaded, rt: Runtime) -> Inferred:
    segment = prev.segment
    src = rt.scratch.holds(prev.input) if prev.input else None
    if src is None:
        log.info(
            "input of %s/%d is not on this host (%s); fetching it again",
            segment.job_id, segment.segment_index, prev.input.host if prev.input else "none",
        )
        src = _fetch_input(segment, rt)
    out = _run_model(segment, src, rt)
    rt.scratch.remove(src)
    log.info("inferred %r/%d with %s", segment.job_id, segment.segment_index, rt.model_name)
    return Inferred(segment=segment, output=rt.scratch.describe(out), model=rt.model_name)


def upload(prev: Inferred, rt: Runtime) -> Uploaded:
    segment = prev.segment
    out = rt.scratch.holds(prev.output)
    if out is None:
        log.warning(
            "output of %s/%d is not on this host (%s); fetching the input and running %s again",
            segment.job_id, segment.segment_index, prev.output.host, rt.model_name,
        )
        src = _fetch_input(segment, rt)
        out = _run_model(segment, src, rt)
        rt.scratch.remove(src)
    uri = s3_uri(rt.output_bucket, build_output_segment_key(segment.job_id, segment.segment_index))
    rt.storage.upload(out, uri)
    rt.scratch.remove(out)
    return Uploaded(segment=segment, output_s3_uri=uri)


def record(prev: Uploaded, rt: Runtime) -> SegmentCompletion:
    """Put the completion row; a repeat of the same upload leaves the first row as it is."""
    segment = prev.segment
    completion = SegmentCompletion(
        job_id=segment.job_id,
        segment_index=segment.segment_index,
        output_s3_uri=prev.output_s3_uri,
        completed_at=int(rt.clock()),
        total_segments=segment.total_segments,
        source_etag=segment.source_etag,
        source_sequencer=segment.source_sequencer,
    )
    if rt.completions.put(completion):
        log.info("recorded %r/%d", segment.job_id, segment.segment_index)
    else:
        log.info("already recorded %r/%d for this or a newer upload", segment.job_id, segment.segment_index)
    return completion
