"""How many task events a second one Flower ingests over the project's SQS/SNS transport.

A moto server (its own process) behind the counting proxy (``bench/stack.py``), and
``celery -A video_worker flower`` as users start it, reaching the emulator through the
proxy (``round_trip`` seconds added to each of its requests) or straight (no latency:
its CPU and the emulator's are the limit). Once Flower's event queue is subscribed to
the ``celeryev`` topic, Flower is paused (SIGSTOP), and a separate publisher process
(``python -m bench.flower_ingest publish``) sends ``messages`` SNS messages of
``batch`` task events each (task-received/started/succeeded triples with unique uuids,
through Celery's own event dispatcher with ``buffer_group=['task']`` and
``buffer_limit=batch``: how a worker's buffer is flushed, ``video_worker/monitoring/batching.py``).
When all are queued, Flower is resumed (SIGCONT) and timed until its ``/metrics``
``flower_events_total`` reaches the number sent: that is its saturated ingest rate
(a backlog drained as fast as it can). Task events only: Flower's metrics count no
worker events (a heartbeat is one SNS message of one event, like ``batch=1``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from bench import procs
from bench.procs import Child
from bench.stack import Stack, kind, stack

#: A task's events, in the order a worker sends them.
TRIPLE = ("task-received", "task-started", "task-succeeded")
METRIC = re.compile(r"^flower_events_total\{[^}]*\}\s+([0-9.e+]+)$", re.MULTILINE)
BY_TYPE = re.compile(r'^flower_events_total\{[^}]*type="([^"]+)"[^}]*\}\s+([0-9.e+]+)$', re.MULTILINE)
#: What a real segment's payload looks like in an event (``saferepr`` of the stage's argument / result).
ARGS = ("({'job_id': 'film-2026-0001', 'segment_index': 117, 'total_segments': 360, "
        "'segment_s3_uri': 's3://video-worker-input/segments/film-2026-0001/00117_00360_sbs.mp4', "
        "'mode': 'sbs', 'source_etag': '\"9b2cf535f27731c974343645a3985328\"', 'source_version': None, "
        "'source_sequencer': '0065A1B2C3D4E5F678', 'source_size': 10485760},)")
RESULT = ARGS[1:-2].replace("'mode': 'sbs'", "'mode': 'sbs', 'host': 'gpu0@ip-10-0-1-17', "
                            "'scratch': '/var/tmp/video-worker/film-2026-0001-117.mp4'")


@dataclass(frozen=True)
class IngestRun:
    """One drain: ``messages`` SNS messages of ``batch`` events, processed by Flower in ``seconds``."""

    batch: int
    messages: int
    round_trip: float
    seconds: float
    load: float  # 1-minute load average at the start
    flower_cpu: float = 0.0  # CPU seconds Flower used during the drain, less its idle rate
    sqs_wait: float = 0.0  # seconds Flower spent in requests to its event queue (its receiver is sequential)
    requests: int = 0  # those requests (ReceiveMessage + DeleteMessage)

    @property
    def events(self) -> int:
        return self.batch * self.messages

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def own_seconds(self) -> float:
        """The drain's time outside SQS requests: Flower's own work (decoding, delivering, its event state)."""
        return max(self.seconds - self.sqs_wait, 0.0)

    def projected_messages_per_second(self, latency: float) -> float:
        """The rate if each of Flower's event-queue requests took ``latency`` s (a real SQS endpoint)."""
        return self.messages / (self.own_seconds + self.requests * latency)


def fit_costs(runs: list[IngestRun]) -> tuple[float, float]:
    """Flower's own seconds per SNS message and per event, least squares over ``runs`` (two batch sizes or more).

    Model: a drain of ``m`` messages of ``b`` events costs ``m * per_message + m * b * per_event`` of
    Flower's own time, on top of its SQS requests (one ``DeleteMessage`` per message, a receive per 10).
    """
    xs = [(r.messages, r.events, r.own_seconds) for r in runs]
    sxx = sum(m * m for m, _, _ in xs)
    sxy = sum(m * e for m, e, _ in xs)
    syy = sum(e * e for _, e, _ in xs)
    sxt = sum(m * t for m, _, t in xs)
    syt = sum(e * t for _, e, t in xs)
    det = sxx * syy - sxy * sxy
    if abs(det) < 1e-9 * max(sxx * syy, 1.0):
        raise ValueError("need runs of at least two batch sizes")
    per_message = (sxt * syy - syt * sxy) / det
    per_event = (syt * sxx - sxt * sxy) / det
    return max(per_message, 0.0), max(per_event, 0.0)


def messages_per_second_of_flower(per_message: float, per_event: float, events_per_message: float,
                                  latency: float, requests_per_message: float = 1.1) -> float:
    """SNS messages a second one Flower keeps up with: its own work plus its sequential SQS requests."""
    return 1.0 / (per_message + events_per_message * per_event + requests_per_message * latency)


def flower_events(url: str) -> float:
    """The sum of Flower's ``flower_events_total`` (task events it has processed); -1 if it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    return sum(float(v) for v in METRIC.findall(text))


def start_flower(st: Stack, name: str = "flower") -> tuple[Child, str]:
    """``celery -A video_worker flower`` on a free port, through the proxy, as ``docker-compose.yml`` runs it
    (``--enable_events=false``: the workers send events anyway)."""
    port = procs.free_port()
    extra = {"FLOWER_UNAUTHENTICATED_API": "true", **dict(st.overrides.env)}
    env = procs.child_env(name, st.env(f"scratch-{name}", extra))
    argv = [sys.executable, "-m", "celery", "-A", "video_worker", "flower", f"--port={port}",
            "--address=127.0.0.1", "--logging=warning", "--enable_events=false"]
    child = procs.start(name, argv, env, st.dir, cwd=procs_cwd())
    st.children.append(child)
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: flower_events(url) >= 0, 90, "Flower's /metrics", child)
    return child, url


def procs_cwd() -> Path:
    return Path(__file__).resolve().parent.parent


def event_queues(st: Stack) -> list[str]:
    """URLs of the Flower event queues (``<prefix>celeryev-<uuid>``) subscribed to an SNS topic."""
    sns = boto3.client("sns", endpoint_url=st.direct, region_name="us-east-1", aws_access_key_id="bench",
                       aws_secret_access_key="bench")
    subscribed = {s["Endpoint"].rsplit(":", 1)[-1] for s in sns.list_subscriptions().get("Subscriptions", [])}
    urls = st.sqs.list_queues(QueueNamePrefix="video-worker-celeryev").get("QueueUrls", [])
    return [u for u in urls if re.search(r"celeryev-[0-9a-f-]{36}$", u) and u.rsplit("/", 1)[-1] in subscribed]


def queued(st: Stack, url: str) -> int:
    attrs = st.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def measure(root: Path, batch: int, messages: int, round_trip: float, publishers: int = 2) -> IngestRun:
    """One drain (see the module's docstring) on a fresh stack; Flower reaches the emulator through the proxy."""
    name = f"flower-ingest-b{batch}-rtt{int(round_trip * 1000)}-{uuid.uuid4().hex[:6]}"
    with stack(root, name, round_trip) as st:
        flower, url = start_flower(st)
        queue = _wait(lambda: (q := event_queues(st)) and q[0], 60, "Flower's event queue", flower)
        idle_rate = _idle_cpu_rate(flower, url)  # also lets its first long poll start
        os.kill(flower.pid, signal.SIGSTOP)
        try:
            env = procs.child_env("publisher", st.env("scratch-publisher", {"AWS_ENDPOINT_URL": st.direct}))
            env["PYTHONPATH"] = str(procs_cwd())
            shares = [messages // publishers + (1 if i < messages % publishers else 0) for i in range(publishers)]
            pubs = [procs.start(f"publisher{i}", [sys.executable, "-m", "bench.flower_ingest", "publish",
                                                  f"--batch={batch}", f"--messages={n}", f"--host={i}"],
                                env, st.dir, cwd=procs_cwd()) for i, n in enumerate(shares) if n]
            for pub in pubs:
                if pub.popen.wait(600) != 0:
                    raise RuntimeError(f"publisher failed:\n{pub.log()[-3000:]}")
            _wait(lambda: queued(st, queue) >= messages, 60, f"{messages} messages in Flower's queue", flower)
            load = os.getloadavg()[0]
            cpu0 = procs.cpu_seconds(procs.tree(flower.pid))
        finally:
            os.kill(flower.pid, signal.SIGCONT)
        start, t0 = time.monotonic(), time.time()
        _wait(lambda: flower_events(url) >= batch * messages, 600, "Flower to process every event",
              flower, poll=0.2)
        seconds, t1 = time.monotonic() - start, time.time()
        cpu = procs.cpu_seconds(procs.tree(flower.pid)) - cpu0 - idle_rate * seconds
        target = queue.rsplit("/", 1)[-1]
        mine = [r for r in st.proxy.requests(t0 - 30, t1) if r.caller == "flower" and r.target == target
                and r.end > t0 and r.action in ("ReceiveMessage", "DeleteMessage")]
        wait = sum(min(r.end, t1) - max(r.start, t0) for r in mine)
    return IngestRun(batch, messages, round_trip, seconds, load, max(cpu, 0.0), wait, len(mine))


def _idle_cpu_rate(flower: Child, url: str, seconds: float = 4.0) -> float:
    """Flower's CPU seconds per second while idle and polled as during a drain (its timers, the /metrics polls)."""
    cpu0, t0 = procs.cpu_seconds(procs.tree(flower.pid)), time.monotonic()
    while time.monotonic() - t0 < seconds:
        flower_events(url)
        time.sleep(0.2)
    return (procs.cpu_seconds(procs.tree(flower.pid)) - cpu0) / (time.monotonic() - t0)


#: Drains: (events per SNS message, messages); sized for ~10-30 s each on this machine.
DRAINS = ((1, 300), (10, 200), (100, 60))


def sweep(root: Path, repeats: int, drains: tuple[tuple[int, int], ...] = DRAINS,
          round_trips: tuple[float, ...] = (0.0, 0.020)) -> list[IngestRun]:
    """Drains of every size: ``repeats`` times with no added latency, once at each other round trip."""
    runs: list[IngestRun] = []
    for rtt in round_trips:
        for batch, messages in drains:
            for _ in range(repeats if rtt == 0 else 1):
                run = measure(root, batch, messages, rtt)
                print(f"  drain: {batch} events x {messages} messages, {rtt * 1000:.0f} ms: {run.seconds:.1f} s, "
                      f"{run.events_per_second:.0f} events/s, {run.messages_per_second:.1f} messages/s, "
                      f"Flower's own {run.own_seconds:.1f} s (load {run.load:.1f})", flush=True)
                runs.append(run)
    return runs


def median_runs(runs: list[IngestRun]) -> list[IngestRun]:
    """The run of median duration of each (batch, round trip)."""
    groups: dict[tuple[int, float], list[IngestRun]] = {}
    for r in runs:
        groups.setdefault((r.batch, r.round_trip), []).append(r)
    return [sorted(g, key=lambda r: r.seconds)[len(g) // 2] for _, g in sorted(groups.items())]


def events_by_type(url: str) -> dict[str, int]:
    """Flower's ``flower_events_total`` summed by event type."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for event_type, value in BY_TYPE.findall(text):
        out[event_type] = out.get(event_type, 0) + int(float(value))
    return out


def _wait(condition: Any, timeout: float, what: str, child: Child | None = None, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.popen.returncode}):\n{child.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def target_kind(target: str) -> str:
    """What a request's target is, by name (queues of one kind belong to many processes)."""
    for pattern, name in ((r"-tasks$", "tasks queue"), (r"reply", "reply queue"), (r"pidbox-", "mailbox"),
                          (r"celeryev-", "event queue"), (r"celeryev$", "event topic"), (r"pidbox$", "control topic"),
                          (r"dead-letters", "dead letters"), (r"-events$", "raw queue"), (r"-input$", "input bucket"),
                          (r"-output$", "output bucket"), (r"completions", "table")):
        if re.search(pattern, target):
            return name
    return target or "-"


# --- one GPU host's stand-in: what a real worker sends, and its requests ------------------------------


def measure_host(root: Path, segments: int, infer: float, size: int, idle: float) -> dict[str, Any]:
    """A real worker + bridge + Flower through the proxy (20 ms per request): ``idle`` s idle, then ``segments``
    segments. Returns the fields of ``bench.capacity.Fleet``: requests by (process, service, action, target)."""
    extra = {"MODEL": "simulated", "SIMULATED_INFER_SECONDS": str(infer)}
    with stack(root, "capacity-host", 0.020) as st:
        began = time.monotonic()
        worker, bridge = st.worker(1, extra), st.bridge(extra)
        _, url = start_flower(st)
        worker.wait_for_log("ready.", 180)
        bridge.wait_for_log("bridge polling", 60)
        time.sleep(max(0.0, 45 - (time.monotonic() - began)))  # start-up and the first sweep (at 30 s) left out
        i0 = time.time()
        time.sleep(idle)
        i1 = time.time()
        load, before = os.getloadavg(), events_by_type(url)
        st.upload("capacity", segments, size)
        s0 = time.time() - 1.0
        last = max(r.end for r in st.wait_completions(segments, s0 - 60, timeout=segments * infer * 3 + 120))
        expected = sum(before.values()) + 13 * segments  # 4 stages x 3 events + task-sent
        _wait(lambda: sum(events_by_type(url).values()) >= expected or time.time() > last + 30, 60, "the events")
        s1 = max(time.time(), last + 3.0)
        after = events_by_type(url)
        reqs = [r for r in st.proxy.requests(i0 - 60, s1) if r.caller != "bench" and r.end >= i0]
    keyed = [((kind(r.caller), r.service, r.action, target_kind(r.target)), r) for r in reqs]
    busy = [(k, r) for k, r in keyed if r.start >= s0]
    batches = [r for k, r in busy if k[0] == "worker" and k[2] == "Publish" and "task-" in r.detail]
    events = {t: (after.get(t, 0) - before.get(t, 0)) / segments for t in after}
    worker_events = segments * sum(n for t, n in events.items() if t != "task-sent")
    sends = [r.sent for k, r in busy if k[2:] == ("SendMessage", "tasks queue")]
    puts = [r.sent for k, r in busy if k[2] == "PutItem"]
    beats = sum(1 for _, r in keyed if r.start < i1 and "worker-heartbeat" in r.detail)
    return {"idle_seconds": i1 - i0, "idle": Counter(k for k, r in keyed if r.start < i1), "segments": segments,
            "busy_seconds": s1 - s0, "busy": Counter(k for k, _ in busy), "infer_seconds": infer,
            "segment_bytes": size, "events_per_segment": events, "task_batches_per_segment": len(batches) / segments,
            "heartbeats_per_second": beats / (i1 - i0),
            "bytes_per_event": sum(r.sent for r in batches) / worker_events if worker_events else 0.0,
            "task_message_bytes": statistics.mean(sends) if sends else 0.0,
            "put_item_bytes": statistics.mean(puts) if puts else 0.0, "load": load}


# --- the publisher (a separate process) ------------------------------------------------------------


def publish(batch: int, messages: int, host: int) -> None:
    """Send ``messages`` SNS messages of ``batch`` task events as the fake worker ``gpu{host}``."""
    from video_worker.celery_app import create_app

    app = create_app()
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname=f"gpu{host}@capacity-bench", buffer_group=["task"],
                                           buffer_limit=batch)
        task = ""
        for sent in range(messages * batch):
            kind = TRIPLE[sent % 3]
            if kind == "task-received":
                task = str(uuid.uuid4())
                dispatcher.send(kind, uuid=task, name="video_worker.download", args=ARGS, kwargs="{}",
                                root_id=task, parent_id=None, retries=0, eta=None, expires=None)
            elif kind == "task-started":
                dispatcher.send(kind, uuid=task)
            else:
                dispatcher.send(kind, uuid=task, result=RESULT, runtime=0.0123)
        dispatcher.flush()
        if dispatcher._outbound_buffer:  # Celery keeps what it could not publish
            raise SystemExit(f"{len(dispatcher._outbound_buffer)} batches not published")
        dispatcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="the publisher process (started by measure)")
    run = sub.add_parser("measure", help="one drain, printed")
    for p in (pub, run):
        p.add_argument("--batch", type=int, default=1)
        p.add_argument("--messages", type=int, default=500)
    pub.add_argument("--host", type=int, default=0)
    run.add_argument("--round-trip", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "publish":
        publish(args.batch, args.messages, args.host)
        return
    import tempfile

    result = measure(Path(tempfile.mkdtemp(prefix="flower-ingest-")), args.batch, args.messages, args.round_trip)
    print(f"batch {result.batch}, {result.messages} messages, rtt {result.round_trip * 1000:.0f} ms: "
          f"{result.seconds:.2f} s, {result.events_per_second:.0f} events/s, "
          f"{result.messages_per_second:.0f} messages/s; Flower's own time {result.own_seconds:.1f} s, "
          f"its CPU {result.flower_cpu:.1f} s, {result.requests} SQS requests; at 20 ms per request: "
          f"{result.projected_messages_per_second(0.020):.0f} messages/s (load {result.load:.1f})")


if __name__ == "__main__":
    main()
