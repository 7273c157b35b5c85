"""The fleet arithmetic of ``bench/capacity.py`` and the ingest fit of ``bench/flower_ingest.py``, on made-up
measurements: how the figures move with the fleet's size, not what they are."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.capacity import Fleet, cost, first_limit, fleet_hourly, quotas
from bench.flower_ingest import IngestRun, fit_costs, messages_per_second_of_flower

#: Requests counted on one host's stand-in, by (process, service, action, target): (idle 60 s, busy 100 s).
COUNTS = {("worker", "sqs", "ReceiveMessage", "tasks queue"): (6, 10),
          ("worker", "sqs", "ReceiveMessage", "mailbox"): (6, 0),
          ("worker", "sqs", "DeleteMessage", "tasks queue"): (0, 10),
          ("worker", "sns", "Publish", "event topic"): (30, 80),
          ("worker", "s3", "GetObject", "input bucket"): (0, 20),
          ("worker", "s3", "UploadPart", "output bucket"): (0, 20),
          ("worker", "s3", "CreateMultipartUpload", "output bucket"): (0, 10),
          ("worker", "dynamodb", "GetItem", "table"): (0, 10),
          ("worker", "dynamodb", "PutItem", "table"): (0, 10),
          ("bridge", "sqs", "ReceiveMessage", "raw queue"): (3, 0),
          ("bridge", "sqs", "SendMessage", "tasks queue"): (0, 10),
          ("flower", "sqs", "ReceiveMessage", "event queue"): (30, 0),
          ("flower", "sqs", "DeleteMessage", "event queue"): (30, 80),
          ("flower", "sqs", "ReceiveMessage", "reply queue"): (2, 0)}


def fleet(infer_seconds: float = 10.0) -> Fleet:
    idle = Counter({key: n for key, (n, _) in COUNTS.items() if n})
    busy = Counter({key: n for key, (_, n) in COUNTS.items() if n})
    return Fleet(idle_seconds=60, idle=idle, segments=10, busy_seconds=100, busy=busy, infer_seconds=infer_seconds,
                 segment_bytes=10 << 20, events_per_segment={"task-received": 4, "task-started": 4,
                                                             "task-succeeded": 4, "task-sent": 1},
                 task_batches_per_segment=2.0, heartbeats_per_second=0.5, put_item_bytes=700)


def total(f: Fleet, hosts: int, **kw: object) -> float:
    return sum(cost(f, fleet_hourly(f, hosts, **kw)).values())  # type: ignore[arg-type]


def test_without_monitoring_the_cost_is_a_fixed_part_plus_the_same_amount_per_host() -> None:
    f = fleet()
    c = [total(f, h, monitoring=False) for h in (10, 20, 30, 1000)]
    assert c[1] - c[0] == pytest.approx(c[2] - c[1])
    assert c[3] - c[0] == pytest.approx((c[1] - c[0]) * 99)
    assert not any(service == "sns" for service, _ in fleet_hourly(f, 100, monitoring=False))


def test_the_sweep_grows_with_the_square_of_a_partition_and_partitions_bound_it() -> None:
    f = fleet()
    one, double = (fleet_hourly(f, h)[("sqs", "ListQueueTags")] for h in (500, 1000))
    assert double > 3.9 * one
    split = fleet_hourly(f, 1000, partitions=10)[("sqs", "ListQueueTags")]
    assert split < double / 9


def test_monitoring_costs_more_than_none_and_flower_traffic_follows_the_hosts() -> None:
    f = fleet()
    assert total(f, 100) > total(f, 100, monitoring=False)
    small, large = (fleet_hourly(f, h)[("sqs", "DeleteMessage")] for h in (100, 200))
    assert large == pytest.approx(2 * small)


def test_the_first_limit_is_the_one_met_at_the_fewest_hosts() -> None:
    limits = quotas(fleet(), flower_hosts=60)
    assert first_limit(limits).hosts == min(q.hosts for q in limits)
    assert [q.hosts for q in limits] == sorted(q.hosts for q in limits)


def test_rate_limits_are_met_at_proportionally_more_hosts_when_segments_take_longer() -> None:
    fast, slow = ({q.name: q.hosts for q in quotas(fleet(t), flower_hosts=60)} for t in (10.0, 20.0))
    s3 = next(name for name in fast if name.startswith("S3 PUT"))
    assert slow[s3] == pytest.approx(2 * fast[s3])
    inflight = next(name for name in fast if "in-flight" in name)
    assert slow[inflight] == fast[inflight]  # held messages do not depend on the segment time


def test_the_ingest_fit_recovers_the_costs_the_drains_were_made_with() -> None:
    per_message, per_event = 0.004, 0.0003
    runs = [IngestRun(batch=b, messages=m, round_trip=0.0, seconds=m * (per_message + b * per_event), load=0.0)
            for b, m in ((1, 300), (10, 200), (100, 60))]
    got = fit_costs(runs)
    assert got == pytest.approx((per_message, per_event))
    with pytest.raises(ValueError):
        fit_costs(runs[:1])
    assert messages_per_second_of_flower(*got, 1.0, latency=0.02) < messages_per_second_of_flower(*got, 1.0, 0.01)
