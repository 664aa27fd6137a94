"""Layering (DESIGN.md "Layers"): imports point only down cli -> services -> transport -> dimse -> part10 -> ul -> errors,
and the sans-IO core (ul/, dimse/, part10/) imports no I/O, clock, thread, DICOM-toolkit or UI module.

Every module under dcmnet_cli/ is parsed (never imported) and every import statement is checked, including
imports inside functions and ``if TYPE_CHECKING`` blocks. Relative imports are resolved against the module's
package. Layer directories that do not exist yet are simply absent from the walk.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "dcmnet_cli"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Highest first: a module may import only from its own layer or layers below it.
LAYERS = ["cli", "services", "transport", "dimse", "part10", "ul"]
RANK = {name: len(LAYERS) - i for i, name in enumerate(LAYERS)}  # cli=5 ... ul=1
BASE = {f"{PACKAGE}", f"{PACKAGE}.errors"}  # top-level __init__ constants and the exception tree: rank 0

SANS_IO = {"ul", "dimse", "part10"}
FORBIDDEN_IN_CORE = {
    "socket", "asyncio", "threading", "_thread", "time", "ssl", "selectors", "select", "subprocess", "os",
    "pathlib", "shutil", "tempfile", "multiprocessing", "concurrent", "signal", "pydicom", "click", "rich",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES = sorted(ROOT.rglob("*.py"))


def _known_submodule(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (ROOT.parent / rel).is_dir() or (ROOT.parent / rel).with_suffix(".py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) for every module this file imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = _module_name(path)
    package = name if _is_package(path) else name.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level - 1 > len(base_parts) - 1:
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "__future__":
                continue
            # "from dcmnet_cli import dimse" / "from .. import ul" imports a submodule, not a name
            targets = []
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if module.split(".")[0] == PACKAGE and alias.name != "*" and _known_submodule(candidate):
                    targets.append(candidate)
                else:
                    targets.append(module)
            out += [(node.lineno, t) for t in dict.fromkeys(targets)]
        elif isinstance(node, ast.Call):
            # importlib.import_module("x") / __import__("x") with a literal name: checked too
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if fname in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                if isinstance(node.args[0].value, str) and not node.args[0].value.startswith("."):
                    out.append((node.lineno, node.args[0].value))
    return out


def _layer_of_module(dotted: str) -> str | None:
    """The layer a dcmnet_cli module belongs to: a LAYERS name, 'base', or 'top' (other top-level modules)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    if dotted in BASE:
        return "base"
    if len(parts) >= 2 and parts[1] in RANK:
        return parts[1]
    return "top"  # e.g. dcmnet_cli.__main__: an entry point, treated like cli


def _rank(layer: str) -> int:
    if layer == "base":
        return 0
    if layer == "top":
        return RANK["cli"]
    return RANK[layer]


def test_walk_finds_the_core():
    names = {_module_name(p) for p in MODULES}
    assert f"{PACKAGE}.errors" in names
    assert f"{PACKAGE}.ul.pdu" in names and f"{PACKAGE}.ul.association" in names


@pytest.mark.parametrize("path", MODULES, ids=[_module_name(p) for p in MODULES])
def test_imports_point_down(path):
    me = _module_name(path)
    my_layer = _layer_of_module(me)
    bad = []
    for line, target in _imports(path):
        layer = _layer_of_module(target)
        if layer is None:
            continue  # stdlib or third party: see the sans-IO test
        if my_layer == "base":
            # errors.py and the top-level __init__ import nothing from the package but each other
            if target not in BASE:
                bad.append((line, target))
            continue
        if layer == "top" and my_layer not in ("top", "cli"):
            bad.append((line, target))  # only entry points and the CLI may use other top-level modules
            continue
        if _rank(layer) > _rank(my_layer):
            bad.append((line, target))
    assert not bad, f"{me} imports upward: " + ", ".join(f"line {n}: {t}" for n, t in bad)


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _layer_of_module(_module_name(p)) in SANS_IO],
    ids=[_module_name(p) for p in MODULES if _layer_of_module(_module_name(p)) in SANS_IO],
)
def test_sans_io_core_imports_no_io(path):
    bad = [(line, t) for line, t in _imports(path) if t.split(".")[0] in FORBIDDEN_IN_CORE]
    assert not bad, f"{_module_name(path)} (sans-IO core) imports " + ", ".join(f"line {n}: {t}" for n, t in bad)


# Threads, processes, sockets and signals live in transport/ only (DESIGN.md "Transport"); the one
# exception is the hook runner, whose subprocesses are its whole job (services/scp/hooks.py).
ABOVE_TRANSPORT = {"cli", "services", "top"}
TRANSPORT_ONLY = {"socket", "select", "selectors", "threading", "_thread", "signal", "multiprocessing",
                  "concurrent", "asyncio", "ssl"}
ALLOWED_ABOVE_TRANSPORT = {
    f"{PACKAGE}.services.scp.hooks": {"threading"},  # reaps --exec-* subprocesses; named for that job
}


def _forks(path: Path) -> list[int]:
    """Lines that call os.fork / os.forkpty / pidfd_open (process control belongs in transport/)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ("fork", "forkpty", "pidfd_open", "kill", "waitpid")]


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _layer_of_module(_module_name(p)) in ABOVE_TRANSPORT],
    ids=[_module_name(p) for p in MODULES if _layer_of_module(_module_name(p)) in ABOVE_TRANSPORT],
)
def test_threads_processes_sockets_signals_only_in_transport(path):
    me = _module_name(path)
    allowed = ALLOWED_ABOVE_TRANSPORT.get(me, set())
    bad = [(line, t) for line, t in _imports(path) if t.split(".")[0] in TRANSPORT_ONLY - allowed]
    if me not in ALLOWED_ABOVE_TRANSPORT:
        bad += [(line, "os.fork/kill/waitpid") for line in _forks(path)]
    assert not bad, f"{me} (above transport/) uses " + ", ".join(f"line {n}: {t}" for n, t in bad)


def test_transport_rule_catches_a_thread_and_a_fork(tmp_path):
    (tmp_path / "m.py").write_text("import os\ndef f():\n    import threading\n    os.fork()\n")
    got = [t for _, t in _imports_as(tmp_path / "m.py", "dcmnet_cli.services.m")]
    assert "threading" in got
    assert _forks(tmp_path / "m.py") == [4]


# --------------------------------------------------------------------------- the checker itself


def _imports_as(path: Path, name: str) -> list[tuple[int, str]]:
    original = globals()["_module_name"]
    try:
        globals()["_module_name"] = lambda p: name if p == path else original(p)  # a file outside the tree
        return _imports(path)
    finally:
        globals()["_module_name"] = original


def test_relative_imports_resolved(tmp_path):
    src = "from ..errors import X\nfrom .pdu import Y\nfrom .. import IMPLEMENTATION_CLASS_UID\nfrom .. import dimse\n"
    (tmp_path / "m.py").write_text(src)
    got = [t for _, t in _imports_as(tmp_path / "m.py", "dcmnet_cli.ul.m")]
    assert got == ["dcmnet_cli.errors", "dcmnet_cli.ul.pdu", "dcmnet_cli", "dcmnet_cli.dimse"]
    assert [_layer_of_module(t) for t in got] == ["base", "ul", "base", "dimse"]
    # dimse from ul is upward: the checker would refuse it
    assert _rank(_layer_of_module("dcmnet_cli.dimse")) > _rank("ul")


def test_forbidden_names_detected(tmp_path):
    src = "import socket\nimport os.path\nfrom time import monotonic\ndef f():\n    import threading\n"
    (tmp_path / "m.py").write_text(src)
    got = [t.split(".")[0] for _, t in _imports_as(tmp_path / "m.py", "dcmnet_cli.ul.m")]
    assert [t for t in got if t in FORBIDDEN_IN_CORE] == ["socket", "os", "time", "threading"]


# --------------------------------------------------------------------------- no import cycles


def _module_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (lazy imports inside functions included)."""
    names = {_module_name(p) for p in MODULES if not _is_package(p)}
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        me = _module_name(path)
        if me in names:
            graph[me] = {t for _, t in _imports(path) if t in names and t != me}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    """House style: no import cycles, lazy imports included (a cycle hidden in a function is still one)."""
    assert _cycles(_module_graph()) == []


def test_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
