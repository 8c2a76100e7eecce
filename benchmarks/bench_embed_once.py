"""Embed once (issue 10): the audit of the whole shared corpus with minilm, before and after the analysis registry.

Both audits run in this benchmark, each in a fresh process on the same corpus and machine: the baseline is the
commit before the registry (checked out into a temporary git worktree), where every analysis embedded its own
prompts; the new code encodes each distinct token sequence once per encoder. The output analysis (dims) takes
every distinct prompt (no sampling); robustness keeps its default sample (its attention matrix is N x N).
Printed: wall time, rows encoded (counted at the batching function both versions share) and the ratios.
BENCH_EMBED_ONCE_LIMIT=N audits only the first N distinct prompts (a quicker look).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchmarks.bench_audit import DATA, ROOT, shared_inputs

BASELINE = "5d1933c"  # the last commit before the analysis registry

# Runs inside the child: count the rows that reach the encoder, run the audit, print JSON.
# (The counter is installed before the audit imports embed_rows, so both versions count through it.)
DRIVER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    try:  # where the batch loop lives: anatomy.batching now, anatomy.embed before
        import anatomy.batching as module
        name = "embed_rows"
    except ImportError:
        import anatomy.embed as module
        name = "_embed_rows"
    counted = {"rows": 0}
    original = getattr(module, name)
    def counting(encoder, content, n_valid, rows, *args, **kwargs):
        counted["rows"] += len(rows)
        return original(encoder, content, n_valid, rows, *args, **kwargs)
    setattr(module, name, counting)
    import torch
    torch.set_num_threads(2)
    corpus, out, version = sys.argv[1], sys.argv[2], sys.argv[3]
    import anatomy.audit as A
    start = time.perf_counter()
    if version == "old":
        import dataclasses
        run = A.run_encoder_analysis
        def no_sampling(name, encoder, cfg, corpus_, out_dir):  # dims on every point; others at their default
            return run(name, encoder, dataclasses.replace(cfg, sample=10**9 if name == "dims" else None),
                       corpus_, out_dir)
        A.run_encoder_analysis = no_sampling
        result = A.run_audit(A.AuditConfig(inputs=(corpus,)), out)
    else:
        result = A.run_audit(A.AuditConfig(inputs=(corpus,), overrides={"dims.all": True}), out)
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "rows": counted["rows"], "timings": result.timings}))
    """
)


def _corpus(work: Path, limit: int | None) -> Path:
    """The shared corpus, built once with the current code (both versions read the same Parquet file)."""
    from anatomy.corpus import ingest, load_corpus
    from anatomy.corpus.sources import ReadOptions, detect_source

    corpus = work / "corpus.parquet"
    for path in shared_inputs():
        ingest(detect_source(path), [path], corpus, ReadOptions())
    if limit:
        import pyarrow.parquet as pq

        frame = load_corpus(corpus)
        keep = sorted(set(frame["prompt"]))[:limit]
        small = work / "corpus-small.parquet"
        pq.write_table(pq.read_table(corpus).filter(frame["prompt"].isin(keep).to_numpy()), small)
        return small
    return corpus


def _run(tree: Path, corpus: Path, out: Path, version: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    got = subprocess.run(
        [sys.executable, "-c", DRIVER, str(corpus), str(out), version],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if got.returncode != 0:
        raise RuntimeError(f"{version} audit failed:\n{got.stderr[-2000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    if not (DATA / "README.md").exists():
        print(f"skipped: shared data folder {DATA} is absent")
        return
    limit = int(os.environ.get("BENCH_EMBED_ONCE_LIMIT", "0")) or None
    with tempfile.TemporaryDirectory(prefix="bench-embed-once-") as tmp:
        work = Path(tmp)
        old_tree = work / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(old_tree), BASELINE], cwd=ROOT, check=True
        )
        try:
            corpus = _corpus(work, limit)
            old = _run(old_tree, corpus, work / "old", "old")
            new = _run(ROOT, corpus, work / "new", "new")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    print(
        f"audit of the shared corpus{f' (first {limit:,} prompts)' if limit else ''} with minilm, dims on every point"
    )
    print(f"{'':<26}{'wall s':>9}{'rows encoded':>15}")
    print(f"{'before (' + BASELINE + ')':<26}{old['wall']:>9.1f}{old['rows']:>15,}")
    print(f"{'after (registry)':<26}{new['wall']:>9.1f}{new['rows']:>15,}")
    print(
        f"ratio after / before: wall {new['wall'] / old['wall']:.2f}x, rows {new['rows'] / old['rows']:.2f}x"
    )
    for name, run in (("before", old), ("after", new)):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in run["timings"].items())
        print(f"  {name} stages (s): {stages}")


if __name__ == "__main__":
    main()
