"""SegmentCompletions: the DynamoDB adapter behind a small Protocol.

Table key schema (owned by the existing pipeline): partition key ``job_id``
(S), sort key ``segment_index`` (N); attributes ``output_s3_uri`` (S),
``completed_at`` (N, Unix seconds), ``total_segments`` (N). We add
``source_etag`` and ``source_sequencer`` when known, so that a repeat of the
same upload is recognised and an older event never overwrites a newer one.
"""

from __future__ import annotations

from typing import Any, Protocol

from video_worker.aws import SDK_ERRORS, translate
from video_worker.payloads import SegmentCompletion

SEQUENCER_WIDTH = 64


def sortable_sequencer(sequencer: str) -> str:
    """S3 sequencers compare as hex strings after right-padding the shorter with zeros."""
    return sequencer.upper().ljust(SEQUENCER_WIDTH, "0")


class CompletionStore(Protocol):
    def get(self, job_id: str, segment_index: int) -> SegmentCompletion | None: ...

    def put(self, completion: SegmentCompletion) -> bool:
        """Write the row unless it already records this (or a newer) source; True if written."""
        ...


class DynamoCompletionStore:
    """``CompletionStore`` over a boto3 DynamoDB client."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, job_id: str, segment_index: int) -> SegmentCompletion | None:
        try:
            item = self._client.get_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}, "segment_index": {"N": str(segment_index)}},
                ConsistentRead=True,
            ).get("Item")
        except SDK_ERRORS as exc:
            raise translate(exc, f"get completion {job_id}/{segment_index}") from exc
        if not item:
            return None
        return SegmentCompletion(
            job_id=item["job_id"]["S"],
            segment_index=int(item["segment_index"]["N"]),
            output_s3_uri=item["output_s3_uri"]["S"],
            completed_at=int(float(item["completed_at"]["N"])),
            total_segments=int(item["total_segments"]["N"]),
            source_etag=item.get("source_etag", {}).get("S"),
            source_sequencer=item.get("source_sequencer", {}).get("S"),
        )

    def put(self, completion: SegmentCompletion) -> bool:
        item = {
            "job_id": {"S": completion.job_id},
            "segment_index": {"N": str(completion.segment_index)},
            "output_s3_uri": {"S": completion.output_s3_uri},
            "completed_at": {"N": str(completion.completed_at)},
            "total_segments": {"N": str(completion.total_segments)},
        }
        condition = "attribute_not_exists(job_id)"
        values: dict[str, Any] = {}
        if completion.source_etag:
            item["source_etag"] = {"S": completion.source_etag}
            values[":etag"] = {"S": completion.source_etag}
            condition += " OR attribute_not_exists(source_etag) OR source_etag <> :etag"
        if completion.source_sequencer:
            seq = sortable_sequencer(completion.source_sequencer)
            item["source_sequencer"] = {"S": seq}
            values[":seq"] = {"S": seq}
            # Never let an older upload's (late) event replace a newer one's row.
            condition = f"({condition}) AND (attribute_not_exists(source_sequencer) OR source_sequencer < :seq)"
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._client.put_item(**kwargs)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        except SDK_ERRORS as exc:
            raise translate(exc, f"put completion {completion.job_id}/{completion.segment_index}") from exc
        return True
