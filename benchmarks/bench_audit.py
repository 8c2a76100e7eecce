"""Full `anatomy audit` wall time on the shared corpus with minilm (tokens and every analysis), per stage,
and the rows each encoder encoded (each distinct token sequence once, whatever number of analyses read it).

Baseline, measured in the same run: the tokens stage, one full pass over the corpus; every stage is also shown
as a multiple of it. With BENCH_AUDIT_CHAIN=1 the tokens and analyses also run as separate CLI processes, the
way `make reports` runs them (each imports the stack and loads the encoder again), and the ratio shows what one
in-process audit saves (this doubles the benchmark's time).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import TINY, peak_rss_mib, run_measured, shared_data

DATA = shared_data()
INPUTS = (
    "lvis/lvis_v1_categories.json",
    "refcoco/*.csv",
    "saco/toy_saco_veval_sav_test_gt.json",
    "rf100vl/rf100v1_labels_names.json",
    "v3det/category_name_13204_v3det_2023_v1.txt",
    "coco/yoloworld_coco_class_texts.json",
)


def shared_inputs() -> list[str]:
    patterns = INPUTS[-1:] if TINY else INPUTS  # a tiny run audits the 80 COCO names
    return [str(p) for pattern in patterns for p in sorted(DATA.glob(pattern))]


def main() -> None:
    import torch

    from anatomy.audit import AuditConfig, run_audit

    if not (DATA / "README.md").exists():
        print(f"skipped: shared data folder {DATA} is absent")
        return
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        out = Path(tmp) / "audit"
        start = time.perf_counter()
        result = run_audit(AuditConfig(inputs=tuple(shared_inputs())), out)
        total = time.perf_counter() - start
        prompts = result.record.corpus.get("distinct_prompts", 0)
        print(
            f"audit of {prompts:,} distinct prompts with minilm: {total:.1f} s, peak RSS {peak_rss_mib():,.0f} MiB"
        )
        for spec, rows in result.rows_encoded.items():
            print(f"rows encoded by {spec}: {rows:,} distinct token sequences")
        base = result.timings.get("tokens") or float("nan")
        print(f"{'stage':<28}{'seconds':>9}{'share':>8}{'x tokens':>10}")
        for stage, seconds in result.timings.items():
            print(f"{stage:<28}{seconds:>9.1f}{seconds / total:>8.1%}{seconds / base:>10.1f}")
        counts = ", ".join(f"{n} {m}" for m, n in _counts(result.findings).items())
        print(f"findings: {counts}")

        if os.environ.get("BENCH_AUDIT_CHAIN") != "1":
            return
        # The same stages as separate processes on the corpus the audit built.
        corpus = str(out / "corpus.parquet")
        steps = {"tokens": ["tokens", "--corpus", corpus, "--out", f"{tmp}/cli"]}
        for name in ("positions", "spectrum", "dims", "robustness"):
            steps[name] = [name, "--encoder", "minilm", "--corpus", corpus, "--out", f"{tmp}/cli/enc", "-q"]
        steps["positions"].remove("--corpus")  # positions reads the encoder's table only
        steps["positions"].remove(corpus)
        chain = 0.0
        for name, args in steps.items():
            wall, rss = run_measured(args)
            chain += wall
            print(f"  separate process {name:<12}{wall:>7.1f} s  peak {rss:,.0f} MiB")
        in_process = sum(v for k, v in result.timings.items() if k not in ("ingest", "report"))
        print(f"tokens + analyses: in one audit {in_process:.1f} s vs separate processes {chain:.1f} s")
        print(f"ratio separate / audit: {chain / in_process:.2f}x")


def _counts(findings) -> dict[str, int]:
    from anatomy.findings import counts

    return counts(findings)


if __name__ == "__main__":
    main()
