"""How users start and call the worker: seed env vars only, the CLI, other services."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import av
import pytest

from tests.support.media import probe
from tests.support.stack import Aws, Processes, wait_until
from video_worker.celery_app import create_app
from video_worker.keys import build_output_segment_key, build_segment_key
from video_worker.models.stereo.synthetic import write_clip
from video_worker.ops.dev import FAKE_CREDENTIALS
from video_worker.ops.sample import sample_segment
from video_worker.segments import Segment, s3_uri
from video_worker.worker.chain import build_chain

pytestmark = pytest.mark.integration


def _seed_env(aws: Aws) -> dict[str, str]:
    """Only what production sets: the seed's variables (and credentials)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(FAKE_CREDENTIALS)
    res = aws.resources
    env.update(
        INPUT_BUCKET_NAME=res.input_bucket,
        OUTPUT_BUCKET_NAME=res.output_bucket,
        SEGMENT_COMPLETIONS_TABLE_NAME=res.table,
        VIDEO_WORKER_QUEUE_URL=res.queue_url,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=aws.endpoint,
    )
    return env


def test_seed_env_vars_only_with_the_documented_commands(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """The seed's variables and the documented commands, nothing else: the default model is the converter."""
    env = _seed_env(aws)
    worker = procs.start("worker", [sys.executable, "-m", "celery", "-A", "video_worker", "worker", "-l", "INFO"], env)
    bridge = procs.start("bridge", [sys.executable, "-m", "video_worker", "bridge"], env)
    src = tmp_path / "clip.mp4"
    write_clip(src, seconds=1.0, width=160, height=96, seed=9)
    out = subprocess.run(
        [sys.executable, "-m", "video_worker", "submit", str(src), "--job-id", "seed-only", "--index", "4",
         "--total", "5", "--mode", "anaglyph"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.strip() == s3_uri(aws.resources.input_bucket, "segments/seed-only/00004_00005_anaglyph.mp4")
    key = build_output_segment_key("seed-only", 4)
    assert key == "jobs/seed-only/segments/4.mp4"
    converted = tmp_path / "out.mp4"
    converted.write_bytes(wait_until(lambda: aws.output(key), 120, "output"))
    given, made = probe(src), probe(converted)
    assert made.size == given.size and len(made.pts) == len(given.pts)  # anaglyph: W x H, every frame
    assert made.metadata.get("comment", "").startswith("stereo ")  # converted, not copied
    rows = wait_until(lambda: aws.completion_rows("seed-only"), 30, "row")
    assert len(rows) == 1 and rows[0]["total_segments"] == {"N": "5"}
    assert worker.alive() and bridge.alive()
    # SIGTERM stops the bridge cleanly even in the middle of a 20 s long poll.
    bridge.popen.terminate()
    assert bridge.popen.wait(15) == 0
    assert "bridge stopped" in bridge.log()


def _payload(aws: Aws, job_id: str, data: bytes) -> Segment:
    key = build_segment_key(job_id, 0, 1, "sbs")
    # Straight into the bucket with the notification removed would bypass the
    # bridge; here the chain is started by the caller, and the bridge is not running.
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=data)
    return Segment(job_id=job_id, segment_index=0, total_segments=1,
                              segment_s3_uri=s3_uri(aws.resources.input_bucket, key), mode="sbs")


def test_python_service_applies_the_chain(aws: Aws, procs: Processes) -> None:
    procs.worker()
    data = sample_segment(40_000, seed=1)
    app = create_app(aws.settings())
    build_chain(_payload(aws, "from-python", data), app).apply_async()
    assert wait_until(lambda: aws.output(build_output_segment_key("from-python", 0)), 60, "output") == data
    assert len(wait_until(lambda: aws.completion_rows("from-python"), 30, "row")) == 1


def test_non_python_service_publishes_by_task_name(aws: Aws, procs: Processes) -> None:
    """The message a Node or Go service sends: plain JSON and base64, no Celery library."""
    procs.worker()
    data = sample_segment(30_000, seed=2)
    payload = _payload(aws, "from-elsewhere", data).model_dump(mode="json")
    task_id = str(uuid.uuid4())
    body = [[payload], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    envelope = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "js", "task": "video_worker.process", "id": task_id, "root_id": task_id,
                    "parent_id": None, "group": None, "retries": 0, "eta": None, "expires": None},
        "properties": {"correlation_id": task_id, "delivery_mode": 2, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": task_id,
                       "delivery_info": {"exchange": "", "routing_key": "tasks"}},
    }
    queue_url = aws.sqs.create_queue(QueueName=f"{aws.prefix}-tasks")["QueueUrl"]
    aws.sqs.send_message(QueueUrl=queue_url, MessageBody=base64.b64encode(json.dumps(envelope).encode()).decode())
    assert wait_until(lambda: aws.output(build_output_segment_key("from-elsewhere", 0)), 60, "output") == data
    assert len(wait_until(lambda: aws.completion_rows("from-elsewhere"), 30, "row")) == 1


def test_dev_demo_runs_the_whole_pipeline_on_the_embedded_emulator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INPUT_", "OUTPUT_", "SEGMENT_"))}
    out = subprocess.run([sys.executable, "-m", "video_worker", "dev", "--demo"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    for index in (0, 1):
        assert f"output s3://video-worker-output/jobs/demo-job/segments/{index}.mp4: 50 frames, sbs 1280x360, " \
               "checks passed" in out.stdout
    assert "joined with the concat demuxer: 100 frames, timestamps monotonic" in out.stdout
    preview = Path(out.stdout.rsplit("preview ", 1)[1].split()[0])
    with av.open(str(preview)) as image:  # a real PNG of one sbs frame
        frame = next(image.decode(video=0))
    assert (frame.width, frame.height) == (1280, 360)
