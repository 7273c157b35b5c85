"""The small interfaces the core needs from the outside world; ``adapters/`` implements them.

Object storage (S3), the completion table (DynamoDB), queues (SQS: the raw
event queue and the dead letters), the scratch disk, the model and where it runs. Each
implementation maps its SDK's exceptions onto ``errors`` at its edge.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from video_worker.limits import Deadline
from video_worker.segments import LocalFile, Mode, Segment, SegmentCompletion

if TYPE_CHECKING:
    from video_worker.dead_letter import DeadLetter, Received


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str  # without quotes
    version_id: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)  # user metadata (x-amz-meta-*)


class ObjectStorage(Protocol):
    def head(self, uri: str) -> ObjectInfo:
        """Size, ETag, version and user metadata of the object at ``uri`` (``ObjectNotFound`` if none)."""
        ...

    def download(self, uri: str, dest: Path, version_id: str | None = None, size: int | None = None,
                 deadline: Deadline | None = None) -> int:
        """Stream the object (that version, if given) at ``uri`` to ``dest``; return its size.

        ``size``, if known (the S3 event carries it), lets a small object come in one GET.
        """
        ...

    def upload(self, src: Path, uri: str, *, metadata: Mapping[str, str] | None = None,
               if_match: str | None = None, if_none_match: bool = False,
               deadline: Deadline | None = None) -> str:
        """Stream ``src`` to the object at ``uri``; return the new object's ETag.

        ``if_none_match``: only if no object is there; ``if_match``: only if the
        object there has that ETag. Otherwise ``WriteConflict`` and nothing changes.
        """
        ...


class CompletionStore(Protocol):
    def get(self, job_id: str, segment_index: int) -> SegmentCompletion | None: ...

    def put(self, completion: SegmentCompletion) -> bool:
        """Write the row unless it already describes this (or a newer) output; True if written."""
        ...

    def rows(self, job_id: str) -> list[SegmentCompletion]:
        """Every row of ``job_id``, by segment index."""
        ...


class Scratch(Protocol):
    """This host's scratch directory, where a segment's files live between its stages."""

    def path_for(self, segment: Segment, stage: Literal["input", "output"]) -> Path:
        """A new file name for ``segment``'s input or output (distinct on every call)."""
        ...

    def describe(self, path: Path) -> LocalFile: ...

    def holds(self, file: LocalFile) -> Path | None:
        """The local path of ``file`` if this host holds it, complete; else None."""
        ...

    def writing(self, final: Path) -> AbstractContextManager[Path]:
        """A temporary path, renamed to ``final`` when the block succeeds."""
        ...

    def remove(self, path: Path) -> None: ...


@dataclass(frozen=True)
class QueueMessage:
    """One message received from a queue."""

    id: str
    body: str
    receipt: str
    receive_count: int | None = None


class MessageQueue(Protocol):
    """A queue the bridge long-polls (the raw S3-event queue)."""

    url: str

    def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]: ...

    def delete(self, messages: Sequence[QueueMessage]) -> list[tuple[QueueMessage, str]]:
        """Delete ``messages``; return those that could not be, with the reason."""
        ...


class DeadLetterStore(Protocol):
    """Where work that failed for good is kept (the dead-letter queue)."""

    url: str

    def put(self, letter: DeadLetter) -> None: ...

    def receive_all(self, hold_seconds: int = 30, limit: int = 10_000) -> Iterator[Received]:
        """Every letter now held, each hidden from other readers for ``hold_seconds`` while it is handled."""
        ...

    def release(self, receipt_handle: str) -> None: ...

    def delete(self, receipt_handle: str) -> None: ...


@runtime_checkable
class Model(Protocol):
    """Turns the 2D segment at ``src`` into the stereo segment at ``dst``.

    Implementations stream from disk to disk (segments are hundreds of MB),
    raise ``errors.ModelRejected`` for input they cannot process and
    ``errors.TransientError`` for failures worth retrying (e.g. GPU OOM).
    ``dst``'s folder exists; a partial ``dst`` is discarded by the caller.
    An optional ``warm_up()`` is called once, when the model is built; an optional
    ``fingerprint`` (a short string) names what shapes its output, and is recorded with each segment.
    A model with temporal state declares ``context_frames`` (an int > 0): its ``infer`` then also takes
    ``context=``, the previous segment of the same job when there is one (the worker fetches it), whose last
    frames it reads first so that neighbouring segments join without a jump.
    A model that reports progress declares ``reports_progress = True``: its ``infer`` then also takes
    ``progress=``, a zero-argument callable to call whenever its work advances (a frame decoded, a batch done,
    a frame encoded); in a model process, one that makes no progress for ``STEREO_STALL_SECONDS`` is killed.
    A model converted by several threads at once (``INFER_PER_PROCESS`` > 1) must be thread-safe.
    """

    def infer(self, src: Path, dst: Path, mode: Mode) -> None: ...


class ModelRunner(Protocol):
    """Runs the configured model on one segment within a deadline (in this process or another).

    ``fingerprint``: the model's own hash of what shapes its output (settings, versions), if it has one;
    ``context_frames``: frames of the previous segment the model reads first (0: it takes no ``context``).
    """

    fingerprint: str | None

    @property
    def context_frames(self) -> int: ...

    def run(self, src: Path, dst: Path, mode: Mode, deadline: Deadline, context: Path | None = None) -> None: ...

    def close(self) -> None: ...
