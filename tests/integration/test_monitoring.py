"""Flower, `celery inspect` and `celery control` over the SQS broker (SNS fanout), on a real moto server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_callers import _seed_env
from tests.support.flower import (
    ROOT,
    Flower,
    free_port,
    http_get,
    put_segment,
    ready,
    scripted_worker_env,
    start_flower,
)
from tests.support.stack import Aws, Processes, wait_until
from video_worker.adapters.aws import make_client
from video_worker.celery_app import create_app
from video_worker.keys import build_segment_key
from video_worker.models.stereo.synthetic import write_clip
from video_worker.ops.sample import sample_segment
from video_worker.worker.chain import build_chain

pytestmark = pytest.mark.integration

STAGES = ("video_worker.download", "video_worker.infer", "video_worker.upload", "video_worker.record")


def _celery(procs: Processes, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "video_worker", *args], env=procs.env(**extra),
                          capture_output=True, text=True, timeout=60, cwd=procs.tmp)


def _topics(aws: Aws) -> list[str]:
    """This test's SNS topics (their names start with its broker prefix)."""
    arns = [t["TopicArn"] for t in make_client("sns", aws.settings().aws).list_topics()["Topics"]]
    return [arn for arn in arns if arn.rsplit(":", 1)[-1].startswith(aws.prefix)]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_flower_shows_the_worker_and_every_task_with_its_final_state(aws: Aws, procs: Processes, pool: str) -> None:
    """Stages run by chain affinity send their own events: from the worker's main process
    (threads, the default) or from a prefork child."""
    worker = procs.worker("mon", **scripted_worker_env(), WORKER_POOL=pool)
    flower = start_flower(procs)
    # Events: the worker's heartbeats reach Flower (from then on, so do the tasks' events).
    name = wait_until(lambda: next(iter(flower.get("/api/workers?status=1") or {}), None), 30, "a live worker")
    assert name.startswith("mon@")
    app = create_app(aws.settings())
    for job in ("mon-ok", "flaky-mon", "reject-mon"):
        build_chain(put_segment(aws, job), app).apply_async()

    # Remote control: Flower's worker list comes from `inspect` (stats, registered, ...).
    # (Flower gives up on an inspect call after 1 s and lists the worker without it: ask again.)
    info = wait_until(lambda: (w := (flower.get("/api/workers?refresh=1") or {}).get(name))
                      and "stats" in w and "registered" in w and w, 30, "the worker's stats")
    assert info["stats"]["pool"]["max-concurrency"] == 3
    assert "video_worker.infer" in info["registered"]

    # Events: every task of the good chain, with its state, runtime and arguments.
    ok = wait_until(lambda: (t := flower.tasks_of("mon-ok")) and len(t) == 4
                    and all(x["state"] == "SUCCESS" for x in t.values()) and t, 30, "4 succeeded tasks")
    for stage in STAGES:
        task = ok[stage]
        assert task["worker"] == name and task["runtime"] > 0
        assert task["received"] and task["started"] and task["succeeded"] and task["exception"] is None
    assert ok["video_worker.download"]["sent"], "task-sent events come from the publisher"

    # A transient failure, retried, then succeeded; a rejected segment: FAILURE with its exception.
    # Events reach Flower in batches from more than one dispatcher (prefork: the pool child and the main process),
    # so the final SUCCESS may be shown before the retry's own events: wait for the whole expected state.
    flaky = wait_until(lambda: (t := flower.tasks_of("flaky-mon")) and len(t) == 4
                       and all(x["state"] == "SUCCESS" for x in t.values())
                       and t["video_worker.infer"]["retries"] == 1 and t["video_worker.infer"]["retried"] and t, 30,
                       "flaky chain done, its retry shown")
    assert flaky["video_worker.infer"]["retries"] == 1 and flaky["video_worker.infer"]["retried"]
    rejected = wait_until(lambda: (t := flower.tasks_of("reject-mon").get("video_worker.infer"))
                          and t["state"] == "FAILURE" and t, 30, "rejected infer")
    assert "ModelRejected" in rejected["exception"] and "scripted model rejects" in rejected["exception"]
    assert "video_worker.upload" not in flower.tasks_of("reject-mon")

    # A worker that stops shows offline.
    assert flower.get("/api/workers?status=1") == {name: True}
    worker.popen.terminate()
    assert worker.popen.wait(30) == 0
    wait_until(lambda: flower.get("/api/workers?status=1") == {name: False}, 30, "worker offline")


def test_inspect_ping_stats_active_and_rate_limit_answer(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("ctl")
    wait_until(lambda: ready(worker), 30, "worker ready")

    ping = _celery(procs, "inspect", "ping")
    assert ping.returncode == 0, ping.stderr
    assert "ctl@" in ping.stdout and "pong" in ping.stdout and "1 node online" in ping.stdout
    stats = _celery(procs, "inspect", "stats", "--json")
    assert stats.returncode == 0 and '"max-concurrency": 3' in stats.stdout
    active = _celery(procs, "inspect", "active")
    assert active.returncode == 0 and "- empty -" in active.stdout

    limit = _celery(procs, "control", "rate_limit", "video_worker.infer", "1/m")
    assert limit.returncode == 0 and "new rate limit set successfully" in limit.stdout
    wait_until(lambda: "New rate limit for tasks of type video_worker.infer: 1/m" in worker.log(), 10, "applied")
    registered = _celery(procs, "inspect", "registered")
    assert "video_worker.infer [rate_limit=1/m]" in registered.stdout
    assert "video_worker.upload [rate_limit" not in registered.stdout


def test_monitoring_off_means_no_topics_and_no_remote_control(aws: Aws, procs: Processes) -> None:
    worker = procs.worker("quiet", MONITORING="off")
    wait_until(lambda: ready(worker), 30, "worker ready")
    app = create_app(aws.settings(monitoring=False))
    build_chain(put_segment(aws, "quiet-job"), app).apply_async()
    wait_until(lambda: aws.completion_rows("quiet-job"), 30, "the chain still runs")
    ping = _celery(procs, "inspect", "ping", MONITORING="off")
    assert ping.returncode != 0 and "No nodes replied" in ping.stdout + ping.stderr
    assert "task events: OFF" in worker.log()
    assert _topics(aws) == []
    assert not [u for u in aws.sqs.list_queues(QueueNamePrefix=aws.prefix).get("QueueUrls", []) if "pidbox" in u]


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists() and not os.environ.get("CI"),
                    reason="needs Debian's chromium (apt-get install chromium; CI installs it and never skips this)")
def test_flower_tasks_page_renders_in_headless_chromium(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    procs.worker("shot", **scripted_worker_env())
    flower = start_flower(procs)
    wait_until(lambda: flower.get("/api/workers?status=1"), 30, "a live worker in Flower")
    app = create_app(aws.settings())
    for job in ("shot-a", "shot-b", "flaky-shot", "reject-shot"):
        build_chain(put_segment(aws, job), app).apply_async()
    wait_until(lambda: len(flower.tasks()) >= 13 and flower.tasks_of("reject-shot"), 30, "tasks in Flower")
    png = tmp_path / "flower-tasks.png"
    profile = tmp_path / "chromium-profile"
    subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", f"--screenshot={png}",
         "--window-size=1400,900", f"{flower.url}/tasks"],
        capture_output=True, timeout=90, check=False,
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("UPDATE_SCREENSHOT") == "1":  # refresh the one in docs/monitoring.md
        shutil.copyfile(png, ROOT / "docs" / "flower-tasks.png")


def test_dev_starts_flower_and_prints_what_another_shell_needs(tmp_path: Path) -> None:
    """``video-worker dev``: Flower's URL, and exports with which ``submit`` and ``status`` in a clean shell reach
    the emulator (docs/cli.md, "The development stack")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INPUT_", "OUTPUT_", "SEGMENT_"))}
    dev = subprocess.Popen([sys.executable, "-m", "video_worker", "dev", f"--flower-port={free_port()}"], env=env,
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert dev.stdout is not None
        lines = iter(dev.stdout.readline, "")
        exports: dict[str, str] = {}
        for line in lines:
            if line.startswith("  export "):
                name, _, value = line.removeprefix("  export ").strip().partition("=")
                exports[name] = value
            if line.startswith("flower: "):
                url = line.split(": ", 1)[1].strip()
                break
        name = wait_until(lambda: next(iter(http_get(f"{url}/api/workers?status=1") or {}), None), 30, "a worker")
        assert name.startswith("celery@")

        shell = {**env, **exports}
        (tmp_path / "seg.mp4").write_bytes(sample_segment(50_000))
        cli = [sys.executable, "-m", "video_worker"]
        submit = subprocess.run([*cli, "submit", "seg.mp4", "--job-id", "from-shell", "--index", "0", "--total", "1",
                                 "--mode", "sbs"], env=shell, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr

        def complete() -> dict[str, object] | None:
            out = subprocess.run([*cli, "status", "from-shell", "--json"], env=shell, capture_output=True, text=True,
                                 timeout=60)
            status = json.loads(out.stdout or "{}")
            return status if status.get("state") == "complete" else None

        assert wait_until(complete, 60, "the job to complete")["completed"] == [0]
    finally:
        dev.send_signal(signal.SIGTERM)  # as a supervisor stops it: the children and the emulator go with it
        assert dev.wait(30) == 0


def test_seed_env_vars_only_worker_flower_and_inspect(aws: Aws, procs: Processes, tmp_path: Path) -> None:
    """What an independent client does: the seed's variables, the documented commands, nothing else."""
    env = _seed_env(aws)
    celery = [sys.executable, "-m", "celery", "-A", "video_worker"]
    worker = procs.start("worker", [*celery, "worker", "-l", "INFO", "-n", "seed@%h"], env)
    port = free_port()
    flower_proc = procs.start("flower", [*celery, "flower", f"--port={port}", "--address=127.0.0.1"],
                              {**env, "FLOWER_UNAUTHENTICATED_API": "true"})  # Flower's own API gate
    flower = Flower(flower_proc, f"http://127.0.0.1:{port}")
    name = wait_until(lambda: next(iter(flower.get("/api/workers?status=1") or {}), None), 30, "a live worker")
    wait_until(lambda: ready(worker), 30, "the worker to log that it is ready")
    assert name.startswith("seed@")
    ping = subprocess.run([*celery, "inspect", "ping"], env=env, capture_output=True, text=True, timeout=60)
    assert "seed@" in ping.stdout and "pong" in ping.stdout, ping.stdout + ping.stderr
    procs.start("bridge", [sys.executable, "-m", "video_worker", "bridge"], env)
    clip = tmp_path / "clip.mp4"
    write_clip(clip, seconds=1.0, width=160, height=96, audio=False, seed=3)  # the default model converts it
    aws.s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("seed-mon", 0, 1, "sbs"),
                      Body=clip.read_bytes())  # the S3 notification reaches the bridge, which starts the chain
    tasks = wait_until(lambda: (t := flower.tasks_of("seed-mon")) and len(t) == 4
                       and all(x["state"] == "SUCCESS" for x in t.values()) and t, 120, "4 tasks in Flower")
    assert {t["worker"] for t in tasks.values()} == {name}
    assert name in (flower.get("/api/workers?refresh=1") or {})
