"""`anatomy check` at log scale: the coverage kNN against brute force, and the traffic paths on a big log.

1. kNN (anatomy.monitor.knn): Q log prompts against N training prompts, D=384 (minilm's width), clustered
   like real embeddings. Brute force = one full [Q, N] similarity matrix and argmax; the blocked numpy search
   and faiss's exact IndexFlatIP must give the same neighbours. Time and the memory each holds at once; the
   throughput extrapolates to a 1M-distinct-prompt log (the search is linear in Q for a fixed training set).
2. A 1,000,000-line text log with 100,000 distinct prompts (a tenth of the issue's 10M / 1M): ingest (repeated
   lines counted, each distinct line normalised once), then the vectorised per-prompt aggregation, and
   per-period figures on a 1,000,000-row (prompt, day) table. Wall time and peak memory per stage.
MONITOR_BENCH_SCALE=N multiplies the sizes (default 1).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import run_measured

SCALE = float(os.environ.get("MONITOR_BENCH_SCALE", "1"))


def _clustered(n: int, dim: int, rng, centres) -> np.ndarray:
    return (centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def bench_knn() -> None:
    from anatomy.monitor import knn

    rng = np.random.default_rng(0)
    dim, n, q = 384, int(8000 * SCALE), int(8000 * SCALE)
    centres = rng.normal(size=(500, dim))
    base, queries = _clustered(n, dim, rng, centres), _clustered(q, dim, rng, centres)
    start = time.perf_counter()
    sim = knn.normalise(queries) @ knn.normalise(base).T
    want_at, want = sim.argmax(1), 1 - sim.max(1)
    brute = time.perf_counter() - start
    print(f"kNN {q:,} queries x {n:,} training prompts, D={dim}")
    print(f"  brute force : {brute:6.2f} s, holds a {sim.nbytes / 2**20:,.0f} MiB matrix")
    del sim
    backends = ["numpy"] + (["faiss"] if knn._faiss_available() else [])
    for backend in backends:
        start = time.perf_counter()
        dist, at = knn.nearest(queries, base, backend=backend)
        took = time.perf_counter() - start
        agree = float((at == want_at).mean())
        err = float(np.abs(dist - want).max())
        slab = knn.BLOCK * n * 4 / 2**20 if backend == "numpy" else 0
        per_million = took / q * 1e6
        print(f"  {backend:<12}: {took:6.2f} s ({brute / took:4.1f}x brute), same neighbour {agree:.4%}, "
              f"max |d - d_brute| {err:.1e}, slab {slab:,.0f} MiB; 1M log prompts ~ {per_million / 60:.1f} min")  # fmt: skip
    if "faiss" not in backends:
        print("  faiss: not installed (pip install 'prompt-anatomy[monitor]')")


def bench_log() -> None:
    from anatomy.monitor import periods

    rng = np.random.default_rng(1)
    lines, distinct = int(1_000_000 * SCALE), int(100_000 * SCALE)
    words = np.array(
        ["red", "dog", "car", "person", "the", "left", "small", "cup", "on", "table", "man", "shirt"]
    )
    vocab = [
        " ".join(words[rng.integers(0, len(words), int(rng.integers(1, 6)))]) + f" {i}"
        for i in range(distinct)
    ]
    head = np.minimum(rng.zipf(1.3, size=lines) - 1, distinct - 1)  # a few prompts carry most traffic ...
    zipf = np.where(rng.random(lines) < 0.7, head, rng.integers(0, distinct, lines))  # ... over a long tail
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.txt"
        log.write_text("\n".join(vocab[i] for i in zipf) + "\n", encoding="utf-8")
        wall, peak = run_measured(["ingest", "text", str(log), "--out", str(Path(tmp) / "log.parquet"), "-q"])
        print(
            f"ingest of a {lines:,}-line log ({len(set(zipf.tolist())):,} distinct): {wall:.1f} s, peak {peak:,.0f} MiB"
        )
        from anatomy.monitor.logdata import read_log

        start = time.perf_counter()
        data = read_log(Path(tmp) / "log.parquet")
        print(f"requests per distinct prompt (pandas group-by): {time.perf_counter() - start:.2f} s, "
              f"{len(data.prompts):,} prompts, {data.n_requests:,} requests")  # fmt: skip
    import pandas as pd

    rows = int(1_000_000 * SCALE)
    prompts = [f"p{i}" for i in range(distinct)]
    days = pd.DataFrame({"prompt": np.array(prompts)[rng.integers(0, distinct, rows)],
                         "day": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, rows), "D"),
                         "count": rng.integers(1, 20, rows)})  # fmt: skip
    flags = {f: rng.random(distinct) < 0.1 for f in periods.FLAGS}
    start = time.perf_counter()
    weeks = periods.by_period(days, prompts, flags, rng.random(distinct), "week")
    print(
        f"per-week figures over {rows:,} (prompt, day) rows: {time.perf_counter() - start:.2f} s, {len(weeks)} weeks"
    )


def main() -> None:
    bench_knn()
    bench_log()


if __name__ == "__main__":
    main()
