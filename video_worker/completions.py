"""SegmentCompletions: the DynamoDB adapter behind a small Protocol.

Table key schema (owned by the existing pipeline): partition key ``job_id``
(S), sort key ``segment_index`` (N); attributes ``output_s3_uri`` (S),
``completed_at`` (N, Unix seconds), ``total_segments`` (N).
"""

from __future__ import annotations

from typing import Any, Protocol

from video_worker.aws import SDK_ERRORS, translate
from video_worker.payloads import SegmentCompletion


class CompletionStore(Protocol):
    def put(self, completion: SegmentCompletion) -> None: ...


class DynamoCompletionStore:
    """``CompletionStore`` over a boto3 DynamoDB client."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put(self, completion: SegmentCompletion) -> None:
        item = {
            "job_id": {"S": completion.job_id},
            "segment_index": {"N": str(completion.segment_index)},
            "output_s3_uri": {"S": completion.output_s3_uri},
            "completed_at": {"N": str(completion.completed_at)},
            "total_segments": {"N": str(completion.total_segments)},
        }
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except SDK_ERRORS as exc:
            raise translate(exc, f"put completion {completion.job_id}/{completion.segment_index}") from exc
