"""Every benchmark runs at a tiny size (`python -m benchmarks --tiny NAME`), so a change to the CLI or the
library cannot silently break `make bench`. The tiny numbers are not checked: speed lives in the benchmarks."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(
    m.name.removeprefix("bench_")
    for m in pkgutil.iter_modules(benchmarks.__path__)
    if m.name.startswith("bench_")
)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_benchmark_runs_at_tiny_size(name: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", name],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"benchmark {name} failed at tiny size:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert f"--- bench_{name}:" in proc.stdout


def test_unknown_benchmark_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "no-such-benchmark"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "unknown benchmark" in proc.stderr
