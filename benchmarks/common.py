"""Small helpers shared by benchmarks: wall time and peak memory of a child process or a call."""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def run_measured(args: list[str], **kwargs) -> tuple[float, float]:
    """Run `python args...` in a fresh process; return (wall seconds, peak RSS in MiB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, check=False, **kwargs
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {args}\n{proc.stderr[-2000:]}")
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    return wall, peak_kib / 1024


# Runs the anatomy CLI in-process, then prints its own peak RSS (KiB) as the last stdout line.
_WRAPPER = """
import resource, sys, contextlib, io
from anatomy.cli import app
with contextlib.redirect_stdout(io.StringIO()):
    try:
        app(sys.argv[1:], standalone_mode=False)
    except SystemExit as e:
        if e.code: raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
