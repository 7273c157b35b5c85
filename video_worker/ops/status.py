"""``video-worker status JOB_ID [--json] [--watch]``: how far a job is, from its completion rows and dead letters.

``job_status`` is pure: it builds a ``JobStatus`` from a job's rows
(``CompletionStore.rows``) and the dead letters, which ``read_letters`` takes
off the DLQ and always releases again (a status read hides no letter from
``dlq list`` or ``dlq replay`` for longer than one scan of the queue).

* ``total_segments`` comes from the rows, else from the job's dead letters;
  with neither the job is ``unknown``. Rows or letters that disagree on it are
  a warning (the largest wins).
* ``state``: ``complete`` (nothing missing), ``failed`` (every missing segment
  has a dead letter: only a replay can finish it), ``in_progress``, ``unknown``.
* ``dead_lettered``: every letter of a segment that has no row, duplicates
  (a segment dead-lettered twice) included. A letter of a segment that has a
  row (a replay or a later upload succeeded) is stale: it is listed apart, in
  ``resolved_dead_letters``, and does not count against the job.
* ``models``: one entry per distinct (``model``, ``model_fingerprint``) of the
  completed segments; more than one sets ``fingerprint_mismatch`` (reassembly
  would concatenate outputs made differently).

``--watch`` re-reads every ``--interval`` seconds (the dead letters at most
every ``LETTERS_EVERY_SECONDS``, so a watch leaves the DLQ to other readers most
of the time) until the job is complete (exit 0) or nothing changed for
``--idle-timeout`` seconds (exit 1).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TextIO

from pydantic import BaseModel

from video_worker.dead_letter import DeadLetter, Received
from video_worker.errors import TransientError, VideoWorkerError
from video_worker.ports import CompletionStore, DeadLetterStore
from video_worker.segments import SegmentCompletion

State = Literal["complete", "in_progress", "failed", "unknown"]
#: How long a status read hides the dead letters it scans (it releases them as soon as the scan is done).
HOLD_SECONDS = 30
#: ``--watch`` re-reads the dead letters at most this often (and once more when it stops).
LETTERS_EVERY_SECONDS = 15.0
BAR_WIDTH = 30


class LetterSummary(BaseModel):
    segment_index: int | None
    failed_task: str
    error_type: str
    error: str
    attempts: int
    id: str
    failed_at: int


class ModelGroup(BaseModel):
    model: str | None
    model_fingerprint: str | None
    segments: list[int]


class JobStatus(BaseModel):
    job_id: str
    state: State
    total_segments: int | None
    completed_count: int
    percent: int
    completed: list[int]
    missing: list[int]
    dead_lettered: list[LetterSummary]
    resolved_dead_letters: list[LetterSummary]
    models: list[ModelGroup]
    fingerprint_mismatch: bool
    fingerprints: list[str | None]
    first_completed_at: int | None
    last_completed_at: int | None
    warnings: list[str]

    @property
    def known(self) -> bool:
        """Whether anything at all was found for the job."""
        return bool(self.completed or self.dead_lettered or self.resolved_dead_letters)


def _letter_segment(letter: DeadLetter) -> tuple[str | None, int | None, int | None]:
    """(job id, segment index, total segments) a letter is about, as far as it says."""
    if letter.payload is not None:
        return letter.payload.job_id, letter.payload.segment_index, letter.payload.total_segments
    raw: dict[str, Any] = letter.raw_payload or {}
    if isinstance(raw.get("segment"), dict):  # a later stage's argument: the segment is inside
        raw = raw["segment"]
    job, index, total = raw.get("job_id"), raw.get("segment_index"), raw.get("total_segments")
    return (job if isinstance(job, str) else None, index if isinstance(index, int) else None,
            total if isinstance(total, int) else None)


def _summary(letter: DeadLetter, index: int | None) -> LetterSummary:
    return LetterSummary(segment_index=index, failed_task=letter.failed_task, error_type=letter.error_type,
                         error=letter.error, attempts=letter.attempts, id=letter.id, failed_at=letter.failed_at)


def model_label(model: str | None, fingerprint: str | None) -> str:
    """``stereo@3f2a9c1b0d4e``: the model and the start of its fingerprint."""
    name = model or "unknown model"
    return f"{name}@{fingerprint[:12]}" if fingerprint else name


def job_status(job_id: str, rows: Sequence[SegmentCompletion], letters: Iterable[DeadLetter]) -> JobStatus:
    """The status of ``job_id`` from its completion rows and the dead letters (any job's; others are ignored)."""
    rows = sorted((r for r in rows if r.job_id == job_id), key=lambda r: r.segment_index)
    done = {r.segment_index for r in rows}
    open_letters: list[LetterSummary] = []
    resolved: list[LetterSummary] = []
    letter_totals: list[int] = []
    for letter in letters:
        job, index, total = _letter_segment(letter)
        if job != job_id:
            continue
        if total is not None:
            letter_totals.append(total)
        (resolved if index in done else open_letters).append(_summary(letter, index))
    for found in (open_letters, resolved):
        found.sort(key=lambda s: (s.segment_index is None, s.segment_index or 0, s.failed_at, s.id))
    warnings: list[str] = []
    totals = sorted({r.total_segments for r in rows} | set(letter_totals))
    if len(totals) > 1:
        warnings.append(f"rows and dead letters disagree on the number of segments: {', '.join(map(str, totals))}")
    total = max((r.total_segments for r in rows), default=None) or max(letter_totals, default=None)
    completed = sorted(done)
    missing = sorted(set(range(total)) - done) if total else []
    beyond = [i for i in completed if total and i >= total]
    if beyond:
        warnings.append(f"rows for segments beyond the last one ({total - 1 if total else 0}): {compress(beyond)}")
    lettered = {s.segment_index for s in open_letters}
    state: State
    if total is None:
        state = "unknown"
    elif not missing:
        state = "complete"
    elif all(i in lettered for i in missing):
        state = "failed"
    else:
        state = "in_progress"
    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for r in rows:
        groups.setdefault((r.model, r.model_fingerprint), []).append(r.segment_index)
    models = [ModelGroup(model=m, model_fingerprint=f, segments=s) for (m, f), s in groups.items()]
    if len(models) > 1:
        made = "; ".join(f"{model_label(g.model, g.model_fingerprint)} ({compress(g.segments)})" for g in models)
        warnings.append(f"segments made by {len(models)} different model fingerprints: {made}; "
                        "reassembly would mix them")
    times = [r.completed_at for r in rows]
    return JobStatus(
        job_id=job_id, state=state, total_segments=total, completed_count=len(completed) - len(beyond),
        percent=100 * (len(completed) - len(beyond)) // total if total else 0,
        completed=completed, missing=missing, dead_lettered=open_letters, resolved_dead_letters=resolved,
        models=models, fingerprint_mismatch=len(models) > 1,
        fingerprints=list(dict.fromkeys(g.model_fingerprint for g in models)),
        first_completed_at=min(times, default=None), last_completed_at=max(times, default=None), warnings=warnings,
    )


def compress(indices: Iterable[int]) -> str:
    """``[3, 4, 5, 8]`` → ``"3-5, 8"``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _letter_line(s: LetterSummary) -> str:
    where = f"segment {s.segment_index}" if s.segment_index is not None else "a segment it cannot name"
    return (f"{where} at {s.failed_task} after {s.attempts} attempt{'s' if s.attempts != 1 else ''}: "
            f"{s.error_type}: {_one_line(s.error)} (id {s.id})")


_STATE_WORDS = {"complete": "complete", "in_progress": "in progress", "unknown": "total unknown",
                "failed": "failed: every missing segment is dead-lettered (video-worker dlq replay)"}


def render_human(status: JobStatus) -> list[str]:
    """One line per fact."""
    if status.total_segments is None:
        head = f"job {status.job_id}: number of segments unknown"
    else:
        head = (f"job {status.job_id}: {status.completed_count}/{status.total_segments} segments complete "
                f"({status.percent}%)")
    lines = [f"{head}, {_STATE_WORDS[status.state]}"]
    if status.missing:
        lines.append(f"missing: {compress(status.missing)}")
    lines += [f"dead-lettered: {_letter_line(s)}" for s in status.dead_lettered]
    lines += [f"resolved (completed since; stale letter): {_letter_line(s)}" for s in status.resolved_dead_letters]
    if status.models:
        lines.append("models: " + ", ".join(f"{model_label(g.model, g.model_fingerprint)} "
                                            f"({len(g.segments)} segment{'s' if len(g.segments) != 1 else ''})"
                                            for g in status.models))
    lines += [f"WARNING: {w}" for w in status.warnings]
    if status.last_completed_at is not None:
        lines.append(f"last completed: {_when(status.last_completed_at)}")
    return lines


def unknown_line(job_id: str) -> str:
    return f"video-worker: no completion rows or dead letters for job {job_id}"


def progress_line(status: JobStatus) -> str:
    """One redrawable line: a bar, the count, the dead letters, the state."""
    if status.total_segments is None:
        return f"job {status.job_id}: no completion rows or dead letters yet"
    filled = BAR_WIDTH * status.percent // 100
    line = (f"job {status.job_id} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
            f"{status.completed_count}/{status.total_segments} ({status.percent}%)")
    if status.dead_lettered:
        line += f", {len({s.segment_index for s in status.dead_lettered})} dead-lettered"
    return f"{line}, {_STATE_WORDS[status.state].split(':')[0]}"


def read_letters(store: DeadLetterStore) -> list[DeadLetter]:
    """Every dead letter now on the queue; each held only for the scan, and released even if it fails."""
    held: list[Received] = []
    try:
        held.extend(store.receive_all(hold_seconds=HOLD_SECONDS))
    finally:
        unreleased = 0
        for received in held:
            try:
                store.release(received.receipt_handle)
            except VideoWorkerError:  # the others must still be released; this one reappears on its own
                unreleased += 1
        if unreleased:
            print(f"video-worker: {unreleased} dead letter(s) could not be released; "
                  f"they are visible again within {HOLD_SECONDS}s", file=sys.stderr)
    return [r.letter for r in held if r.letter is not None]


class StatusReader:
    """Reads a job's status; keeps the dead letters it read for up to ``letters_max_age`` seconds."""

    def __init__(self, completions: CompletionStore, dead_letters: DeadLetterStore, job_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._completions, self._dead_letters, self.job_id, self._clock = completions, dead_letters, job_id, clock
        self._letters: list[DeadLetter] | None = None
        self._letters_at = 0.0

    def read(self, letters_max_age: float = 0.0) -> JobStatus:
        now = self._clock()
        if self._letters is None or now - self._letters_at >= letters_max_age:
            self._letters, self._letters_at = read_letters(self._dead_letters), now
        return job_status(self.job_id, self._completions.rows(self.job_id), self._letters)


def _signature(status: JobStatus) -> tuple[Any, ...]:
    return (status.state, status.total_segments, tuple(status.completed),
            tuple(s.id for s in status.dead_lettered), tuple(s.id for s in status.resolved_dead_letters),
            tuple(status.warnings))


def watch(read: Callable[[float], JobStatus], out: TextIO, *, interval: float = 2.0, idle_timeout: float = 300.0,
          as_json: bool = False, tty: bool = False, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Show the job's progress until it is complete (0) or nothing changes for ``idle_timeout`` seconds (1).

    On a TTY one line is redrawn; otherwise (and with ``as_json``, one object a line) a line is printed
    only when something changed.
    """
    last: tuple[Any, ...] | None = None
    changed_at = clock()
    status: JobStatus | None = None
    while True:
        try:
            status = read(LETTERS_EVERY_SECONDS)
        except TransientError as exc:
            print(f"\nvideo-worker: status read failed ({exc}); trying again", file=sys.stderr)
        else:
            if (signature := _signature(status)) != last:
                last, changed_at = signature, clock()
                if as_json:
                    print(status.model_dump_json(), file=out, flush=True)
                elif not tty:
                    print(progress_line(status), file=out, flush=True)
            if tty and not as_json:
                out.write(f"\r\x1b[2K{progress_line(status)}")
                out.flush()
            if status.state == "complete":
                break
        if clock() - changed_at >= idle_timeout:
            break
        sleep(interval)
    if tty and not as_json:
        out.write("\n")
    if status is not None and (status.state != "complete" or status.resolved_dead_letters):
        status = read(0.0)  # the dead letters as they are now, for the last word
    if as_json:
        if status is not None and _signature(status) != last:
            print(status.model_dump_json(), file=out, flush=True)
    elif status is not None:
        print("\n".join(render_human(status)), file=out, flush=True)
    if status is not None and status.state == "complete":
        return 0
    why = f"stopped: nothing changed for {idle_timeout:g}s"
    if status is None or not status.known:
        why += f"; no completion rows or dead letters for job {status.job_id if status else '?'}"
    print(why, file=sys.stderr if as_json else out, flush=True)
    return 1


def show_status(completions: CompletionStore, dead_letters: DeadLetterStore, job_id: str, *, as_json: bool = False,
                watching: bool = False, interval: float = 2.0, idle_timeout: float = 300.0,
                out: TextIO | None = None) -> int:
    """The ``status`` command: print once (0; 1 if nothing is known of the job) or ``watch``."""
    out = out or sys.stdout
    reader = StatusReader(completions, dead_letters, job_id)
    if watching:
        try:
            return watch(reader.read, out, interval=interval, idle_timeout=idle_timeout, as_json=as_json,
                         tty=out.isatty())
        except KeyboardInterrupt:
            print("\nstopped: interrupted", file=sys.stderr)
            return 130
    status = reader.read()
    if as_json:
        print(status.model_dump_json(), file=out)
    elif status.known:
        print("\n".join(render_human(status)), file=out)
    if not status.known:
        print(unknown_line(job_id), file=sys.stderr)
        return 1
    return 0
