"""Capacity on paper: AWS requests, cost and the limits met first at 10, 100 and 1,000 GPU hosts.

``python -m bench.capacity`` measures here, then writes ``docs/capacity.md`` and prints it:

1. Flower's event ingest over the project's SQS/SNS transport (``bench/flower_ingest.py``): drains of
   1, 10 and 100 task events per SNS message, median of ``--repeats``, and once at 20 ms per request.
2. One GPU host's stand-in on a moto server behind the counting proxy (20 ms per request): a real
   ``celery -A video_worker worker`` (``MODEL=simulated``, ``SIMULATED_INFER_SECONDS`` = the segment time),
   ``video-worker bridge`` and Flower (``--enable_events=false``, as ``docker-compose.yml``), idle for
   ``--idle`` s (requests per idle hour), then ``--segments`` segments (requests per segment by action,
   net of the idle rate; task events per segment from Flower's ``/metrics``).

Then the fleet arithmetic below (pure functions; ``tests/test_capacity_model.py``) with the unit prices and
quotas stated in ``PRICES`` and ``quotas``; ``bench/capacity_doc.py``-free: the doc is rendered here too.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import flower_ingest
from bench.flower_ingest import IngestRun, fit_costs
from bench.stack import MIB, REPO
from video_worker.monitoring.leases import RENEW_SECONDS, SWEEP_SECONDS

DOC = REPO / "docs" / "capacity.md"
#: (role, service, action, target kind): how requests are counted.
Key = tuple[str, str, str, str]
#: USD per request (per 64 KiB chunk for SQS and SNS), us-east-1, as of 2026 (free tiers ignored).
PRICES = {"sqs": 0.40e-6, "sns": 0.50e-6, "s3-put": 0.005e-3, "s3-get": 0.0004e-3, "ddb-wru": 0.625e-6,
          "ddb-rru": 0.125e-6}
S3_PUT_CLASS = {"PutObject", "CopyObject", "PostObject", "CreateMultipartUpload", "UploadPart",
                "CompleteMultipartUpload", "ListObjects", "ListObjectsV2", "ListParts", "ListMultipartUploads"}
S3_FREE = {"DeleteObject", "AbortMultipartUpload", "DeleteObjects"}
MONTH_HOURS = 730
SLOTS = 3  # WORKER_CONCURRENCY: task messages a host holds (prefetch multiplier 1)
#: Monitoring's requests: none of them with MONITORING=off.
MONITORING_TARGETS = {"mailbox", "event queue", "reply queue", "event topic", "control topic"}


@dataclass
class Fleet:
    """What one host's stand-in measured (``measure_fleet``)."""

    idle_seconds: float
    idle: Counter[Key]
    segments: int
    busy_seconds: float
    busy: Counter[Key]
    infer_seconds: float
    segment_bytes: int
    events_per_segment: dict[str, float]
    task_batches_per_segment: float  # the worker's SNS publishes of task events
    heartbeats_per_second: float
    bytes_per_event: float = 0.0
    task_message_bytes: float = 0.0
    put_item_bytes: float = 0.0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def idle_per_hour(self, k: Key) -> float:
        return self.idle[k] * 3600 / self.idle_seconds

    def per_segment(self, k: Key) -> float:
        """Requests per segment, less the idle rate over the busy window (not for the task queue's receives:
        a busy worker's receives replace its idle long polls)."""
        idle = 0.0 if k[2:] == ("ReceiveMessage", "tasks queue") else self.idle[k] / self.idle_seconds
        return max(self.busy[k] - idle * self.busy_seconds, 0.0) / self.segments

    @property
    def events_per_batch(self) -> float:
        worker = sum(n for t, n in self.events_per_segment.items() if t != "task-sent")
        return worker / self.task_batches_per_segment if self.task_batches_per_segment else 0.0

    @property
    def segments_per_hour(self) -> float:
        return 3600 / self.infer_seconds

    def host_messages_per_second(self) -> float:
        """SNS messages a busy host puts on the event topic: heartbeats, task-event batches, the bridge's task-sent."""
        sent = self.events_per_segment.get("task-sent", 0.0)
        return self.heartbeats_per_second + (self.task_batches_per_segment + sent) / self.infer_seconds

    def host_events_per_second(self) -> float:
        return self.heartbeats_per_second + sum(self.events_per_segment.values()) / self.infer_seconds


def monitoring_request(k: Key) -> bool:
    role, service, action, target = k
    return (role == "flower" or service == "sns" or target in MONITORING_TARGETS
            or action in ("TagQueue", "ListQueueTags", "ListQueues"))


def fleet_hourly(f: Fleet, hosts: int, partitions: int = 1, bridges: int = 2,
                 monitoring: bool = True) -> defaultdict[tuple[str, str], float]:
    """Requests an hour, by (service, action), of ``hosts`` busy GPU hosts split into ``partitions`` monitored
    deployments (one Flower each), ``bridges`` bridges; ``monitoring=False``: MONITORING=off everywhere."""
    out: defaultdict[tuple[str, str], float] = defaultdict(float)
    segs = hosts * f.segments_per_hour
    per_partition = math.ceil(hosts / partitions)
    for k in set(f.idle) | set(f.busy):
        if not monitoring and monitoring_request(k):
            continue
        role, service, action, target = k
        idle = f.idle_per_hour(k)
        if role == "worker" and (action, target) != ("ReceiveMessage", "tasks queue"):
            out[(service, action)] += hosts * idle
        elif role == "bridge":
            out[(service, action)] += bridges * idle
        elif role == "flower":  # its event queue carries every host's heartbeats; the rest is its own
            out[(service, action)] += (hosts if target == "event queue" else partitions) * idle
        out[(service, action)] += segs * f.per_segment(k)
    out[("sqs", "SendMessage")] += segs  # S3's event notification into the raw queue (not seen by the proxy)
    if monitoring:  # periodic, not in a short idle window: lease renewals, the hourly sweep of expired queues
        queues = per_partition + 1  # mailboxes and the Flower's event queue, under one partition's prefix
        processes = hosts + partitions
        out[("sqs", "TagQueue")] += processes * 3600 / RENEW_SECONDS
        out[("sqs", "ListQueues")] += processes * math.ceil(queues / 1000) * 3600 / SWEEP_SECONDS
        out[("sqs", "ListQueueTags")] += partitions * queues * (queues - 1) * 3600 / SWEEP_SECONDS
    return out


def units(f: Fleet, service: str, action: str) -> tuple[str, float]:
    """(price key, units) of one request: S3 by request class, DynamoDB by capacity units."""
    if service == "s3":
        return ("s3-free", 0.0) if action in S3_FREE else ("s3-put" if action in S3_PUT_CLASS else "s3-get", 1.0)
    if service == "dynamodb":
        if action in ("PutItem", "UpdateItem", "DeleteItem"):
            return "ddb-wru", float(max(1, math.ceil(f.put_item_bytes / 1024)))
        return "ddb-rru", 1.0  # a strongly consistent GetItem of an item under 4 KB
    return service, 1.0


def cost(f: Fleet, hourly: dict[tuple[str, str], float]) -> dict[str, float]:
    """USD an hour by service."""
    out: dict[str, float] = {}
    for (service, action), n in hourly.items():
        price, u = units(f, service, action)
        out[service] = out.get(service, 0.0) + n * u * PRICES.get(price, 0.0)
    return out


def workers_per_flower(f: Fleet, runs: list[IngestRun], latency: float) -> float:
    """Busy hosts one Flower keeps up with, if each of its SQS requests takes ``latency`` s."""
    per_message, per_event = fit_costs([r for r in runs if r.round_trip == 0])
    epm = f.host_events_per_second() / f.host_messages_per_second()
    rate = flower_ingest.messages_per_second_of_flower(per_message, per_event, epm, latency)
    return rate / f.host_messages_per_second()


@dataclass(frozen=True)
class Limit:
    name: str
    quota: float
    per_host: float  # the quota's unit per second (or held), per busy host
    note: str

    @property
    def hosts(self) -> float:
        return self.quota / self.per_host if self.per_host > 0 else math.inf


def quotas(f: Fleet, flower_hosts: float) -> list[Limit]:
    """AWS quotas (us-east-1, as of 2026) and Flower, with what one busy host uses of each, smallest first."""
    t = f.infer_seconds

    def seg(service: str, roles: tuple[str, ...], pred: Any) -> float:
        return sum(f.per_segment(k) for k in f.busy if k[1] == service and k[0] in roles and pred(k))

    puts = seg("s3", ("worker",), lambda k: k[3] == "output bucket" and k[2] in S3_PUT_CLASS)
    gets = seg("s3", ("worker",), lambda k: k[3] == "input bucket" and k[2] not in S3_PUT_CLASS | S3_FREE)
    wru = seg("dynamodb", ("worker",), lambda k: k[2] == "PutItem") * units(f, "dynamodb", "PutItem")[1]
    rru = seg("dynamodb", ("worker",), lambda k: k[2] == "GetItem")
    limits = [
        Limit("Flower ingest (one Flower, 20 ms per SQS request)", flower_hosts, 1.0,
              "measured here; hosts one Flower follows"),
        Limit("SQS in-flight messages per standard queue (the tasks queue)", 120_000, SLOTS,
              "each host holds 3 task messages"),
        Limit("SNS Publish, us-east-1 (per account, soft; 9,000/s or 1,500/s in other regions)", 30_000,
              f.host_messages_per_second(), "heartbeats, task-event batches, task-sent"),
        Limit("S3 PUT/COPY/POST/DELETE per prefix (one job's outputs, jobs/{job_id}/segments/)", 3_500, puts / t,
              "if every host works on one job"),
        Limit("S3 GET/HEAD per prefix (one job's inputs, segments/{job_id}/)", 5_500, gets / t,
              "if every host works on one job"),
        Limit("DynamoDB writes per partition (one job_id)", 1_000, wru / t, "WCU/s, if every host works on one job"),
        Limit("DynamoDB reads per partition (one job_id)", 3_000, rru / t, "RCU/s, if every host works on one job"),
    ]
    return sorted(limits, key=lambda lim: lim.hosts)


def first_limit(limits: list[Limit]) -> Limit:
    return min(limits, key=lambda lim: lim.hosts)


@dataclass
class Measured:
    fleet: Fleet
    ingest: list[IngestRun]
    started: float
    finished: float
    machine: str
    load_start: tuple[float, float, float]
    command: str
    extra: dict[str, Any] = field(default_factory=dict)


def machine() -> str:
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), 0)
    versions = ", ".join(f"{p} {version(p)}" for p in ("celery", "kombu", "flower", "boto3", "moto"))
    return (f"{platform.platform()}, {os.cpu_count()} cores, {mem / 1024 / 1024:.0f} GiB RAM, "
            f"Python {platform.python_version()}; {versions}")


def _t(header: list[str], rows: list[list[Any]]) -> list[str]:
    right = ["---:" if i and all(isinstance(r[i], int | float) for r in rows) else "---" for i in range(len(header))]

    def cell(v: Any) -> str:
        if isinstance(v, int | float) and abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    return ["| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |",
            *("| " + " | ".join(cell(v) for v in r) + " |" for r in rows), ""]


def _usd(v: float) -> str:
    return f"${v:,.0f}" if v >= 100 else f"${v:,.2f}" if v >= 0.1 else f"${v:.4f}"


def render(m: Measured) -> str:
    """The generated part of ``docs/capacity.md``: every measured figure and the fleet tables."""
    f, when = m.fleet, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(m.started))
    medians = flower_ingest.median_runs(m.ingest)
    per_message, per_event = fit_costs([r for r in m.ingest if r.round_trip == 0])
    wpf = {lat: workers_per_flower(f, m.ingest, lat) for lat in (0.010, 0.020)}
    out = [f"Command: `{m.command}`, run on {when}, {(m.finished - m.started) / 60:.0f} min in all.",
           f"Machine: {m.machine}. Shared with other jobs: load average {m.load_start[0]:.1f} at the start, "
           f"{f.load[0]:.1f} when the host's segments began. Figures are noisy (±25 % between runs).", "",
           "### Flower's ingest: backlogs drained", ""]
    out += _t(["events per SNS message", "ms added per request", "runs", "messages", "s (median)", "events/s",
               "messages/s", "Flower's own ms per message", "Flower CPU ms per message",
               "messages/s at 20 ms per request (projected)"],
              [[r.batch, round(r.round_trip * 1000), sum(1 for x in m.ingest if (x.batch, x.round_trip) ==
                                                        (r.batch, r.round_trip)), r.messages, r.seconds,
                r.events_per_second, r.messages_per_second, 1000 * r.own_seconds / r.messages,
                1000 * r.flower_cpu / r.messages, r.projected_messages_per_second(0.020)] for r in medians])
    out += [f"Fit of Flower's own time (0 ms runs): {per_message * 1000:.2f} ms per SNS message + "
            f"{per_event * 1000:.3f} ms per event, plus one `DeleteMessage` per message and one "
            "`ReceiveMessage` per 10 messages, one after another.", "",
            f"### One GPU host's stand-in: {f.segments} segments of {f.segment_bytes / MIB:.0f} MiB, "
            f"{f.infer_seconds:.0f} s of inference each, 20 ms per request", "",
            "Task events per segment (Flower's `/metrics`): " + ", ".join(
                f"{t} {n:.2f}" for t, n in sorted(f.events_per_segment.items())) +
            f"; the worker's SNS publishes of task events: {f.task_batches_per_segment:.2f} per segment "
            f"(batches of {f.events_per_batch:.1f} events, {f.bytes_per_event:.0f} bytes per event); "
            f"heartbeats: {f.heartbeats_per_second:.2f} per s. "
            f"A Celery task message: {f.task_message_bytes:.0f} bytes; a completion row's `PutItem`: "
            f"{f.put_item_bytes:.0f} bytes.", "",
            f"**Per busy host: {f.host_messages_per_second():.2f} SNS messages/s and {f.host_events_per_second():.2f} "
            f"events/s on the event topic; one Flower follows ≈ {wpf[0.020]:.0f} busy hosts at 20 ms per SQS "
            f"request (≈ {wpf[0.010]:.0f} at 10 ms).**", "",
            "Requests per segment, by process and action (the busy window less the idle rate):", ""]
    keys = sorted(k for k in set(f.busy) if f.per_segment(k) >= 0.005)
    out += _t(["process", "request", "target", "per segment"], [[k[0], f"{k[1]}:{k[2]}", k[3], f.per_segment(k)]
                                                               for k in keys])
    out += [f"Requests per idle hour, by process (measured over {f.idle_seconds:.0f} s, x {3600 / f.idle_seconds:.0f}; "
            f"lease renewals every {RENEW_SECONDS} s and the hourly sweep are not in the window: added below):", ""]
    out += _t(["process", "request", "target", "per hour"], [[k[0], f"{k[1]}:{k[2]}", k[3], f.idle_per_hour(k)]
                                                            for k in sorted(f.idle)])
    out += [f"### The fleet: {f.segments_per_hour:.0f} segments per GPU host-hour, one Flower per "
            f"{int(wpf[0.020])} hosts", ""]
    rows = []
    for monitoring in (True, False):
        for hosts in (10, 100, 1000):
            parts = math.ceil(hosts / max(int(wpf[0.020]), 1)) if monitoring else 0
            hourly = fleet_hourly(f, hosts, max(parts, 1), monitoring=monitoring)
            usd = cost(f, hourly)
            total, segs = sum(usd.values()), hosts * f.segments_per_hour
            by = {svc: sum(n for (s, _), n in hourly.items() if s == svc) for svc in ("sqs", "sns", "s3", "dynamodb")}
            rows.append(["on" if monitoring else "off", hosts, parts, segs, by["sqs"], by["sns"], by["s3"],
                         by["dynamodb"], hourly[("sqs", "ListQueueTags")], _usd(total), _usd(total * MONTH_HOURS),
                         _usd(total / hosts), _usd(total / segs * 1000)])
    out += _t(["MONITORING", "GPU hosts", "Flowers", "segments/h", "SQS req/h", "SNS req/h", "S3 req/h",
               "DynamoDB req/h", "of which sweep ListQueueTags/h", "USD/h", "USD/month", "USD per host-hour",
               "USD per 1,000 segments"], rows)
    usd = cost(f, fleet_hourly(f, 1000, max(math.ceil(1000 / max(int(wpf[0.020]), 1)), 1)))
    out += ["Cost by service at 1,000 hosts, monitoring on: " + ", ".join(
        f"{s} {_usd(v)}/h" for s, v in sorted(usd.items(), key=lambda x: -x[1])) + ".", "",
        "### Limits, smallest fleet first (every host busy)", ""]
    out += _t(["limit", "quota", "per busy host", "hosts at the limit", "assumes"],
              [[q.name, q.quota, round(q.per_host, 3), q.hosts, q.note] for q in quotas(f, wpf[0.020])])
    out += ["Unit prices used (USD, us-east-1, as of 2026; free tiers, storage and data transfer left out): " +
            ", ".join(f"{k} {v * 1e6:.4g} per million" for k, v in PRICES.items()) + ".", ""]
    return "\n".join(out)


BEGIN, END = "<!-- capacity:begin -->", "<!-- capacity:end -->"


def write_doc(path: Path, generated: str) -> None:
    """Replace the part between the markers (the rest of an existing doc is kept)."""
    old = path.read_text(encoding="utf-8") if path.exists() else f"# Capacity\n\n{BEGIN}\n{END}\n"
    head, _, rest = old.partition(BEGIN)
    tail = rest.partition(END)[2]
    path.write_text(f"{head}{BEGIN}\n\n{generated}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=15)
    parser.add_argument("--segment-seconds", type=float, default=10.0, help="inference time per segment")
    parser.add_argument("--segment-mib", type=float, default=10.0, help="segment size (input = output)")
    parser.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument("--repeats", type=int, default=3, help="drains per batch size at 0 ms (median)")
    parser.add_argument("--quick", action="store_true", help="5 segments, 20 s idle, 1 drain each")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    if args.quick:
        args.segments, args.idle, args.repeats = 5, 20.0, 1
    root = Path(tempfile.mkdtemp(prefix="capacity-"))
    began, load0 = time.time(), os.getloadavg()
    print(f"[{time.strftime('%H:%M:%S')}] Flower ingest drains (load {load0[0]:.1f})", flush=True)
    runs = flower_ingest.sweep(root, args.repeats)
    print(f"[{time.strftime('%H:%M:%S')}] one host: worker + bridge + Flower (load {os.getloadavg()[0]:.1f})",
          flush=True)
    fleet = Fleet(**flower_ingest.measure_host(root, args.segments, args.segment_seconds,
                                                int(args.segment_mib * MIB), args.idle))
    measured = Measured(fleet, runs, began, time.time(), machine(), load0,
                        "python -m bench.capacity" + (" --quick" if args.quick else ""))
    text = render(measured)
    write_doc(args.out, text)
    print(text)
    print(f"wrote {args.out} ({(time.time() - began) / 60:.1f} min; work files in {root})")


if __name__ == "__main__":
    main()
