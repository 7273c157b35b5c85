"""SegmentCompletions: ``ports.CompletionStore`` over a boto3 DynamoDB client.

Table key schema (owned by the existing pipeline): partition key ``job_id``
(S), sort key ``segment_index`` (N); attributes ``output_s3_uri`` (S),
``completed_at`` (N, Unix seconds), ``total_segments`` (N). We add the
source upload's ``source_etag``/``source_sequencer``/``source_version_id``
and the ``output_generation`` of the output the row describes (``ordering``):
a row is replaced only by one of a newer generation, so duplicates and late
chains of older uploads never overwrite it.
"""

from __future__ import annotations

from typing import Any

from video_worker.adapters.aws import SDK_ERRORS, translate
from video_worker.ordering import sortable_sequencer
from video_worker.segments import SegmentCompletion

_OPTIONAL_S = ("source_etag", "source_sequencer", "source_version_id", "model", "model_fingerprint", "seam_context")


class DynamoCompletionStore:
    """``ports.CompletionStore`` over a boto3 DynamoDB client."""

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
            raise translate(exc, f"get completion {job_id}/{segment_index} from table {self._table}") from exc
        return None if not item else completion_from_item(item)

    def rows(self, job_id: str) -> list[SegmentCompletion]:
        """Every row of ``job_id`` (one Query, paginated), by segment index."""
        kwargs: dict[str, Any] = {"TableName": self._table, "KeyConditionExpression": "job_id = :j",
                                  "ExpressionAttributeValues": {":j": {"S": job_id}}, "ConsistentRead": True}
        rows: list[SegmentCompletion] = []
        try:
            while True:
                page = self._client.query(**kwargs)
                rows.extend(completion_from_item(item) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return sorted(rows, key=lambda row: row.segment_index)
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except SDK_ERRORS as exc:
            raise translate(exc, f"query completions of {job_id} in table {self._table}") from exc

    def put(self, completion: SegmentCompletion) -> bool:
        item = completion_item(completion)
        values: dict[str, Any] = {}
        if completion.output_generation is not None:
            values[":gen"] = {"N": str(completion.output_generation)}
            condition = ("attribute_not_exists(job_id) OR attribute_not_exists(output_generation) "
                         "OR output_generation < :gen")
        else:  # a chain published before outputs had generations: the older rule
            condition = "attribute_not_exists(job_id)"
            if completion.source_etag:
                values[":etag"] = {"S": completion.source_etag}
                condition += " OR attribute_not_exists(source_etag) OR source_etag <> :etag"
            if completion.source_sequencer:
                values[":seq"] = item["source_sequencer"]
                condition = f"({condition}) AND (attribute_not_exists(source_sequencer) OR source_sequencer < :seq)"
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._client.put_item(**kwargs)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        except SDK_ERRORS as exc:
            raise translate(exc, f"put completion {completion.job_id}/{completion.segment_index} "
                                 f"into table {self._table}") from exc
        return True


def completion_item(completion: SegmentCompletion) -> dict[str, Any]:
    """The row's DynamoDB attributes (optional ones only when known)."""
    item: dict[str, Any] = {
        "job_id": {"S": completion.job_id},
        "segment_index": {"N": str(completion.segment_index)},
        "output_s3_uri": {"S": completion.output_s3_uri},
        "completed_at": {"N": str(completion.completed_at)},
        "total_segments": {"N": str(completion.total_segments)},
    }
    for name in _OPTIONAL_S:
        value = getattr(completion, name)
        if value:
            item[name] = {"S": sortable_sequencer(value) if name == "source_sequencer" else value}
    if completion.output_generation is not None:
        item["output_generation"] = {"N": str(completion.output_generation)}
    return item


def completion_from_item(item: dict[str, Any]) -> SegmentCompletion:
    generation = item.get("output_generation", {}).get("N")
    return SegmentCompletion(
        job_id=item["job_id"]["S"],
        segment_index=int(item["segment_index"]["N"]),
        output_s3_uri=item["output_s3_uri"]["S"],
        completed_at=int(float(item["completed_at"]["N"])),
        total_segments=int(item["total_segments"]["N"]),
        output_generation=int(generation) if generation is not None else None,
        **{name: item.get(name, {}).get("S") for name in _OPTIONAL_S},
    )
