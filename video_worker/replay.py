"""``video-worker dlq list`` and ``video-worker dlq replay``."""

from __future__ import annotations

import datetime as dt

from celery import Celery

from video_worker.app import build_chain
from video_worker.deadletters import DeadLetterQueue, Received


def list_dead_letters(queue: DeadLetterQueue, *, as_json: bool = False) -> int:
    held = list(queue.receive_all(hold_seconds=60))
    try:
        _print_letters(held, as_json)
    finally:
        for received in held:  # listing must not hide them from the next reader
            queue.release(received.receipt_handle)
    if not as_json:
        print(f"{len(held)} dead letter(s) in {queue.queue_url}")
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
        what = f"{letter.payload.job_id!r}/{letter.payload.segment_index}" if letter.payload else "invalid payload"
        print(f"{letter.id}  {when}  {letter.failed_task}  attempts={letter.attempts}  {what}  "
              f"{letter.error_type}: {letter.error}")


def replay_dead_letters(app: Celery, ids: set[str] | None) -> int:
    """Re-publish the chain of each chosen dead letter (all if ``ids`` is None), then delete it."""
    queue: DeadLetterQueue = app.dead_letters
    replayed, wanted = 0, set(ids or ())
    for received in queue.receive_all(hold_seconds=60):
        letter = received.letter
        chosen = letter is not None and (ids is None or letter.id in wanted)
        if not chosen or letter is None or letter.payload is None:
            queue.release(received.receipt_handle)
            if letter is not None and letter.payload is None and chosen:
                print(f"{letter.id}: payload was invalid, cannot replay; left in place")
            continue
        build_chain(letter.payload, app).apply_async()
        queue.delete(received.receipt_handle)
        wanted.discard(letter.id)
        replayed += 1
        print(f"replayed {letter.id}: {letter.payload.job_id!r}/{letter.payload.segment_index}")
    for missing in sorted(wanted):
        print(f"{missing}: no such dead letter")
    print(f"{replayed} dead letter(s) replayed")
    return 1 if wanted else 0
