"""A load run through two worker processes (``LOAD_SEGMENTS``, default 500)."""


from __future__ import annotations

import os
import re
import time

import pytest

from tests.faults.conftest import Outcome, Report, absorbed, settle, upload, verify
from tests.support.stack import Aws, Processes

pytestmark = pytest.mark.integration

LOAD_SEGMENTS = int(os.environ.get("LOAD_SEGMENTS", "500"))


def test_load_run_through_two_worker_processes(aws: Aws, procs: Processes, report: Report) -> None:
    workers = [procs.worker("load-a", scratch=procs.tmp / "a"), procs.worker("load-b", scratch=procs.tmp / "b")]
    procs.bridge()
    started = time.monotonic()
    sent = upload(aws, "load", LOAD_SEGMENTS, size=16 * 1024)
    settle(aws, "load", sent, 900)
    elapsed = time.monotonic() - started
    completed, lost, dups = verify(aws, "load", sent, workers)
    shares = [len(re.findall(r"(?<!already )recorded 'load'/", w.log())) for w in workers]
    report.outcomes.append(Outcome(f"load: {LOAD_SEGMENTS} segments of 16 KiB, two worker processes",
                                   len(sent), completed, 0, lost, dups, "none", elapsed,
                                   f"{len(sent) / elapsed:.1f} segments/s; rows written by each worker: {shares}; "
                                   f"{absorbed('load', workers)} duplicate deliveries absorbed"))
    assert (completed, lost, dups) == (LOAD_SEGMENTS, 0, 0)
    assert all(share > 0 for share in shares), "both workers took part"
