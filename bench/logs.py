"""What the worker's own log says about each task: when it was received, started and finished.

``celery -A video_worker worker -l INFO`` logs ``Task NAME[ID] received`` (main
process, when the message is taken from SQS) and ``Task NAME[ID] succeeded in
Ns: RESULT`` (pool process); the result names the segment. The start is the
end minus the run time.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass

from video_worker.stages import STAGE_NAMES

_LINE = re.compile(
    r"^\[(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/(?P<proc>[\w-]+)\] "
    r"Task (?P<task>video_worker\.\w+)\[(?P<id>[0-9a-f-]+)\] "
    r"(?:(?P<received>received)|(?P<continued>continued on this host)"
    r"|succeeded in (?P<runtime>[0-9.e-]+)s: (?P<result>.*))$"
)
_SEGMENT = re.compile(r"'job_id': '(?P<job>[^']*)', 'segment_index': (?P<index>\d+)")
STAGES = STAGE_NAMES


def _epoch(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, as logged


@dataclass
class TaskRun:
    task: str
    task_id: str
    host: str  # which worker log it came from
    received: float | None = None
    end: float | None = None
    runtime: float | None = None
    job: str | None = None
    index: int | None = None
    local: bool = False  # run by the previous stage's task on the same host (video_worker/affinity.py)

    @property
    def start(self) -> float | None:
        return None if self.end is None or self.runtime is None else self.end - self.runtime


def parse(text: str, host: str) -> list[TaskRun]:
    runs: dict[str, TaskRun] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        run = runs.setdefault(m["id"], TaskRun(m["task"], m["id"], host))
        if m["received"] or m["continued"]:
            run.received = _epoch(m["ts"])
            run.local = bool(m["continued"])
        else:
            run.end = _epoch(m["ts"])
            run.runtime = float(m["runtime"])
            seg = _SEGMENT.search(m["result"])
            if seg:
                run.job, run.index = seg["job"], int(seg["index"])
    return list(runs.values())


def chains(runs: list[TaskRun]) -> dict[tuple[str, int], dict[str, TaskRun]]:
    """(job, index) → stage → its (last successful) run."""
    out: dict[tuple[str, int], dict[str, TaskRun]] = defaultdict(dict)
    for run in runs:
        if run.job is not None and run.index is not None and run.end is not None:
            out[(run.job, run.index)][run.task] = run
    for stages in out.values():
        # A task that ran the next stages itself logs its success after them: its own
        # stage ended when the next one continued.
        for prev_name, next_name in zip(reversed(STAGES[:-1]), reversed(STAGES[1:]), strict=True):
            prev, nxt = stages.get(prev_name), stages.get(next_name)
            if prev and nxt and nxt.local and prev.host == nxt.host and prev.start is not None \
                    and nxt.received is not None and nxt.received < (prev.end or 0):
                start = prev.start
                prev.end, prev.runtime = nxt.received, max(0.0, nxt.received - start)
    return dict(out)


@dataclass
class StageStats:
    """Means over chains, in seconds: hop (previous stage's end → received), wait (received → start), run."""

    stage: str
    count: int
    hop: float | None
    wait: float | None
    run: float
    other_host: int  # runs on another host than the previous stage (→ the file is fetched again)


def stage_stats(runs: list[TaskRun]) -> list[StageStats]:
    by_chain = chains(runs)
    out = []
    for i, stage in enumerate(STAGES):
        hops, waits, times, moved = [], [], [], 0
        for stages in by_chain.values():
            run = stages.get(stage)
            if run is None or run.runtime is None:
                continue
            times.append(run.runtime)
            if run.received is not None and run.start is not None:
                waits.append(max(0.0, run.start - run.received))
            prev = stages.get(STAGES[i - 1]) if i else None
            if prev is not None and prev.end is not None and run.received is not None:
                hops.append(run.received - prev.end)
                moved += prev.host != run.host
        if times:
            out.append(StageStats(stage.split(".")[-1], len(times),
                                  statistics.fmean(hops) if hops else None,
                                  statistics.fmean(waits) if waits else None,
                                  statistics.fmean(times), moved))
    return out


def refetches(text: str) -> tuple[int, int]:
    """(``infer`` fetching its input again, ``upload`` fetching the input and running the model again).

    Both happen when a stage runs on another host than the one holding its file (``pipeline.py``).
    """
    return (len(re.findall(r"input of .* is not on this host .*fetching it again", text)),
            len(re.findall(r"output of .* is not on this host .*running .* again", text)))
