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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from video_worker.completions import CompletionStore
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
    clock: Callable[[], float] = field(default=time.time)


def _fetch_input(segment: VideoWorkerPayload, rt: Runtime) -> Path:
    dest = rt.scratch.path_for(segment, "input")
    with rt.scratch.writing(dest) as tmp:
        rt.storage.download(segment.segment_s3_uri, tmp)
    return dest


def _run_model(segment: VideoWorkerPayload, src: Path, rt: Runtime) -> Path:
    dest = rt.scratch.path_for(segment, "output")
    with rt.scratch.writing(dest) as tmp:
        rt.model.infer(src, tmp, segment.mode)
    return dest


def download(segment: VideoWorkerPayload, rt: Runtime) -> Downloaded:
    path = _fetch_input(segment, rt)
    return Downloaded(segment=segment, input=rt.scratch.describe(path))


def infer(prev: Downloaded, rt: Runtime) -> Inferred:
    segment = prev.segment
    src = rt.scratch.holds(prev.input)
    if src is None:
        log.info(
            "input of %s/%d is not on this host (%s); fetching it again",
            segment.job_id, segment.segment_index, prev.input.host,
        )
        src = _fetch_input(segment, rt)
    out = _run_model(segment, src, rt)
    rt.scratch.remove(src)
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
    segment = prev.segment
    completion = SegmentCompletion(
        job_id=segment.job_id,
        segment_index=segment.segment_index,
        output_s3_uri=prev.output_s3_uri,
        completed_at=int(rt.clock()),
        total_segments=segment.total_segments,
    )
    rt.completions.put(completion)
    return completion
