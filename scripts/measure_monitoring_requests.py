"""Count the SQS/SNS requests a worker (and Flower) make, with monitoring off and on.

Runs moto's server behind a WSGI middleware that counts every request by
caller (the access key id: ``worker``, ``flower``, ``client``), service and
action; starts ``celery -A video_worker worker`` (and ``flower``) with the
production polling defaults (``BROKER_WAIT_TIME_SECONDS=10``,
``BROKER_POLLING_INTERVAL=0``); lets them idle for ``--seconds`` and then
runs ``--chains`` chains; prints requests per hour (idle) and per chain.

    python scripts/measure_monitoring_requests.py --seconds 300 --chains 20
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from video_worker.adapters.aws import make_client
from video_worker.celery_app import create_app
from video_worker.keys import build_segment_key
from video_worker.ops.dev import dev_environment
from video_worker.ops.provision import provision
from video_worker.segments import Segment, s3_uri
from video_worker.settings import Settings
from video_worker.worker.chain import build_chain

COUNTS: Counter[tuple[str, str, str]] = Counter()
CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/")


def counting(app: Any) -> Any:
    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        match = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        who, service = match.groups() if match else ("?", "?")
        action = (environ.get("HTTP_X_AMZ_TARGET") or "").rpartition(".")[2]
        if not action and service in ("sqs", "sns"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            action = parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
        COUNTS[(who, service, action or environ["REQUEST_METHOD"])] += 1
        return app(environ, start_response)

    return wrapped


def serve() -> str:
    server = make_server("127.0.0.1", 0, counting(DomainDispatcherApplication(create_backend_app)), True,
                         request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def scenario(endpoint: str, name: str, monitoring: bool, flower: bool, seconds: float, chains: int,
             flower_args: tuple[str, ...] = ()) -> None:
    os.environ.update(AWS_ACCESS_KEY_ID="client", AWS_SECRET_ACCESS_KEY="x", AWS_SESSION_TOKEN="x")
    prefix = f"m{int(time.time()) % 100000}{name}"
    boot = Settings(input_bucket_name="boot", output_bucket_name="boot", segment_completions_table_name="boot",
                    aws_endpoint_url=endpoint)
    s3, ddb, sqs = (make_client(n, boot.aws) for n in ("s3", "dynamodb", "sqs"))
    res = provision(s3, ddb, sqs, prefix=prefix)
    env = dev_environment(endpoint, res, Path(tempfile.mkdtemp()))
    env.update(BROKER_QUEUE_PREFIX=f"{prefix}-", BROKER_WAIT_TIME_SECONDS="10", BROKER_POLLING_INTERVAL="0",
               MONITORING="on" if monitoring else "off", FLOWER_UNAUTHENTICATED_API="true")
    celery = [sys.executable, "-m", "celery", "-A", "video_worker"]
    children = [subprocess.Popen([*celery, "worker", "-l", "WARNING", "-n", f"{name}@%h"],
                                 env={**env, "AWS_ACCESS_KEY_ID": "worker"})]
    if flower:
        children.append(subprocess.Popen([*celery, "flower", "--port=0", "--address=127.0.0.1", "--logging=warning",
                                          *flower_args], env={**env, "AWS_ACCESS_KEY_ID": "flower"}))
    try:
        time.sleep(45)  # start-up requests (and the first sweep, at 30 s) are not part of the hourly rate
        COUNTS.clear()
        time.sleep(seconds)
        idle = Counter(COUNTS)
        COUNTS.clear()
        settings = Settings(**{**boot.model_dump(), "input_bucket_name": res.input_bucket,
                               "output_bucket_name": res.output_bucket,
                               "segment_completions_table_name": res.table, "broker_queue_prefix": f"{prefix}-",
                               "monitoring": monitoring})
        app = create_app(settings)
        for i in range(chains):
            key = build_segment_key(f"cost-{i}", 0, 1, "sbs")
            s3.put_object(Bucket=res.input_bucket, Key=key, Body=b"x" * 1024)
            build_chain(Segment(job_id=f"cost-{i}", segment_index=0, total_segments=1,
                                           segment_s3_uri=s3_uri(res.input_bucket, key), mode="sbs"), app).apply_async()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ddb.scan(TableName=res.table, Select="COUNT")["Count"] < chains:
            time.sleep(1)
        time.sleep(12)  # the tail of the chains' long polls and events
        busy = Counter(COUNTS)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(60)
    report(name, idle, seconds, busy, chains)


def report(name: str, idle: Counter[tuple[str, str, str]], seconds: float,
           busy: Counter[tuple[str, str, str]], chains: int) -> None:
    print(f"\n== {name}: idle requests per hour (measured over {seconds:.0f} s) ==")
    for (who, service, action), n in sorted(idle.items()):
        if service in ("sqs", "sns"):
            print(f"  {who:7} {service}:{action:28} {n * 3600 / seconds:8.0f}")
    total = sum(n for (who, s, _), n in idle.items() if s in ("sqs", "sns"))
    print(f"  total SQS+SNS per hour: {total * 3600 / seconds:.0f}")
    per_chain = sum(n for (_, s, _), n in busy.items() if s in ("sqs", "sns")) / max(chains, 1)
    print(f"== {name}: {chains} chains: {per_chain:.1f} SQS+SNS requests per chain (incl. ~12 s of idle) ==")
    for (who, service, action), n in sorted(busy.items()):
        if service in ("sqs", "sns"):
            print(f"  {who:7} {service}:{action:28} {n / max(chains, 1):8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--chains", type=int, default=20)
    args = parser.parse_args()
    endpoint = serve()
    scenario(endpoint, "off", monitoring=False, flower=False, seconds=args.seconds, chains=args.chains)
    scenario(endpoint, "on", monitoring=True, flower=False, seconds=args.seconds, chains=args.chains)
    scenario(endpoint, "flower", monitoring=True, flower=True, seconds=args.seconds, chains=args.chains)
    scenario(endpoint, "quietflower", monitoring=True, flower=True, seconds=args.seconds, chains=args.chains,
             flower_args=("--enable_events=false",))


if __name__ == "__main__":
    main()
