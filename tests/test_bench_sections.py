"""``bench.sections``: a benchmark rewrites its own section of BENCHMARKS.md and nothing else."""

from __future__ import annotations

from pathlib import Path

from bench.sections import replace_section


def test_a_section_is_replaced_up_to_the_next_heading_of_its_level_and_others_are_kept(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## A\n\nold a\n\n### A.1\n\nold detail\n\n## B\n\nb stays\n")
    replace_section(doc, "## A", "new a")
    assert doc.read_text() == "# Benchmarks\n\n## A\n\nnew a\n\n## B\n\nb stays\n"


def test_a_new_section_is_appended(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## B\n\nb stays\n")
    replace_section(doc, "## C", "c\n")
    replace_section(doc, "## C", "c again")
    assert doc.read_text() == "# Benchmarks\n\n## B\n\nb stays\n\n## C\n\nc again\n"
