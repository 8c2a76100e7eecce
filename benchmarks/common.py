"""Small helpers shared by benchmarks: sizes, the data folder, wall time and peak memory of a child or a call."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# `python -m benchmarks --tiny` (and tests/test_benchmarks.py) runs every benchmark at a tiny size, so a change
# to the CLI or the library cannot silently break one; the numbers of a tiny run mean nothing.
TINY = os.environ.get("ANATOMY_BENCH_TINY") == "1"


def size(full: int, tiny: int) -> int:
    """A benchmark's size: `full` normally, `tiny` in a tiny run."""
    return tiny if TINY else full


def shared_data() -> Path:
    """The real data folder: ANATOMY_DATA (as the tests take it) or ../shared/data beside the checkout."""
    return Path(os.environ.get("ANATOMY_DATA") or ROOT.parent / "shared" / "data")


def run_measured(args: list[str], **kwargs) -> tuple[float, float]:
    """Run `anatomy ARGS` in a fresh process; return (wall seconds, peak RSS in MiB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, check=False, **kwargs
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {args}\n{proc.stderr[-2000:]}")
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    return wall, peak_kib / 1024


# Runs the anatomy CLI in-process, then prints its own peak RSS (KiB) as the last stdout line. VmHWM, not
# ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a big parent would report the parent's.
_WRAPPER = """
import sys, contextlib, io
from anatomy.cli import app
with contextlib.redirect_stdout(io.StringIO()):
    try:
        app(sys.argv[1:], standalone_mode=False)
    except SystemExit as e:
        if e.code: raise
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
