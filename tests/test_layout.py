"""The package's shape, checked: no import cycles, a core that loads no Celery or boto3, small documented modules,
private Celery/kombu members used only inside the fence, no wiring across layers by string.

The layers themselves are import-linter contracts (``pyproject.toml``, run by
``.ci/run`` as ``lint-imports``).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "video_worker"
CORE = ["errors", "segments", "keys", "events", "ordering", "retry_policy", "failure_policy", "limits", "ports", "inference",
        "stages", "settings", "dead_letter", "per_process", "bridge"]
HEAVY = ("celery", "kombu", "boto3", "botocore")
#: Lines of code a module may have before it should be split (the layout issue's "about 300").
MAX_LINES = 320


def test_no_module_imports_itself_through_others() -> None:
    """Imports under ``TYPE_CHECKING`` count: a cycle hidden there is still a cycle for the reader."""
    graph = grimp.build_graph("video_worker", exclude_type_checking_imports=False)
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


#: The modules allowed to use Celery's and kombu's private or internal members (``upstream.MEMBERS``,
#: ``worker.transport.MEMBERS``), relative to the package.
FENCES = frozenset({"worker/upstream.py", "worker/transport.py", "monitoring/transport.py"})
#: Celery and kombu modules that are internals: imported only inside the fence.
INTERNAL_MODULES = ("celery.app.trace", "celery.worker.state", "celery.worker.request", "celery.worker.consumer",
                    "celery.apps.worker", "celery.utils.threads", "kombu.transport")
#: Public-looking names of fenced internals (``upstream.MEMBERS``) distinctive enough to look for.
INTERNAL_NAMES = frozenset({"on_send_buffered", "buffer_limit", "buffer_group", "create_task_handler",
                            "on_unknown_message", "on_unknown_task", "on_invalid_task", "on_decode_error", "safe_say",
                            "on_before_init", "emit_banner", "startup_info", "pool_cls", "signature_from_request",
                            "build_tracer", "trace_ok_t", "active_requests", "consume_from"})
#: Private members of the standard library a module may use (``os._exit``: leave at once, no clean-up).
STDLIB_PRIVATE = frozenset({"os._exit"})


def _fenced_names() -> frozenset[str]:
    from video_worker.worker import transport, upstream

    names = {member.rsplit(".", 1)[-1] for member in [*upstream.MEMBERS, *transport.MEMBERS]}
    return frozenset(name for name in names if name.startswith("_")) | INTERNAL_NAMES


def _outside_the_fence() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if path.relative_to(PACKAGE).as_posix() not in FENCES]


@pytest.mark.parametrize("path", _outside_the_fence(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_private_upstream_members_are_used_only_inside_the_fence(path: Path) -> None:
    fenced = _fenced_names()
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            found += [f"line {node.lineno}: imports {m}" for m in modules if m.startswith(INTERNAL_MODULES)][:1]
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name.startswith(INTERNAL_MODULES)]
        elif isinstance(node, ast.Attribute):
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if node.attr in fenced or (private and not on_self and ast.unparse(node) not in STDLIB_PRIVATE):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in fenced:
            found.append(f"line {node.lineno}: overrides {node.name}")
    assert found == [], "use the fence (worker/upstream.py, the transport modules) instead"


#: Members of Celery and kombu classes that are documented hooks for subclasses (the bootsteps guide; the
#: app's ``Worker`` class, API reference), by class: a subclass outside the fence may override these only.
PUBLIC_HOOKS = {
    "celery.bootsteps.StartStopStep": frozenset({"__init__", "requires", "create", "start", "stop", "shutdown",
                                                  "terminate"}),
    "celery.app.base.Celery": frozenset({"__init__", "Worker"}),
}


def _upstream_overrides(source: str) -> list[str]:
    """The members of Celery or kombu classes that classes in ``source`` override, documented hooks aside.

    Overriding a member (``Mailbox.oid``, ``Control.Mailbox``) relies on upstream's internals as much as
    reading a private one does, whatever its name: such a subclass belongs inside the fence.
    """
    tree = ast.parse(source)
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
        elif isinstance(node, ast.Import):
            imported.update({(alias.asname or alias.name).split(".")[0]: alias.name.split(".")[0]
                             if not alias.asname else alias.name for alias in node.names})
    found = []
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        for base_node in cls.bases:
            head, _, rest = ast.unparse(base_node).partition(".")
            dotted = imported.get(head, "") + (f".{rest}" if rest else "")
            if not dotted.startswith(("celery.", "kombu.")):
                continue
            base = pkgutil.resolve_name(dotted)
            qualified = f"{base.__module__}.{base.__name__}"  # bootsteps' metaclass puts the module in __qualname__
            allowed = PUBLIC_HOOKS.get(qualified, frozenset())
            for member in cls.body:
                targets = ([member.name] if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) else
                           [t.id for t in member.targets if isinstance(t, ast.Name)] if isinstance(member, ast.Assign)
                           else [member.target.id] if isinstance(member, ast.AnnAssign)
                           and isinstance(member.target, ast.Name) else [])
                found += [f"line {member.lineno}: {cls.name} overrides {qualified}.{name}"
                          for name in targets if hasattr(base, name) and name not in allowed]
    return found


@pytest.mark.parametrize("path", _outside_the_fence(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_subclasses_of_upstream_classes_override_only_documented_hooks_outside_the_fence(path: Path) -> None:
    assert _upstream_overrides(path.read_text(encoding="utf-8")) == [], "subclass inside the fence instead"


def test_overriding_an_upstream_member_by_its_public_looking_name_is_caught() -> None:
    """What ``monitoring/control.py`` did before its mailbox moved into the fence."""
    source = ("from kombu.pidbox import Mailbox as KombuMailbox\nfrom celery.app import control\n"
              "class Mailbox(KombuMailbox):\n    @property\n    def oid(self): ...\n    def own(self): ...\n"
              "class Control(control.Control):\n    Mailbox = Mailbox\n")
    assert _upstream_overrides(source) == ["line 5: Mailbox overrides kombu.pidbox.Mailbox.oid",
                                           "line 8: Control overrides celery.app.control.Control.Mailbox"]


BENCH = PACKAGE.parent / "bench"


def _imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source``, ``TYPE_CHECKING`` and function-level ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("path", sorted(BENCH.rglob("*.py")), ids=lambda p: str(p.relative_to(BENCH.parent)))
def test_the_benchmarks_import_nothing_from_the_tests(path: Path) -> None:
    """What the benchmarks share with the tests (the AWS proxy) lives in ``bench/``; tests may import it."""
    found = [f"line {line}: imports {module}" for line, module in _imported_modules(path.read_text(encoding="utf-8"))
             if module == "tests" or module.startswith("tests.")]
    assert found == []


def test_an_import_from_the_tests_is_caught_wherever_it_is() -> None:
    source = "import tests.support.stack\ndef f():\n    from tests.support.awsproxy import AwsProxy\n"
    assert _imported_modules(source) == [(1, "tests.support.stack"), (3, "tests.support.awsproxy")]


#: The layers of ``pyproject.toml``'s layers contract, top first; anything else is the core.
LAYERS = ("ops", "celery_app", "monitoring", "worker", "bridge", "adapters", "models")
#: Strings that name a module of another layer on purpose: the model registry names the built-in models by
#: import path so that choosing one imports only it (plug-ins are named the same way, by entry point).
#: The package's ``__init__.py`` loads its public names on first access (PEP 562), so that importing the package
#: loads neither Celery nor boto3: a facade for callers, above every layer.
REGISTRY_STRINGS = {("inference.py", "video_worker.models"), ("__init__.py", "video_worker.")}
DOTTED = re.compile(r"^video_worker(\.[A-Za-z_][A-Za-z0-9_]*)+(:[A-Za-z_][\w.]*)?$")


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def _names_a_module(text: str) -> str | None:
    """The module a ``video_worker....`` string names (``module`` or ``module:attribute``), if it is one."""
    module = text.split(":", 1)[0]
    with contextlib.suppress(ModuleNotFoundError):
        if importlib.util.find_spec(module) is not None:
            return module
    parent, _, attribute = module.rpartition(".")
    if ":" in text or not parent:
        return None
    with contextlib.suppress(ModuleNotFoundError):  # "package.module.attribute": only if it has that attribute
        if importlib.util.find_spec(parent) is not None and hasattr(importlib.import_module(parent), attribute):
            return parent
    return None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_layer_is_wired_to_another_by_a_string(path: Path) -> None:
    """``"video_worker.monitoring.transport:Transport"`` in ``worker/`` is a dependency the layer contracts
    cannot see: wire with an import (``celery_app.py``), which they check."""
    rel = path.relative_to(PACKAGE)
    own = _layer("video_worker." + ".".join(rel.with_suffix("").parts))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings):
            continue
        if not DOTTED.match(node.value) or any(rel.as_posix() == f and node.value.startswith(m)
                                                for f, m in REGISTRY_STRINGS):
            continue
        module = _names_a_module(node.value)
        if module is not None and _layer(module) != own:
            found.append(f"line {node.lineno}: {node.value!r} ({own} names {_layer(module)})")
    assert found == []


def test_importing_any_module_connects_nothing_and_patches_nothing() -> None:
    """Signal receivers, exit hooks and Celery's ``safe_say`` are untouched by imports: wiring happens when an app
    is created or a worker starts (``celery_app.py``, the bootsteps), where a reader looks for it."""
    code = """
import atexit, importlib, pkgutil
from celery import signals
from celery.apps import worker as celery_worker
from prometheus_client import values
import video_worker
from video_worker.worker import lifecycle

def snapshot():
    sigs = [s for s in vars(signals).values() if hasattr(s, 'receivers')]
    sigs += [lifecycle.segment_entered, lifecycle.segment_left]
    return ([len(s.receivers or []) for s in sigs], atexit._ncallbacks(), celery_worker.safe_say, values.ValueClass)

before = snapshot()
for info in pkgutil.walk_packages(video_worker.__path__, 'video_worker.'):
    if info.name != 'video_worker.__main__':
        importlib.import_module(info.name)
print(snapshot() == before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stdout + out.stderr


#: Dotted names in docstrings that are not modules or attributes: task names, and the lazily built app.
NOT_MODULES = {"video_worker.app", "video_worker.process", "video_worker.download", "video_worker.infer",
               "video_worker.upload", "video_worker.record"}
FILE_REF = re.compile(r"``([A-Za-z_][\w./]*\.py)``|(?<![\w/.])((?:video_worker/)?[a-z_]+/[a-z_/]+\.py)\b")
DOTTED_REF = re.compile(r"``(video_worker\.[\w.]+)``")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 1, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        try:
            for attribute in parts[i:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_docs_and_comments_name_files_and_names_that_exist(path: Path) -> None:
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    text = path.read_text(encoding="utf-8")
    missing = []
    for match in FILE_REF.finditer(text):
        ref = (match.group(1) or match.group(2)).removeprefix("video_worker/")
        if ref.startswith(("celery/", "kombu/", "tests/", "bench/")) or ("/" not in ref and any(
                f.rsplit("/", 1)[-1] == ref for f in files)):
            continue
        if not any(f == ref or f.endswith("/" + ref) for f in files):
            missing.append(ref)
    missing += [ref for ref in DOTTED_REF.findall(text) if ref not in NOT_MODULES and not _resolves(ref)]
    assert missing == []
