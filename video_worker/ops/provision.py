"""Create the AWS resources the worker expects, the way production has them.

Used by ``video-worker dev`` and ``video-worker provision`` and by the
integration tests: two buckets, the SegmentCompletions table, the video-worker
queue with a dead-letter queue (redrive policy), the dead-letter queue of
failed chains, and the S3 → SQS
notification for ``segments/*.mp4``. Every step tolerates an existing resource.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from typing import Any

from video_worker.keys import SEGMENT_PREFIX, SEGMENT_SUFFIX


@dataclass(frozen=True)
class Resources:
    input_bucket: str
    output_bucket: str
    table: str
    queue_url: str = ""
    raw_dlq_url: str = ""  # the raw queue's redrive target: messages the bridge cannot parse
    dlq_url: str = ""  # chains that failed for good (VIDEO_WORKER_DLQ_URL)

    def env(self) -> dict[str, str]:
        """The seed's environment variables for these resources."""
        return {
            "INPUT_BUCKET_NAME": self.input_bucket,
            "OUTPUT_BUCKET_NAME": self.output_bucket,
            "SEGMENT_COMPLETIONS_TABLE_NAME": self.table,
            "VIDEO_WORKER_QUEUE_URL": self.queue_url,
            "VIDEO_WORKER_DLQ_URL": self.dlq_url,
        }


def provision(
    s3: Any,
    dynamodb: Any,
    sqs: Any,
    *,
    prefix: str = "video-worker",
    input_bucket: str | None = None,
    output_bucket: str | None = None,
    table: str | None = None,
    max_receive_count: int = 3,
    visibility_timeout: int = 60,
) -> Resources:
    """Create (or reuse) every resource; names default to ``{prefix}-input`` etc."""
    res = Resources(
        input_bucket=input_bucket or f"{prefix}-input",
        output_bucket=output_bucket or f"{prefix}-output",
        table=table or f"{prefix}-segment-completions",
    )
    for bucket in (res.input_bucket, res.output_bucket):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        _create_table(dynamodb, res.table)
    raw_dlq_url = sqs.create_queue(QueueName=f"{prefix}-events-dlq")["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-dead-letters")["QueueUrl"]
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-events",
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": _arn(sqs, raw_dlq_url), "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    queue_arn = _arn(sqs, queue_url)
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"Policy": json.dumps(_s3_may_send(queue_arn, res.input_bucket))}
    )
    s3.put_bucket_notification_configuration(
        Bucket=res.input_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "video-worker-segments",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": SEGMENT_PREFIX},
                                {"Name": "suffix", "Value": SEGMENT_SUFFIX},
                            ]
                        }
                    },
                }
            ]
        },
    )
    return replace(res, queue_url=queue_url, raw_dlq_url=raw_dlq_url, dlq_url=dlq_url)


def _create_table(dynamodb: Any, table: str) -> None:
    dynamodb.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "job_id", "KeyType": "HASH"},
            {"AttributeName": "segment_index", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "job_id", "AttributeType": "S"},
            {"AttributeName": "segment_index", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def _arn(sqs: Any, queue_url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attrs["QueueArn"])


def _s3_may_send(queue_arn: str, bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
