"""One error tree, split by what should happen next.

* ``ConfigError``      - the process cannot start; one line names the setting.
* ``MalformedMessage`` - a raw queue message of no known shape; it is left on
  the queue so its redrive policy moves it to the dead-letter queue.
* ``PermanentError``   - retrying cannot help (object missing, access denied,
  invalid payload, model rejects the input, a message that is not a task):
  the work is dead-lettered at once.
* ``TransientError``   - throttling, 5xx, timeouts, connection resets, a full
  disk, a stage over its time limit, a model process that died or stalled
  (``WorkerLost``, ``ModelStalled``: bounded by ``MAX_DELIVERIES``), a model
  process killed for another segment it served (``SharedProcessKilled``): the
  stage is retried with backoff, then dead-lettered.

Adapters map SDK exceptions onto this tree at their edge (``raise … from exc``),
so nothing above the adapters ever sees a botocore exception; ``classify``
maps the rest (``OSError`` from the scratch disk, anything unexpected).
"""

from __future__ import annotations

import errno
import os


class VideoWorkerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(VideoWorkerError):
    """A missing or malformed setting; the message names it on one line."""


class MalformedMessage(VideoWorkerError):
    """A raw queue message that is not JSON or of no known event shape."""


class PermanentError(VideoWorkerError):
    """Retrying will not help; the work is dead-lettered."""


class InvalidPayload(PermanentError):
    """A task payload that does not validate."""


class BadMessage(PermanentError):
    """A broker message that cannot be run as a task: undecodable, of the wrong shape,
    for an unknown task, with wrong arguments, or delivered too many times."""


class ResourceNotFound(PermanentError):
    """Something the deployment must provide does not exist."""


class ObjectNotFound(ResourceNotFound):
    """The source object does not exist (any more)."""


class BucketNotFound(ResourceNotFound):
    """An S3 bucket named in the settings does not exist."""


class TableNotFound(ResourceNotFound):
    """The DynamoDB table named in the settings does not exist."""


class QueueNotFound(ResourceNotFound):
    """An SQS queue does not exist."""


class AccessDenied(PermanentError):
    """The credentials may not perform the operation."""


class ModelRejected(PermanentError):
    """The model refused the input (corrupt or unsupported video)."""


class SegmentTooLarge(PermanentError):
    """The source object is larger than ``MAX_SEGMENT_BYTES``."""


class UnsafePath(PermanentError):
    """A path derived from input would leave the scratch directory."""


class TransientError(VideoWorkerError):
    """Worth retrying: throttling, 5xx, timeouts, connection problems."""


class DiskFull(TransientError):
    """The scratch disk is full (ENOSPC, EDQUOT): retried once this segment's files are removed."""


class ScratchUnavailable(TransientError):
    """Another error of the scratch disk (read-only, permissions, I/O): the host's fault, not the segment's."""


class StageTimeout(TransientError):
    """A stage ran past its time limit (``STAGE_TIME_LIMITS``)."""


class WorkerLost(TransientError):
    """The process running the model died (a crash, SIGKILL, the OOM killer) or was killed at its time limit.

    Counts against ``MAX_DELIVERIES`` (``failure_policy.decide``): a segment that keeps taking its process
    down is dead-lettered after that many attempts."""


class ModelStalled(WorkerLost):
    """A model that reports progress made none for ``STEREO_STALL_SECONDS``: its process was killed.

    A ``WorkerLost``: retried, and dead-lettered after ``MAX_DELIVERIES`` attempts with the stall as reason."""


class SharedProcessKilled(TransientError):
    """The model process this segment shared with others was killed for another segment's sake (a stall or a
    time limit there): retried like any transient error; not counted against ``MAX_DELIVERIES``."""


class WriteConflict(TransientError):
    """A conditional write lost a race (S3 412 PreconditionFailed): read again and decide again."""


class Undelivered(TransientError):
    """A publish (retry, hand-off, dead letter) failed for longer than its patience: the message goes back."""


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def classify(exc: BaseException) -> VideoWorkerError:
    """``exc`` as a member of this tree: ours unchanged, ``OSError`` by its errno, anything else permanent."""
    if isinstance(exc, VideoWorkerError):
        return exc
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, "OSError")
        detail = f"{name} {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        if exc.errno in _DISK_FULL:
            return DiskFull(f"scratch disk full ({detail})")
        return ScratchUnavailable(f"scratch disk error ({detail})")
    if isinstance(exc, MemoryError):
        return TransientError(f"out of memory in process {os.getpid()}")
    return PermanentError(f"{type(exc).__name__}: {exc}")
