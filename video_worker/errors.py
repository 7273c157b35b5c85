"""One error tree, split by what should happen next.

* ``ConfigError``      - the process cannot start; one line names the setting.
* ``MalformedMessage`` - a raw queue message of no known shape; it is left on
  the queue so its redrive policy moves it to the dead-letter queue.
* ``PermanentError``   - retrying cannot help (object missing, access denied,
  invalid payload, model rejects the input): the chain fails at once.
* ``TransientError``   - throttling, 5xx, timeouts, connection resets: the task
  is retried with backoff.

Adapters map SDK exceptions onto this tree at their edge (``raise … from exc``),
so nothing above the adapters ever sees a botocore exception.
"""

from __future__ import annotations


class VideoWorkerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(VideoWorkerError):
    """A missing or malformed setting; the message names it on one line."""


class MalformedMessage(VideoWorkerError):
    """A raw queue message that is not JSON or of no known event shape."""


class PermanentError(VideoWorkerError):
    """Retrying will not help; the chain stops here."""


class InvalidPayload(PermanentError):
    """A task payload that does not validate."""


class ObjectNotFound(PermanentError):
    """The source object does not exist (any more)."""


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
