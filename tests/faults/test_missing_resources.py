"""A deployment missing its table or output bucket: each named in a dead letter; replay after the fix completes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.faults.conftest import Outcome, Report, dead_letters, scratch_files, upload
from tests.support.stack import Aws, Processes, wait_until
from video_worker.ops.provision import _create_table

pytestmark = pytest.mark.integration


def _replay_all(procs: Processes, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "video_worker", "dlq", "replay", "--all"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_missing_table_then_missing_bucket_are_named_and_replay_completes(
        aws: Aws, procs: Processes, report: Report) -> None:
    table, bucket = f"{aws.prefix}-not-yet-table", f"{aws.prefix}-not-yet-output"
    names = {"SEGMENT_COMPLETIONS_TABLE_NAME": table, "OUTPUT_BUCKET_NAME": bucket}
    worker = procs.worker(**names)
    procs.bridge()
    started = time.monotonic()
    sent = upload(aws, "missing", 1)
    [first] = wait_until(lambda: dead_letters(procs), 60, "the first dead letter")
    assert first["error_type"] == "TableNotFound" and table in first["error"], first

    _create_table(aws.dynamodb, table)
    assert "replayed" in _replay_all(procs, procs.env(**names))
    [second] = wait_until(lambda: dead_letters(procs), 60, "the second dead letter")
    assert second["error_type"] == "BucketNotFound" and bucket in second["error"], second
    assert second["failed_task"] == "video_worker.upload"

    aws.s3.create_bucket(Bucket=bucket)
    _replay_all(procs, procs.env(**names))
    wait_until(lambda: aws.dynamodb.scan(TableName=table)["Count"] == 1, 60, "the row in the new table")
    output = aws.s3.get_object(Bucket=bucket, Key="jobs/missing/segments/0.mp4")["Body"].read()
    report.outcomes.append(Outcome("table missing, then output bucket missing; each fixed, then `dlq replay --all`",
                                   1, int(output == sent[0]), 0, int(output != sent[0]), 0,
                                   "2 missing resources", time.monotonic() - started,
                                   "dead letters named TableNotFound, then BucketNotFound; replay completed"))
    assert output == sent[0]
    assert dead_letters(procs) == []
    assert scratch_files(procs.tmp / "scratch") == []
    assert worker.alive()
