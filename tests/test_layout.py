"""The package's shape, checked: no import cycles, a core that loads no Celery or boto3, small documented modules.

The layers themselves are import-linter contracts (``pyproject.toml``, run by
``.ci/run`` as ``lint-imports``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "video_worker"
CORE = ["errors", "segments", "keys", "events", "ordering", "retry", "delivery", "limits", "ports", "inference",
        "stages", "settings", "letters", "per_process", "bridge"]
HEAVY = ("celery", "kombu", "boto3", "botocore")
#: Lines of code a module may have before it should be split (the layout issue's "about 300").
MAX_LINES = 320


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("video_worker", exclude_type_checking_imports=True)
    cycles = [(module, imported) for module in sorted(graph.modules)
              for imported in graph.find_modules_directly_imported_by(module)
              if graph.find_shortest_chain(importer=imported, imported=module)]
    assert cycles == []


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_loads_neither_celery_nor_boto3(module: str) -> None:
    code = (f"import sys, video_worker.{module}; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"video_worker.{module} loads {out.stdout.strip()}"


def test_callers_find_the_documented_names_in_the_package() -> None:
    import video_worker
    from video_worker import Segment, SegmentCompletion, VideoWorkerPayload, build_chain, parse_segment_key

    assert VideoWorkerPayload is Segment and callable(build_chain) and SegmentCompletion.__name__ == "SegmentCompletion"
    assert parse_segment_key("b", "segments/j/00000_00002_sbs.mp4") == Segment(
        job_id="j", segment_index=0, total_segments=2, segment_s3_uri="s3://b/segments/j/00000_00002_sbs.mp4",
        mode="sbs")
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        video_worker.nope  # noqa: B018


def test_importing_the_package_builds_no_app() -> None:
    code = "import sys, video_worker; print('app' in vars(video_worker), 'celery' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_is_small_and_says_what_it_is_for(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree) or path.name == "__main__.py", f"{path.name} has no module docstring"
    code = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= MAX_LINES, f"{path.relative_to(PACKAGE)}: {len(code)} lines; split it by concern"
