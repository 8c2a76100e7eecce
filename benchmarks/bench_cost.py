"""What S0 at context 16 costs against the teacher at 32 on this machine (the study's deployment question):
model memory, peak memory, batch-1 latency and batch-64 throughput ratios, each configuration in a fresh
process (anatomy.cost), plus S0 under ONNX Runtime in fp32 and int8 against PyTorch. Untrained bare
architectures: cost does not depend on the weights. The paper's GPU texts/s stand beside ours.

One intra-op thread per measuring process (CostSettings' default, the same as `anatomy cost` and the audit):
on a small shared machine, torch's default of one thread per core spin-waits against the other load and
inflates batch-1 latency by 10-30x, which would measure the neighbours rather than the encoders; ONNX Runtime
gets the same single thread. The load average beside each row says whether the machine was quiet.
"""

from __future__ import annotations

import tempfile

from benchmarks.common import TINY

# A tiny run (tests/test_benchmarks.py) measures the same path on the smallest student, briefly.
TEACHER = ("litetext-s0", 16) if TINY else ("sam3", 32)


def main() -> None:
    import dataclasses

    from anatomy.cost.compare import CostSettings, add_ratios, measure_costs, warnings_of
    from anatomy.cost.table import table_lines

    settings = CostSettings(batches=(1, 64))  # the defaults: one thread, repeats until the spread is small
    if TINY:
        settings = CostSettings(batches=(1, 4), warmup=1, repeats=2, max_repeats=2)
    runtimes = ("torch",)
    try:
        import onnxruntime  # noqa: F401

        runtimes = ("torch", "onnx", "int8")
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        table = measure_costs([TEACHER[0]], [TEACHER[1]], settings, tmp)
        s0 = measure_costs(["litetext-s0"], [16], dataclasses.replace(settings, runtimes=runtimes), tmp)
    table.rows += s0.rows
    add_ratios(table.rows)
    table.warnings = warnings_of(table)
    print("\n".join(table_lines(table.to_json())))
    rows, big = table.rows, str(max(settings.batches))
    r = rows[1]["ratios"]
    print(f"S0@16 vs sam3@32 (PyTorch, CPU): model memory x{r['model_mib']:.3f}, peak x{r['peak_batch_mib']:.2f}, "
          f"batch-1 latency x{r['latency_p50']:.3f}, batch-64 throughput x{r['texts_per_s'][big]:.2f} "
          f"(paper GPU throughput x{r.get('paper_texts_per_s', float('nan')):.2f})")  # fmt: skip
    for row in rows[2:]:
        speed = row["texts_per_s"][big] / rows[1]["texts_per_s"][big]
        latency = row["latency_ms_p50"] / rows[1]["latency_ms_p50"]
        print(f"S0@16 {row['runtime']} vs PyTorch: batch-64 throughput x{speed:.2f}, batch-1 latency x{latency:.2f}, "
              f"file {row['file_bytes'] / 2**20:.1f} MiB, weights by type {row['quantised'] or 'fp32'}")  # fmt: skip


if __name__ == "__main__":
    main()
