"""The house's floors (issue 17 item 3): every import in the package, deferred ones included, points down, and
every module imports on its own in a fresh interpreter (no cycle hidden by import order).

FLOORS below is the map: a module may import modules of a lower floor, or of its own room (the FLOORS entry it
belongs to). A new room (a new package or top-level module) is placed here by whoever adds it. KNOWN lists the
arrows that still point up or sideways, each with what would fix it; the test fails when a new one appears and
when a listed one is gone (then delete its line), so the list only shrinks.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "anatomy"

# Bottom floor first. An entry names a room: a module, or a package and everything in it; "anatomy.analysis="
# is the registry module itself (anatomy/analysis/__init__.py), above the analyses it lists.
FLOORS: list[list[str]] = [
    ["anatomy.errors"],
    ["anatomy.paths"],
    ["anatomy.io"],
    [
        "anatomy=",
        "anatomy.locks",
        "anatomy.paper",
        "anatomy.layout",
        "anatomy.findings",
        "anatomy.cachecheck",
    ],
    ["anatomy.corpus", "anatomy.metrics", "anatomy.context", "anatomy.bpe_batch"],
    ["anatomy.clip_bpe"],
    ["anatomy.tokenizer", "anatomy.datasets"],
    ["anatomy.vocab"],
    ["anatomy.encoders"],
    ["anatomy.batching", "anatomy.tokens", "anatomy.figures"],
    ["anatomy.embed"],
    ["anatomy.embed_store"],
    ["anatomy.analysis.base"],  # the framework: what an analysis is
    ["anatomy.analysis.sampling", "anatomy.analysis.runner"],  # ... how one runs and picks its prompts
    ["anatomy.distill"],
    [
        "anatomy.cost",
        "anatomy.monitor",
    ],  # measuring encoders and exports; checking a log against a deployment
    ["anatomy.analysis"],  # the analyses
    ["anatomy.analysis="],  # the registry
    ["anatomy.report"],
    ["anatomy.audit_corpus"],  # what an audit reads
    ["anatomy.audit"],
    ["anatomy.specialise"],  # the pipeline: stages over everything below
    ["anatomy.cli"],
    ["anatomy.__main__"],
]

# (importing module, imported module): what fixes it. Owners delete their line when they fix it.
KNOWN: dict[tuple[str, str], str] = {
    ("anatomy.vocab.store", "anatomy.encoders.hf"): "vocab: take the base tokenizer as an argument",
    ("anatomy.vocab.store", "anatomy.encoders.registry"): "vocab: take the base tokenizer as an argument",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room_of(module: str) -> tuple[int, str]:
    """(floor, room entry) of a module: its exact entry ("name="), else the longest package entry above it."""
    best: tuple[int, str] | None = None
    for floor, entries in enumerate(FLOORS):
        for entry in entries:
            if entry.endswith("="):
                if module == entry[:-1]:
                    return floor, entry
            elif (module == entry or module.startswith(entry + ".")) and (
                best is None or len(entry) > len(best[1])
            ):
                best = (floor, entry)
    if best is None:
        raise LookupError(f"{module} is on no floor: add its room to FLOORS in tests/test_architecture.py")
    return best


def imports_of(module: str, path: Path, known: set[str] | None = None) -> set[str]:
    """Every anatomy module `module` imports, at the top or inside functions (`from a import b` counts a.b when
    a.b is a module, else a)."""
    known = set(modules()) if known is None else known
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found.update(subs or [target])
    return {m for m in found if m == "anatomy" or m.startswith("anatomy.")}


def violations() -> set[tuple[str, str]]:
    bad = set()
    known = modules()
    for module, path in known.items():
        floor, room = room_of(module)
        for target in imports_of(module, path, set(known)):
            t_floor, t_room = room_of(target)
            if t_room != room and t_floor >= floor:
                bad.add((module, target))
    return bad


def test_every_module_is_on_a_floor():
    for module in modules():
        room_of(module)  # raises naming the module that has no floor


def test_arrows_point_down():
    found = violations()
    new = sorted(found - set(KNOWN))
    assert not new, (
        "imports that point up or sideways (move the code down, or the import into its room):\n"
        + "\n".join(f"  {a} -> {b}" for a, b in new)
    )
    fixed = sorted(set(KNOWN) - found)
    assert not fixed, "fixed, delete from KNOWN in tests/test_architecture.py: " + ", ".join(map(str, fixed))


def test_the_floor_check_sees_deferred_and_relative_imports(tmp_path):
    """The checker itself: an import inside a function is an arrow too (the cycles the issue found were deferred)."""
    source = tmp_path / "anatomy" / "io.py"
    source.parent.mkdir()
    source.write_text("def f():\n    from anatomy.cli import app\n    from . import errors\n")
    got = imports_of("anatomy.io", source, known={"anatomy.io", "anatomy.errors", "anatomy.cli"})
    assert got == {"anatomy.cli", "anatomy.errors"}
    assert ("anatomy.io", "anatomy.cli") not in KNOWN and room_of("anatomy.cli")[0] > room_of("anatomy.io")[0]


@pytest.mark.skipif(
    not hasattr(os, "fork"), reason="needs fork to give each module a fresh interpreter cheaply"
)
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """One interpreter with no anatomy module loaded forks a child per module; the child imports only that
    module, so an import cycle hidden by the order of imports elsewhere fails here, naming the module."""
    names = sorted(modules())
    script = f"""
import os, sys, traceback
import numpy  # third-party only: no anatomy module is loaded before the fork
assert not [m for m in sys.modules if m == "anatomy" or m.startswith("anatomy.")]
failed = []
for name in {names!r}:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            sys.stderr.write(f"--- {{name}}\\n" + traceback.format_exc(limit=3))
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name)
print(",".join(failed))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    failed = [n for n in done.stdout.strip().split(",") if n]
    assert failed == [], f"modules that do not import on their own: {failed}\n{done.stderr[-3000:]}"
