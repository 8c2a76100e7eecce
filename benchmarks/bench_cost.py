"""What S0 at context 16 costs against the teacher at 32 on this machine (the study's deployment question):
model memory, peak memory, batch-1 latency and batch-64 throughput ratios, each configuration in a fresh
process (anatomy.cost), plus S0 under ONNX Runtime in fp32 and int8 against PyTorch. Untrained bare
architectures: cost does not depend on the weights. The paper's GPU texts/s stand beside ours.

One intra-op thread per measuring process (THREADS): on a small shared machine, torch's default of one
thread per core spin-waits against the other load and inflates batch-1 latency by 10-30x, which would
measure the neighbours rather than the encoders; ONNX Runtime gets the same single thread.
"""

from __future__ import annotations

import tempfile

from benchmarks.common import size

THREADS = 1
REPEATS = size(20, 2)


def main() -> None:
    from anatomy.cost.compare import CostSettings, add_ratios, machine, run_cost, table_lines

    settings = CostSettings(batches=(1, 64), repeats=REPEATS, throughput_repeats=1, threads=THREADS)
    onnx = CostSettings(batches=(1, 64), repeats=REPEATS, throughput_repeats=1, threads=THREADS,
                        runtimes=("torch", "onnx", "int8"))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_cost(["sam3"], [32], settings, tmp)["rows"]
        try:
            import onnxruntime  # noqa: F401

            rows += run_cost(["litetext-s0"], [16], onnx, tmp)["rows"]
        except ImportError:
            rows += run_cost(["litetext-s0"], [16], settings, tmp)["rows"]
    add_ratios(rows)
    result = {"rows": rows, "machine": machine("cpu", THREADS), "settings": {"batches": [1, 64]},
              "paper": run_paper()}  # fmt: skip
    print("\n".join(table_lines(result)))
    s0 = rows[1]
    r = s0["ratios"]
    print(f"S0@16 vs sam3@32 (PyTorch, CPU): model memory x{r['model_mib']:.3f}, peak x{r['peak_batch_mib']:.2f}, "
          f"batch-1 latency x{r['latency_p50']:.2f}, batch-64 throughput x{r['texts_per_s']['64']:.2f} "
          f"(paper GPU throughput x{r.get('paper_texts_per_s', float('nan')):.2f})")  # fmt: skip
    for row in rows[2:]:
        speed = row["texts_per_s"]["64"] / s0["texts_per_s"]["64"]
        latency = row["latency_ms_p50"] / s0["latency_ms_p50"]
        print(f"S0@16 {row['runtime']} vs PyTorch: batch-64 throughput x{speed:.2f}, batch-1 latency x{latency:.2f}, "
              f"file {row['file_bytes'] / 2**20:.0f} MiB")  # fmt: skip


def run_paper() -> dict:
    from anatomy.cost.compare import PAPER_DEVICE, PAPER_SOURCE, PAPER_TEXTS_PER_S

    return {"device": PAPER_DEVICE, "source": PAPER_SOURCE, "texts_per_s": PAPER_TEXTS_PER_S}


if __name__ == "__main__":
    main()
