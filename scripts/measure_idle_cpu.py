"""CPU an idle worker burns: ``celery -A video_worker worker`` with default settings, nothing to do, for N seconds.

Starts moto's server, creates the seed's resources, starts one worker from
``--repo`` (its own interpreter, ``--python``) and reads the CPU time of the
worker and its children (``/proc``) over ``--seconds`` once it is ready.
Compare trees in one run: ``python scripts/measure_idle_cpu.py --repo A --repo B``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants."""
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids += [int(c) for c in children]
    return total


def measure(repo: Path, python: str, endpoint: str, seconds: float, monitoring: str) -> float:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "idle", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_REGION": "us-east-1", "INPUT_BUCKET_NAME": "idle-in", "OUTPUT_BUCKET_NAME": "idle-out",
           "SEGMENT_COMPLETIONS_TABLE_NAME": "idle-table", "MONITORING": monitoring,
           "BROKER_QUEUE_PREFIX": f"idle{int(time.time() * 1000) % 100000}-", "PYTHONPATH": str(repo),
           "VIDEO_WORKER_SCRATCH_DIR": tempfile.mkdtemp(prefix="idle-")}
    log = Path(tempfile.mkstemp(prefix="idle-worker-", suffix=".log")[1])
    with log.open("wb") as out:
        worker = subprocess.Popen([python, "-m", "celery", "-A", "video_worker", "worker", "-l", "INFO"], env=env,
                                  cwd=repo, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while " ready." not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        time.sleep(5)  # past start-up work (sweeps, first polls)
        before = cpu_seconds(worker.pid)
        time.sleep(seconds)
        return cpu_seconds(worker.pid) - before
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", action="append", type=Path, required=True)
    parser.add_argument("--python", action="append", help="interpreter per --repo (default: REPO/.venv/bin/python)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--monitoring", default="on")
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    os.environ.update(AWS_ACCESS_KEY_ID="idle", AWS_SECRET_ACCESS_KEY="x")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    for bucket in ("idle-in", "idle-out"):
        s3.create_bucket(Bucket=bucket)
    ddb.create_table(TableName="idle-table", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"},
                                {"AttributeName": "segment_index", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"},
                                           {"AttributeName": "segment_index", "AttributeType": "N"}])
    pythons = args.python or [str(r / ".venv" / "bin" / "python") for r in args.repo]
    for repo, python in zip(args.repo, pythons, strict=True):
        used = measure(repo, python, endpoint, args.seconds, args.monitoring)
        print(f"{repo}: {used:.2f} s CPU in {args.seconds:.0f} s idle ({100 * used / args.seconds:.1f} % of a core), "
              f"MONITORING={args.monitoring}", flush=True)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
