"""``video-worker dlq list`` and ``video-worker dlq replay``.

Replay follows ``failure_policy``'s rule: a dead letter is deleted only once its
chain is published; if the broker refuses (patiently, ``PUBLISH_PATIENCE_SECONDS``)
it is released, left for the next replay, and the command exits 1.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from typing import Any

from video_worker import failure_policy
from video_worker.dead_letter import Received
from video_worker.errors import Undelivered
from video_worker.ports import DeadLetterStore
from video_worker.segments import Segment


def list_dead_letters(queue: DeadLetterStore, *, as_json: bool = False) -> int:
    held = list(queue.receive_all(hold_seconds=60))
    try:
        _print_letters(held, as_json)
    finally:
        for received in held:  # listing must not hide them from the next reader
            queue.release(received.receipt_handle)
    if not as_json:
        print(f"{len(held)} dead letter(s) in {queue.url}")
    return 0


def _print_letters(held: list[Received], as_json: bool) -> None:
    for received in held:
        letter = received.letter
        if as_json:
            print(letter.model_dump_json() if letter else received.body)
            continue
        if letter is None:
            print(f"{received.message_id}  (not a dead letter: {received.body[:80]!r})")
            continue
        when = dt.datetime.fromtimestamp(letter.failed_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        what = letter.segment_label if letter.payload else ("raw message" if letter.raw_message else "invalid payload")
        print(f"{letter.id}  {when}  {letter.failed_task}  attempts={letter.attempts}  {what}  "
              f"{letter.error_type}: {letter.error}")


def replay_dead_letters(queue: DeadLetterStore, publish_chain: Callable[[Segment], Any], patience: float,
                        ids: set[str] | None) -> int:
    """Re-publish the chain of each chosen dead letter (all if ``ids`` is None) with ``publish_chain``, trying
    for ``patience`` seconds (``PUBLISH_PATIENCE_SECONDS``), then delete it."""
    replayed, failed, wanted = 0, 0, set(ids or ())
    started = time.time()
    for received in queue.receive_all(hold_seconds=max(60, int(patience) + 30)):
        letter = received.letter
        # Only letters that were there when the command started: a replayed chain that fails again
        # writes a new one, which waits for the next replay.
        chosen = letter is not None and received.sent_at < started and (ids is None or letter.id in wanted)
        if not chosen or letter is None or letter.payload is None:
            queue.release(received.receipt_handle)
            if letter is not None and letter.payload is None and chosen:
                wanted.discard(letter.id)
                print(f"{letter.id}: no valid segment in it ({letter.error_type}: {letter.error}); "
                      "cannot replay, left in place")
            continue
        wanted.discard(letter.id)
        try:
            failure_policy.patiently(functools.partial(publish_chain, letter.payload), f"replaying {letter.id}",
                               patience=patience)
        except Undelivered as exc:
            failed += 1
            queue.release(received.receipt_handle)
            print(f"{letter.id}: {exc}; left in place")
            continue
        queue.delete(received.receipt_handle)  # a failed delete replays it twice: the second chain is skipped
        replayed += 1
        print(f"replayed {letter.id}: {letter.segment_label}")
    for missing in sorted(wanted):
        print(f"{missing}: no such dead letter")
    print(f"{replayed} dead letter(s) replayed")
    return 1 if wanted or failed else 0
