"""Segment and output keys: the only place a segment key is parsed.

Input:  ``segments/{job_id}/{segment_index:05d}_{total_segments:05d}_{mode}.mp4``
Output: ``jobs/{job_id}/segments/{segment_index}.mp4`` (index not padded)

Pure functions, no I/O. ``key`` is the already-decoded object key.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from video_worker.segments import MODES, Segment, check_job_id, not_a_mode, s3_uri, split_s3_uri

SEGMENT_PREFIX = "segments/"
SEGMENT_SUFFIX = ".mp4"
_FILE_NAME = re.compile(r"(?P<index>[0-9]{5})_(?P<total>[0-9]{5})_(?P<mode>[A-Za-z0-9]+)\.mp4\Z")


def parse_segment_key(bucket: str, key: str) -> Segment | None:
    """Return the payload for a segment key, or ``None`` if ``key`` is not one."""
    if not bucket or not key.startswith(SEGMENT_PREFIX):
        return None
    rest = key[len(SEGMENT_PREFIX) :]
    job_id, sep, file_name = rest.rpartition("/")
    if not sep:
        return None
    match = _FILE_NAME.match(file_name)
    if match is None:
        return None
    try:
        return Segment(
            job_id=job_id,
            segment_index=int(match["index"]),
            total_segments=int(match["total"]),
            segment_s3_uri=s3_uri(bucket, key),
            mode=match["mode"],  # validated by pydantic
        )
    except ValidationError:
        return None


def why_not_segment_key(key: str) -> str:
    """A short human reason why ``key`` is not a segment key (for skip logs)."""
    if not key.startswith(SEGMENT_PREFIX):
        return f"key is not under {SEGMENT_PREFIX!r}"
    job_id, sep, file_name = key[len(SEGMENT_PREFIX) :].rpartition("/")
    if not sep:
        return "key has no job id folder"
    try:
        check_job_id(job_id)
    except ValueError as exc:
        return str(exc)
    match = _FILE_NAME.match(file_name)
    if match is None:
        return "file name is not {index:05d}_{total:05d}_{mode}.mp4"
    if match["mode"] not in MODES:
        return not_a_mode(match["mode"])
    if int(match["total"]) < 1 or int(match["index"]) >= int(match["total"]):
        return "segment index is not below total segments"
    return "not a segment key"


def build_segment_key(job_id: str, segment_index: int, total_segments: int, mode: str) -> str:
    """``segments/{job_id}/{segment_index:05d}_{total_segments:05d}_{mode}.mp4``."""
    return f"{SEGMENT_PREFIX}{job_id}/{segment_index:05d}_{total_segments:05d}_{mode}{SEGMENT_SUFFIX}"


def previous_segment(segment: Segment) -> Segment | None:
    """The segment before ``segment`` in its job (same bucket, total and mode), or None for the first."""
    if segment.segment_index == 0:
        return None
    bucket, _ = split_s3_uri(segment.segment_s3_uri)
    index = segment.segment_index - 1
    key = build_segment_key(segment.job_id, index, segment.total_segments, segment.mode)
    return segment.model_copy(update={"segment_index": index, "segment_s3_uri": s3_uri(bucket, key),
                                      "source_etag": None, "source_version_id": None, "source_sequencer": None,
                                      "source_size": None})


def build_output_segment_key(job_id: str, segment_index: int) -> str:
    """``jobs/{job_id}/segments/{segment_index}.mp4``."""
    check_job_id(job_id)
    if isinstance(segment_index, bool) or not isinstance(segment_index, int) or segment_index < 0:
        raise ValueError(f"segment_index must be an integer >= 0, not {segment_index!r}")
    return f"jobs/{job_id}/segments/{segment_index}.mp4"
