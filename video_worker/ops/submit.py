"""Upload a segment file to the input bucket under its segment key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from video_worker.adapters.aws import SDK_ERRORS, translate
from video_worker.errors import InvalidPayload
from video_worker.keys import build_segment_key, parse_segment_key
from video_worker.segments import s3_uri


def submit_segment(
    s3: Any, bucket: str, file: Path, *, job_id: str, index: int, total: int, mode: str
) -> str:
    """Upload ``file`` as segment ``index`` of ``total``; return its S3 URI."""
    if not file.is_file():
        raise InvalidPayload(f"no such file: {file}")
    key = build_segment_key(job_id, index, total, mode)
    if parse_segment_key(bucket, key) is None:
        raise InvalidPayload(f"not a valid segment: {key!r}")
    try:
        s3.upload_file(str(file), bucket, key, ExtraArgs={"ContentType": "video/mp4"})
    except SDK_ERRORS as exc:
        raise translate(exc, f"upload {file}") from exc
    return s3_uri(bucket, key)
