"""The four stages as plain functions, and ``STAGES``: the one table of them.

Each stage takes the previous stage's payload, the ``Dependencies`` built once
per worker process, and its ``Deadline``, and returns the next payload. The
Celery tasks (``worker/tasks.py``) are registered from ``STAGES``, chains are
built and continued from it, schemas are exported from it.

Tasks of one chain may run on different hosts that share no disk. Each
``LocalFile`` names the host that holds it; a stage that finds its input file
is not on this host (or is gone) fetches it again from the segment's source
object, and ``upload`` re-runs the model if the inferred output is elsewhere.
A stage that fails removes the scratch files it was given or made (its retry
fetches what it needs again), except the model's output when ``upload`` fails
transiently: the retry uses it if it runs on this host, and the worker's
periodic sweep removes it otherwise (``SCRATCH_MAX_AGE_SECONDS``).

Uploads of one segment key are ordered as ``ordering`` says, before the output
is written (a conditional PUT) as well as for the row (``output_generation``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from video_worker.errors import ObjectNotFound, SegmentTooLarge, TransientError, WriteConflict, classify
from video_worker.keys import build_output_segment_key, previous_segment
from video_worker.limits import Deadline
from video_worker.ordering import Upload
from video_worker.ports import CompletionStore, ModelRunner, ObjectInfo, ObjectStorage, Scratch
from video_worker.segments import Downloaded, Inferred, SeamContext, Segment, SegmentCompletion, Uploaded, s3_uri

log = logging.getLogger(__name__)

#: Conditional output writes lost to other chains of the same segment before giving up (a retry follows).
WRITE_ATTEMPTS = 5
#: Seconds between looks for a previous segment not uploaded yet (``_fetch_context``).
CONTEXT_POLL_SECONDS = 2.0
#: User metadata of an output object (x-amz-meta-*): which upload it was made from.
META_ETAG, META_SEQUENCER, META_VERSION, META_GENERATION, META_MODEL = (
    "source-etag", "source-sequencer", "source-version-id", "generation", "model")


@dataclass
class Dependencies:
    """Everything a stage needs, built once per worker process (``worker/context.py``)."""

    storage: ObjectStorage
    completions: CompletionStore
    model: ModelRunner
    model_name: str
    scratch: Scratch
    output_bucket: str
    max_segment_bytes: int = 2 * 1024**3
    #: How long ``infer`` waits for the previous segment to be uploaded, for a model that reads it (``context``).
    context_wait_seconds: float = 60.0
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)


@contextlib.contextmanager
def _removed_on_failure(rt: Dependencies, *paths: Path | None) -> Iterator[list[Path]]:
    """Remove ``paths`` (and any appended to the yielded list) if the block fails."""
    owned = [p for p in paths if p is not None]
    try:
        yield owned
    except BaseException:
        for path in owned:
            rt.scratch.remove(path)
        raise


def _fetch_input(segment: Segment, rt: Dependencies, deadline: Deadline | None) -> Path:
    dest = rt.scratch.path_for(segment, "input")
    with rt.scratch.writing(dest) as tmp:
        rt.storage.download(segment.segment_s3_uri, tmp, segment.source_version_id, segment.source_size, deadline)
    return dest


def _with_source(segment: Segment, rt: Dependencies) -> tuple[Segment, ObjectInfo | None]:
    """The segment with its source version and size (one HEAD if the event did not carry them)."""
    if segment.source_etag and segment.source_size is not None:
        return segment, None
    info = rt.storage.head(segment.segment_s3_uri)
    return segment.model_copy(
        update={
            "source_etag": info.etag,
            "source_size": info.size,
            "source_version_id": segment.source_version_id or info.version_id,
        }
    ), info


def _current_upload(segment: Segment, rt: Dependencies, known: ObjectInfo | None = None) -> Upload:
    """The upload S3 holds now at the segment key (one HEAD unless ``known``)."""
    info = known or rt.storage.head(segment.segment_s3_uri)
    return Upload(info.etag, None, info.version_id)


def already_done(segment: Segment, rt: Dependencies, known: ObjectInfo | None = None) -> str | None:
    """Why this upload needs no work (its row exists, or a newer upload's does), or None."""
    row = rt.completions.get(segment.job_id, segment.segment_index)
    if row is None:
        return None
    mine = segment.upload
    order = mine.compare(Upload(row.source_etag, row.source_sequencer, row.source_version_id))
    if order == "same":
        return f"already completed for ETag {segment.source_etag}"
    if order == "older":
        return "a newer upload of this segment is already completed"
    if order is None and not mine.is_current(_current_upload(segment, rt, known)):
        return "a newer upload of this segment is in S3 (its own event brings it)"
    return None


def _run_model(segment: Segment, src: Path, rt: Dependencies, deadline: Deadline | None) -> tuple[Path, SeamContext]:
    """Run the model on ``src``, with the previous segment as its context if it reads one: (output, context)."""
    dest = rt.scratch.path_for(segment, "output")
    context, seam = _fetch_context(segment, rt, deadline) if rt.model.context_frames else (None, None)
    try:
        with _removed_on_failure(rt, dest), rt.scratch.writing(dest) as tmp:
            rt.model.run(src, tmp, segment.mode, deadline or Deadline.none("video_worker.infer"), context)
    finally:
        if context is not None:
            rt.scratch.remove(context)
    return dest, seam


def _fetch_context(segment: Segment, rt: Dependencies, deadline: Deadline | None) -> tuple[Path | None, SeamContext]:
    """The previous segment's input, downloaded for the model to read its last frames (``ports.Model``).

    Segments of a job are uploaded together but in no set order: one not there yet is waited for, up to
    ``context_wait_seconds`` (and the stage's deadline); after that the segment is converted without it, which the
    log and the completion row (``seam_context``) say: its cut may show a change in depth.
    """
    previous = previous_segment(segment)
    if previous is None:
        return None, None
    waited_until = time.monotonic() + rt.context_wait_seconds
    for attempt in itertools.count():
        try:
            info = rt.storage.head(previous.segment_s3_uri)
            break
        except ObjectNotFound:
            if attempt == 0:
                log.info("%r/%d: waiting up to %gs for the previous segment %s to be uploaded", segment.job_id,
                         segment.segment_index, rt.context_wait_seconds, previous.segment_s3_uri)
            left = min(waited_until - time.monotonic(), deadline.remaining() if deadline else float("inf"))
            if left <= 0:
                log.warning("%r/%d: the previous segment %s is not in the input bucket after %gs; converting "
                            "without it (the cut before this segment may show a change in depth)",
                            segment.job_id, segment.segment_index, previous.segment_s3_uri, rt.context_wait_seconds)
                return None, "missing"
            rt.sleep(min(CONTEXT_POLL_SECONDS, left))
    if info.size > rt.max_segment_bytes:
        log.warning("%r/%d: the previous segment is %d bytes, over the limit; converting without it",
                    segment.job_id, segment.segment_index, info.size)
        return None, "missing"
    dest = rt.scratch.path_for(previous, "input")
    with rt.scratch.writing(dest) as tmp:
        rt.storage.download(previous.segment_s3_uri, tmp, info.version_id, info.size, deadline)
    return dest, "previous"


def download(segment: Segment, rt: Dependencies, deadline: Deadline | None = None) -> Downloaded:
    """Fetch the segment to scratch, unless this upload was already processed.

    Before any byte moves: the size limit is checked and the completion row is
    read (one GetItem), so a duplicate event or a redelivered chain costs two
    small requests, not a download and an inference.
    """
    segment, info = _with_source(segment, rt)
    if segment.source_size is not None and segment.source_size > rt.max_segment_bytes:
        raise SegmentTooLarge(
            f"{segment.segment_s3_uri} is {segment.source_size} bytes; the limit is {rt.max_segment_bytes}"
        )
    reason = already_done(segment, rt, info)
    if reason:
        log.info("skipping %r/%d: %s", segment.job_id, segment.segment_index, reason)
        return Downloaded(segment=segment, input=None, skipped=reason)
    path = _fetch_input(segment, rt, deadline)
    return Downloaded(segment=segment, input=rt.scratch.describe(path))


def infer(prev: Downloaded, rt: Dependencies, deadline: Deadline | None = None) -> Inferred:
    segment = prev.segment
    src = rt.scratch.holds(prev.input) if prev.input else None
    with _removed_on_failure(rt, src) as owned:
        if src is None:
            log.info(
                "input of %s/%d is not on this host (%s); fetching it again",
                segment.job_id, segment.segment_index, prev.input.host if prev.input else "none",
            )
            src = _fetch_input(segment, rt, deadline)
            owned.append(src)
        out, seam = _run_model(segment, src, rt, deadline)
    rt.scratch.remove(src)
    log.info("inferred %r/%d with %s", segment.job_id, segment.segment_index, rt.model_name)
    return Inferred(segment=segment, output=rt.scratch.describe(out), model=rt.model_name,
                    model_fingerprint=rt.model.fingerprint, seam_context=seam)


def upload(prev: Inferred, rt: Dependencies, deadline: Deadline | None = None) -> Uploaded:
    """Write the output (``_write_output``). On a transient failure the output file is kept for the retry:
    a retry on this host uploads it instead of running the model again (elsewhere it is swept later)."""
    segment = prev.segment
    out = rt.scratch.holds(prev.output)
    model, fingerprint, seam = prev.model, prev.model_fingerprint, prev.seam_context
    if out is None:
        log.warning(
            "output of %s/%d is not on this host (%s); fetching the input and running %s again",
            segment.job_id, segment.segment_index, prev.output.host, rt.model_name,
        )
        with _removed_on_failure(rt) as owned:
            src = _fetch_input(segment, rt, deadline)
            owned.append(src)
            out, seam = _run_model(segment, src, rt, deadline)
        rt.scratch.remove(src)
        model, fingerprint = rt.model_name, rt.model.fingerprint
    uri = s3_uri(rt.output_bucket, build_output_segment_key(segment.job_id, segment.segment_index))
    made_by = _model_label(model, fingerprint)
    try:
        generation, stale = _write_output(segment, out, uri, made_by, rt, deadline)
    except BaseException as exc:
        if not isinstance(classify(exc), TransientError):
            rt.scratch.remove(out)
        raise
    rt.scratch.remove(out)
    if stale:
        log.info("skipping %r/%d: %s", segment.job_id, segment.segment_index, stale)
    return Uploaded(segment=segment, output_s3_uri=uri, generation=generation, skipped=stale, model=model,
                    model_fingerprint=fingerprint, seam_context=seam)


def _model_label(model: str, fingerprint: str | None) -> str:
    """What made an output, as its metadata records it: the model and its fingerprint."""
    return f"{model}:{fingerprint}" if fingerprint else model


def _write_output(segment: Segment, out: Path, uri: str, made_by: str, rt: Dependencies,
                  deadline: Deadline | None) -> tuple[int | None, str | None]:
    """Write ``out`` at ``uri`` unless a newer upload's output is there: (generation, why stale)."""
    mine = segment.upload
    existing: ObjectInfo | None = None
    for attempt in range(WRITE_ATTEMPTS):
        if attempt:  # the first try assumes no output yet (the common case: no HEAD)
            try:
                existing = rt.storage.head(uri)
            except ObjectNotFound:
                existing = None
        generation = 1
        if existing is not None:
            meta = existing.metadata
            theirs = Upload(meta.get(META_ETAG), meta.get(META_SEQUENCER), meta.get(META_VERSION))
            order = mine.compare(theirs)
            if order == "same" and meta.get(META_MODEL) == made_by:
                return int(meta.get(META_GENERATION) or 1), None  # written by an earlier run of this upload
            if order is None:
                order = "newer" if mine.is_current(_current_upload(segment, rt)) else "older"
            if order == "older":
                return None, "a newer upload of this segment has written its output"
            generation = int(meta.get(META_GENERATION) or 0) + 1
        metadata = {META_ETAG: mine.etag or "", META_SEQUENCER: mine.sequencer or "",
                    META_VERSION: mine.version_id or "", META_GENERATION: str(generation), META_MODEL: made_by}
        try:
            rt.storage.upload(out, uri, metadata={k: v for k, v in metadata.items() if v},
                              if_match=existing.etag if existing else None, if_none_match=existing is None,
                              deadline=deadline)
        except WriteConflict:
            continue  # another chain of this segment wrote first: look again
        return generation, None
    raise WriteConflict(f"upload {uri}: lost {WRITE_ATTEMPTS} conditional writes in a row to other chains")


def record(prev: Uploaded, rt: Dependencies, deadline: Deadline | None = None) -> SegmentCompletion:
    """Put the completion row; a repeat of the same output leaves the row as it is."""
    segment = prev.segment
    completion = SegmentCompletion(
        job_id=segment.job_id,
        segment_index=segment.segment_index,
        output_s3_uri=prev.output_s3_uri,
        completed_at=int(rt.clock()),
        total_segments=segment.total_segments,
        source_etag=segment.source_etag,
        source_sequencer=segment.source_sequencer,
        source_version_id=segment.source_version_id,
        output_generation=prev.generation,
        model=prev.model,
        model_fingerprint=prev.model_fingerprint,
        seam_context=prev.seam_context,
    )
    if rt.completions.put(completion):
        log.info("recorded %r/%d", segment.job_id, segment.segment_index)
    else:
        log.info("already recorded %r/%d for this or a newer upload", segment.job_id, segment.segment_index)
    return completion


@dataclass(frozen=True)
class Stage:
    """One stage: its task name, the payload it takes and returns, the function, its default time limit."""

    name: str
    input: type[BaseModel]
    output: type[BaseModel]
    run: Callable[[Any, Dependencies, Deadline], BaseModel]
    time_limit: float  # seconds; a GPU model may take an hour on a long segment, a transfer a quarter of it


STAGES: tuple[Stage, ...] = (
    Stage("video_worker.download", Segment, Downloaded, download, 900.0),
    Stage("video_worker.infer", Downloaded, Inferred, infer, 3600.0),
    Stage("video_worker.upload", Inferred, Uploaded, upload, 900.0),
    Stage("video_worker.record", Uploaded, SegmentCompletion, record, 120.0),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}
#: The task non-Python publishers send to start a segment's chain.
ENTRY_TASK = "video_worker.process"


def stage_limits(overrides: Mapping[str, float]) -> dict[str, float]:
    """Seconds per stage: the defaults above with ``STAGE_TIME_LIMITS`` applied."""
    return {**{stage.name: stage.time_limit for stage in STAGES}, **overrides}
