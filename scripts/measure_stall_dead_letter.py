"""How long a segment whose model stops making progress takes to be dead-lettered, with the default settings.

Starts moto's server, provisions the seed's resources, starts one worker with
``MODEL=tests.support.models:progressing`` and nothing else changed
(``STEREO_STALL_SECONDS`` 120, ``MAX_DELIVERIES`` 3, the default retry backoff,
the infer time limit of 1 h), uploads one segment on which the model reports
progress three times and then hangs, beside ``--good`` good ones, and prints
the seconds from the upload to its dead letter (and when each stall was
killed, from the worker's log). Takes about 6 minutes.

``--stereo``: the real converter instead (``MODEL=stereo``) with a depth estimator plugged in by import path
that hangs on a black segment (``STEREO_DEPTH=tests.support.depth_plugins:hangs_on_dark``), beside good clips.

    PYTHONPATH=$PWD .venv/bin/python scripts/measure_stall_dead_letter.py [--stereo]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.stack import Aws, Processes, wait_until  # noqa: E402
from video_worker.adapters.aws import make_client  # noqa: E402
from video_worker.keys import build_segment_key  # noqa: E402
from video_worker.ops.dev import FAKE_CREDENTIALS, start_emulator  # noqa: E402
from video_worker.ops.provision import provision  # noqa: E402
from video_worker.ops.sample import sample_segment  # noqa: E402
from video_worker.settings import Settings  # noqa: E402


def dead_letters(procs: Processes) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "video_worker", "dlq", "list", "--json"], env=procs.env(),
                         capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _stereo_segment(index: int) -> bytes:
    """Segment 0: black frames (the estimator hangs on them); the others: generated scenes."""
    from tests.faults.test_hung_estimator import _black_clip
    from video_worker.models.stereo.synthetic import write_clip

    path = Path(tempfile.mkdtemp(prefix="stall-clip-")) / f"{index}.mp4"
    if index == 0:
        _black_clip(path)
    else:
        write_clip(path, seconds=1.0, width=160, height=96, audio=False, seed=index)
    return path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--good", type=int, default=2, help="good segments uploaded beside the stalled one")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the dead letter")
    parser.add_argument("--stereo", action="store_true", help="MODEL=stereo with an estimator that hangs")
    args = parser.parse_args()
    os.environ.update(FAKE_CREDENTIALS)
    server, endpoint = start_emulator()
    procs: Processes | None = None
    try:
        prefix = f"m{uuid.uuid4().hex[:10]}"
        boot = Settings(input_bucket_name="boot", output_bucket_name="boot", segment_completions_table_name="boot",
                        aws_endpoint_url=endpoint)
        s3, ddb, sqs = (make_client(n, boot.aws) for n in ("s3", "dynamodb", "sqs"))
        aws = Aws(endpoint, provision(s3, ddb, sqs, prefix=prefix), s3, ddb, sqs, prefix)
        procs = Processes(aws, Path(tempfile.mkdtemp(prefix="stall-")))
        if args.stereo:
            worker = procs.worker(MODEL="stereo", STEREO_DEPTH="tests.support.depth_plugins:hangs_on_dark")
        else:
            worker = procs.worker(MODEL="tests.support.models:progressing")
        procs.bridge()
        wait_until(lambda: "ready." in worker.log(), 120, "worker ready")
        started = time.monotonic()
        # the segment the model stalls on is a job of its own: a segment of the same job would read it as its
        # previous segment (MODEL=stereo's context) and stall too
        s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("stall", 0, 1, "sbs"),
                      Body=_stereo_segment(0) if args.stereo else b"STALL" + sample_segment(20_000, seed=0))
        for i in range(args.good):
            body = _stereo_segment(i + 1) if args.stereo else sample_segment(20_001 + i, seed=i + 1)
            s3.put_object(Bucket=aws.resources.input_bucket, Key=build_segment_key("good", i, args.good, "sbs"),
                          Body=body)
        [letter] = wait_until(lambda: dead_letters(procs), args.timeout, "the dead letter")
        elapsed = time.monotonic() - started
        kills = re.findall(r"\[([^\]]+): WARNING/[^\]]*\] killing model process", worker.log())
        print(f"dead-lettered after {elapsed:.1f}s ({elapsed / 60:.1f} min); attempts={letter['attempts']}; "
              f"error_type={letter['error_type']}")
        print(f"reason: {letter['error']}")
        print(f"stall kills logged at: {kills}")
        wait_until(lambda: aws.completion_count("good") >= args.good, 300, "the good segments")
        print(f"good segments completed: {aws.completion_count('good')} of {args.good} "
              f"(all by {time.monotonic() - started:.1f}s); dead letters: {len(dead_letters(procs))}")
    finally:
        if procs is not None:
            procs.stop_all()
        server.stop()


if __name__ == "__main__":
    main()
