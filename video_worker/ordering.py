"""Which of two uploads of one segment key is newer: the one ordering that output and row both obey.

S3 delivers events at least once and in any order, and a segment may be
uploaded again while the chain of its previous upload still runs. Every chain
carries its upload's identity (``Upload``: ETag, sequencer, version id) from
the event. Two uploads compare as follows:

1. the same ETag (and the same version id, when both have one): the same
   upload, delivered twice;
2. both carry S3 sequencers and they differ: the larger sequencer is newer
   (S3's own order of events for one key; hex strings compared after
   right-padding the shorter with zeros);
3. otherwise (moto sends no sequencer; LocalStack sends a constant one) the
   order cannot be read from the events: the upload that S3 holds now at the
   segment key is the newest, so a chain asks S3 (one HEAD of the input) and
   goes on only if its upload is the current one.

``upload`` writes the output with a conditional PUT, so an older chain can
never replace a newer chain's output, and numbers each output it writes
(``generation``: the previous output's plus one). ``record`` writes the row
only if its generation is newer than the row's, so the row always names the
upload whose output is in S3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SEQUENCER_WIDTH = 64
Order = Literal["same", "newer", "older"]


def sortable_sequencer(sequencer: str) -> str:
    """S3 sequencers compare as hex strings after right-padding the shorter with zeros."""
    return sequencer.upper().ljust(SEQUENCER_WIDTH, "0")


@dataclass(frozen=True)
class Upload:
    """One upload of a segment key, as its event (or a HEAD of the object) describes it."""

    etag: str | None
    sequencer: str | None = None
    version_id: str | None = None

    def compare(self, other: Upload) -> Order | None:
        """``self`` relative to ``other``; ``None`` when only S3's current object can tell."""
        if self.etag and self.etag == other.etag and (
            not (self.version_id and other.version_id) or self.version_id == other.version_id
        ):
            return "same"
        if self.sequencer and other.sequencer:
            mine, theirs = sortable_sequencer(self.sequencer), sortable_sequencer(other.sequencer)
            if mine != theirs:
                return "newer" if mine > theirs else "older"
        return None

    def is_current(self, current: Upload) -> bool:
        """Whether ``current`` (what S3 holds now at the key) is this upload."""
        if self.version_id and current.version_id:
            return self.version_id == current.version_id
        return bool(self.etag) and self.etag == current.etag
