"""The reference: the plain loop of the original design, in plain boto3.

receive one message → download → model → upload → put completion → delete, one
segment at a time, with the same model (``MODEL``, built by
``video_worker.inference.load_model``) and the same environment variables as
the worker. No retries, no idempotency, no dead letters: it is the yardstick
for throughput, latency and AWS requests, not a production design.

    python -m bench.reference   # until killed (SIGTERM)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_plus

import boto3

from video_worker.inference import load_model
from video_worker.keys import build_output_segment_key, parse_segment_key
from video_worker.settings import load_settings


def run(env: dict[str, str], scratch: Path, *, stop: Callable[[], bool] = lambda: False,
        wait_seconds: int = 20) -> int:
    """Process segments until ``stop()`` is true between two receives; return how many."""
    endpoint, region = env.get("AWS_ENDPOINT_URL") or None, env.get("AWS_REGION", "us-east-1")
    s3, ddb, sqs = (boto3.client(name, endpoint_url=endpoint, region_name=region)
                    for name in ("s3", "dynamodb", "sqs"))
    model = load_model(env.get("MODEL", "passthrough"), load_settings(**env))  # the seed variables of ``env``
    queue, done = env["VIDEO_WORKER_QUEUE_URL"], 0
    src, dst = scratch / f"input-{os.getpid()}.mp4", scratch / f"output-{os.getpid()}.mp4"
    while not stop():
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=wait_seconds)
        for message in messages.get("Messages", []):
            for record in json.loads(message["Body"]).get("Records", []):
                bucket, key = record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])
                segment = parse_segment_key(bucket, key)
                if segment is None or bucket != env["INPUT_BUCKET_NAME"]:
                    continue
                s3.download_file(bucket, key, str(src))
                model.infer(src, dst, segment.mode)
                out_key = build_output_segment_key(segment.job_id, segment.segment_index)
                s3.upload_file(str(dst), env["OUTPUT_BUCKET_NAME"], out_key, ExtraArgs={"ContentType": "video/mp4"})
                ddb.put_item(TableName=env["SEGMENT_COMPLETIONS_TABLE_NAME"], Item={
                    "job_id": {"S": segment.job_id},
                    "segment_index": {"N": str(segment.segment_index)},
                    "output_s3_uri": {"S": f"s3://{env['OUTPUT_BUCKET_NAME']}/{out_key}"},
                    "completed_at": {"N": str(int(time.time()))},
                    "total_segments": {"N": str(segment.total_segments)},
                })
                done += 1
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return done


def main() -> int:
    """Run until killed; with ``BENCH_GO_FILE`` set, start receiving once that file exists."""
    go = os.environ.get("BENCH_GO_FILE")
    print("reference: ready", flush=True)
    while go and not Path(go).exists():
        time.sleep(0.005)
    scratch = Path(os.environ.get("VIDEO_WORKER_SCRATCH_DIR") or tempfile.mkdtemp(prefix="reference-"))
    scratch.mkdir(parents=True, exist_ok=True)
    run(dict(os.environ), scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
