"""Run every benchmarks/bench_*.py module's main(), or only those named: python -m benchmarks tokens dims.

`--tiny` runs them at tiny sizes (a smoke run: tests/test_benchmarks.py does this for each benchmark).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time

import benchmarks


def main(argv: list[str]) -> None:
    if "--tiny" in argv:
        os.environ["ANATOMY_BENCH_TINY"] = "1"  # read by benchmarks.common at import, and by child processes
        argv = [a for a in argv if a != "--tiny"]
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    unknown = sorted(set(argv) - {n.removeprefix("bench_") for n in names})
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}")
    wanted = [n for n in names if not argv or n.removeprefix("bench_") in argv]
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"--- {name}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
