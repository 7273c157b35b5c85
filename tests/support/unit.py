"""Unit-scope helpers: the stages' real adapters on in-process moto (``mock_aws``; never for kombu's client)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from video_worker.adapters.dynamodb import DynamoCompletionStore
from video_worker.adapters.model_process import InlineRunner
from video_worker.adapters.s3 import S3Storage
from video_worker.adapters.scratch import ScratchDir
from video_worker.models.passthrough import PassthroughModel
from video_worker.segments import Segment
from video_worker.stages import Dependencies

REGION = "us-east-1"
#: The clock of ``dependencies()``: rows record this ``completed_at``.
NOW = 1_800_000_000.7


def dependencies(clients: dict[str, Any], root: Path, host: str = "h1") -> Dependencies:
    """The stages' dependencies on the in-process clients, with the pass-through model in this process."""
    return Dependencies(
        storage=S3Storage(clients["s3"], chunk_mib=5, threads=2),
        completions=DynamoCompletionStore(clients["dynamodb"], clients["res"].table),
        model=InlineRunner(PassthroughModel()),
        model_name="passthrough",
        scratch=ScratchDir(root, host=host),
        output_bucket=clients["res"].output_bucket,
        clock=lambda: NOW,
    )


def put_segment(clients: dict[str, Any], data: bytes, job: str = "job-1", index: int = 2) -> Segment:
    """Upload ``data`` as segment ``index`` of 4 of ``job``; return the segment."""
    key = f"segments/{job}/{index:05d}_00004_sbs.mp4"
    clients["s3"].put_object(Bucket=clients["res"].input_bucket, Key=key, Body=data)
    return Segment(job_id=job, segment_index=index, total_segments=4,
                   segment_s3_uri=f"s3://{clients['res'].input_bucket}/{key}", mode="sbs")
