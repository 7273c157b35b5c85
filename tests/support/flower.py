"""Helpers for the monitoring tests: a real Flower process and its HTTP API."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.stack import Aws, Proc, Processes, wait_until
from video_worker.keys import build_segment_key
from video_worker.ops.sample import sample_segment
from video_worker.segments import Segment, s3_uri

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED_MODEL = "tests.support.flower_models:scripted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 15) -> Any:
    """The decoded JSON (or text) at ``url``; ``None`` if it cannot be fetched."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


@dataclass
class Flower:
    proc: Proc
    url: str

    def get(self, path: str) -> Any:
        return http_get(self.url + path)

    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.get("/api/tasks") or {}

    def tasks_of(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Task name → task, for the tasks whose arguments name ``job_id``."""
        return {t["name"]: t for t in self.tasks().values() if f"'job_id': '{job_id}'" in (t.get("args") or "")}


def start_flower(procs: Processes, **extra: str) -> Flower:
    """``celery -A video_worker flower`` as a user starts it, on a free loopback port."""
    port = free_port()
    env = procs.env(FLOWER_UNAUTHENTICATED_API="true", **extra)
    argv = [sys.executable, "-m", "celery", "-A", "video_worker", "flower", f"--port={port}", "--address=127.0.0.1"]
    flower = Flower(procs.start("flower", argv, env), f"http://127.0.0.1:{port}")
    wait_until(lambda: flower.get("/healthcheck") == "OK", 30, "Flower to answer")
    return flower


def ready(worker: Proc) -> bool:
    return " ready." in worker.log()


def put_segment(aws: Aws, job_id: str, size: int = 20_000) -> Segment:
    """Upload a segment straight to the input bucket and return the payload of its chain."""
    key = build_segment_key(job_id, 0, 1, "sbs")
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=key, Body=sample_segment(size, seed=len(job_id)))
    return Segment(job_id=job_id, segment_index=0, total_segments=1,
                              segment_s3_uri=s3_uri(aws.resources.input_bucket, key), mode="sbs")


def scripted_worker_env() -> dict[str, str]:
    """A worker running ``monitoring_models.scripted`` and retrying at once."""
    return {"MODEL": SCRIPTED_MODEL, "PYTHONPATH": str(ROOT), "TASK_RETRY_BASE_SECONDS": "0",
            "TASK_RETRY_MAX_DELAY_SECONDS": "0"}
