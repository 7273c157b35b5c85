"""``ordering``: which of two uploads of one segment key is newer."""

from __future__ import annotations

import pytest

from video_worker.ordering import Upload, sortable_sequencer


@pytest.mark.parametrize("mine, theirs, expected", [
    (Upload("a", "0055AED6DCD90281E5"), Upload("a", "0055AED6DCD90281E5"), "same"),
    (Upload("a", None, "v1"), Upload("a", None, "v2"), None),  # same bytes, another version: S3 decides
    (Upload("b", "0062B2F3C1B8A4C2D1"), Upload("a", "0062B2F3C1B8A4C2C0"), "newer"),
    (Upload("a", "0062B2F3C1B8A4C2C0"), Upload("b", "0062B2F3C1B8A4C2D1"), "older"),
    (Upload("b", "0062B2F3C1B8A4C2D2"), Upload("a", "0062B2F3C1B8A4C2D1F"), "newer"),  # padded right with zeros
    (Upload("b", "0055AED6DCD90281E5"), Upload("a", "0055AED6DCD90281E5"), None),  # LocalStack's constant one
    (Upload("b"), Upload("a"), None),  # moto: no sequencer
    (Upload("b", "0062B2F3C1B8A4C2D1"), Upload("a"), None),
])
def test_compare(mine: Upload, theirs: Upload, expected: str | None) -> None:
    assert mine.compare(theirs) == expected


def test_sequencers_compare_as_padded_hex() -> None:
    assert sortable_sequencer("0a1") > sortable_sequencer("0A0FFFF")
    assert len(sortable_sequencer("1")) == 64


def test_the_current_object_decides_by_version_when_versioned_else_by_etag() -> None:
    assert Upload("a", None, "v2").is_current(Upload("a", None, "v2"))
    assert not Upload("a", None, "v1").is_current(Upload("a", None, "v2"))
    assert Upload("b").is_current(Upload("b"))
    assert not Upload("a").is_current(Upload("b"))
    assert not Upload(None).is_current(Upload(None))
