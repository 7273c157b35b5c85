"""The real-process harness: AWS resources on the emulator, the project's commands as child processes.

``Aws`` is one test's resources (unique names) on the shared moto server,
``Processes`` starts ``celery -A video_worker worker`` and ``video-worker
bridge`` wired to them by the same environment variables a deployment uses,
``wait_until`` awaits a condition instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from video_worker.ops.dev import dev_environment
from video_worker.ops.provision import Resources
from video_worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Aws:
    endpoint: str
    resources: Resources
    s3: Any
    dynamodb: Any
    sqs: Any
    prefix: str

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "input_bucket_name": self.resources.input_bucket,
            "output_bucket_name": self.resources.output_bucket,
            "segment_completions_table_name": self.resources.table,
            "video_worker_queue_url": self.resources.queue_url,
            "aws_endpoint_url": self.endpoint,
            "aws_region": "us-east-1",
            "broker_queue_prefix": f"{self.prefix}-",
        }
        values.update(overrides)
        return Settings(**values)

    def completion_rows(self, job_id: str) -> list[dict[str, Any]]:
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.resources.table,
            KeyConditionExpression="job_id = :j",
            ExpressionAttributeValues={":j": {"S": job_id}},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page["Items"]]

    def completion_count(self, job_id: str) -> int:
        """How many rows ``job_id`` has, without moving them (the emulator serialises
        hundreds of items slowly: polling whole rows stalled it under load)."""
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.resources.table,
            KeyConditionExpression="job_id = :j",
            ExpressionAttributeValues={":j": {"S": job_id}},
            ConsistentRead=True,
            Select="COUNT",
        )
        return sum(int(page["Count"]) for page in pages)

    def output(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.resources.output_bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def queue_depth(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill_hard(self) -> None:
        """SIGKILL the process and everything it started (a host dying)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(30)


@dataclass
class Processes:
    """Starts the project's real commands as child processes; stops them at teardown."""

    aws: Aws
    tmp: Path
    started: list[Proc] = field(default_factory=list)

    def env(self, scratch: Path | None = None, **extra: str) -> dict[str, str]:
        env = dev_environment(self.aws.endpoint, self.aws.resources, scratch or self.tmp / "scratch")
        env["BROKER_QUEUE_PREFIX"] = f"{self.aws.prefix}-"
        env["BROKER_POLLING_INTERVAL"] = "0.1"
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))  # tests.support.*
        env.update(extra)
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.tmp / f"{name}.log"
        out = log_path.open("wb")
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp,
                                 start_new_session=True)
        proc = Proc(name, popen, log_path)
        self.started.append(proc)
        return proc

    def worker(self, name: str = "worker", *args: str, scratch: Path | None = None, **extra: str) -> Proc:
        """``celery -A video_worker worker``; its requests are signed with access key ``name`` (the proxy's caller)."""
        argv = [sys.executable, "-m", "celery", "-A", "video_worker", "worker", "-l", "INFO",
                "-n", f"{name}@%h", *args]
        return self.start(name, argv, self.env(scratch, **{"AWS_ACCESS_KEY_ID": name, **extra}))

    def bridge(self, name: str = "bridge", **extra: str) -> Proc:
        argv = [sys.executable, "-m", "video_worker", "bridge"]
        return self.start(name, argv, self.env(**{"AWS_ACCESS_KEY_ID": name, **extra}))

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.popen.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill_hard()
