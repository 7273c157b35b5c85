"""``video-worker dev``: the whole pipeline on an embedded AWS emulator.

Starts moto's server in this process, provisions the resources the way
production has them, then runs ``video-worker bridge`` and
``celery -A video_worker worker`` (and ``celery -A video_worker flower``,
unless ``--no-flower``) as child processes wired to it by the same
environment variables a deployment uses.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from video_worker import extras
from video_worker.adapters.aws import make_client
from video_worker.inference import check_model
from video_worker.ops.demo import run_demo
from video_worker.ops.provision import Resources, provision
from video_worker.settings import Settings

log = logging.getLogger(__name__)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def start_emulator(port: int = 0) -> tuple[object, str]:
    """Start moto's server on loopback; return it and its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    bound = server.get_host_and_port()[1]
    return server, f"http://127.0.0.1:{bound}"


def configured_model() -> str:
    """``MODEL`` from the environment, else the default (``stereo``: the converter)."""
    return os.environ.get("MODEL") or str(Settings.model_fields["model"].default)


def dev_environment(endpoint: str, res: Resources, scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FAKE_CREDENTIALS)
    env.update(res.env())
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        VIDEO_WORKER_SCRATCH_DIR=str(scratch),
        BROKER_WAIT_TIME_SECONDS=env.get("BROKER_WAIT_TIME_SECONDS", "1"),
        BRIDGE_WAIT_TIME_SECONDS=env.get("BRIDGE_WAIT_TIME_SECONDS", "1"),
    )
    return env


#: What another shell needs to reach the emulator's resources (``client_environment``).
CLIENT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_REGION", *FAKE_CREDENTIALS)


def client_environment(env: dict[str, str], res: Resources) -> dict[str, str]:
    """The emulator's endpoint, region, fake credentials and resource names, out of the children's ``env``."""
    return {name: env[name] for name in (*CLIENT_VARIABLES, *res.env())}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def start_children(env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    worker = [sys.executable, "-m", "celery", "-A", "video_worker", "worker", "-l", "INFO"]
    bridge = [sys.executable, "-m", "video_worker", "bridge"]
    return [subprocess.Popen(cmd, env=env) for cmd in (worker, bridge)]


def stop_children(children: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_for_completion(dynamodb: object, table: str, job_id: str, index: int, timeout: float) -> dict | None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = dynamodb.get_item(  # type: ignore[attr-defined]
            TableName=table,
            Key={"job_id": {"S": job_id}, "segment_index": {"N": str(index)}},
            ConsistentRead=True,
        ).get("Item")
        if item:
            return dict(item)
        time.sleep(0.2)
    return None


def run_dev(*, demo: bool, port: int = 0, timeout: float = 120.0, flower: bool | None = None,
            flower_port: int = 5555) -> int:
    """``flower``: start Flower too (default: unless ``demo``). The demo runs the stereo model."""
    extras.require("emulator", "video-worker dev")  # one line, before anything starts
    if demo:
        extras.require("stereo", "video-worker dev --demo (it runs MODEL=stereo)")
        check_model("stereo")  # its STEREO_* settings
    else:
        check_model(configured_model())  # the worker's model (the converter by default): its extra, its settings
    server, endpoint = start_emulator(port)
    scratch = Path(tempfile.mkdtemp(prefix="video-worker-dev-"))
    os.environ.update(FAKE_CREDENTIALS)
    boot = Settings(
        input_bucket_name="bootstrap",
        output_bucket_name="bootstrap",
        segment_completions_table_name="bootstrap",
        aws_endpoint_url=endpoint,
        aws_region="us-east-1",
    )
    s3, ddb, sqs = (make_client(name, boot.aws) for name in ("s3", "dynamodb", "sqs"))
    res = provision(s3, ddb, sqs)
    env = dev_environment(endpoint, res, scratch)
    if demo:
        env["MODEL"] = "stereo"
    print(f"emulator: {endpoint}; model: {env.get('MODEL') or configured_model()}; for video-worker submit, status "
          "and dlq in another shell:", flush=True)
    for name, value in sorted(client_environment(env, res).items()):
        print(f"  export {name}={value}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as Ctrl-C does: children and the emulator with it
    children = start_children(env)
    if flower if flower is not None else not demo:
        from video_worker.monitoring.flower import start_flower

        flower_proc, flower_url = start_flower(env, flower_port)
        children.append(flower_proc)
        print(f"flower: {flower_url}", flush=True)
    try:
        if not demo:
            print("bridge and worker running; Ctrl-C to stop", flush=True)
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            return 1
        return run_demo(s3, ddb, res, scratch, timeout)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_children(children)
        server.stop()  # type: ignore[attr-defined]
