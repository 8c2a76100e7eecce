"""Teacher vs students speed, exact length bucketing, fp32 vs bf16, and memory (issue 4, section 6).

Random weights (speed does not depend on them; the bare architectures are seeded), real prompts: a seeded
sample of the shared corpus (../shared/data, ingested here) or, where that is absent, open_clip's ImageNet
templates. Every ratio is against a baseline measured in this same run, on this machine:
- texts/s of the SAM3 teacher at context 32 vs each LiteText student at context 16 (the paper's GPU ratios
  are 3.7x, 1.9x and 1.8x for S0, S1 and MobileCLIP2-L);
- bucketed vs full-context padded teacher embedding of the sample (goal >= 3x), with the largest output
  difference (identical up to float rounding);
- the teacher in fp32 vs bf16; parameter bytes, and the peak RSS of a whole `anatomy embed` process.
Set BENCH_ENCODER_ROWS to change the sample (default 96: the full-size teacher runs at a few texts/s on
two CPU cores).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import run_measured, shared_data, size

ROWS = int(os.environ.get("BENCH_ENCODER_ROWS", size(96, 8)))
BATCH = 32
EMBED_BATCH = 32
MIN_SECONDS = size(3, 0)
PAPER_GPU_RATIO = {"litetext-s0": 3.7, "litetext-s1": 1.9, "litetext-l": 1.8}
SHARED = shared_data()


def _sample_corpus(folder: Path) -> tuple[Path, str]:
    """A seeded sample of the shared corpus as a corpus Parquet file (and a description of it)."""
    import numpy as np

    from anatomy.corpus import ingest, load_corpus
    from anatomy.corpus.sources import ReadOptions

    full = folder / "full.parquet"
    if (SHARED / "README.md").exists():
        inputs = [
            ("lvis", [SHARED / "lvis" / "lvis_v1_categories.json"]),
            ("refcoco", sorted((SHARED / "refcoco").glob("*.csv"))),
            ("saco", [SHARED / "saco" / "toy_saco_veval_sav_test_gt.json"]),
            ("rf100vl", [SHARED / "rf100vl" / "rf100v1_labels_names.json"]),
            ("text", [SHARED / "v3det" / "category_name_13204_v3det_2023_v1.txt"]),
        ]
        what = "shared corpus"
    else:
        inputs, what = [("builtin", ["builtin:imagenet-prompts"])], "ImageNet templates (no shared data)"
    from anatomy.errors import AnatomyError

    for source, paths in inputs:
        for path in paths:
            try:
                ingest(source, [str(path)], full, ReadOptions())
            except AnatomyError as error:  # a reader problem must not hide the encoder numbers
                print(f"skipped {Path(str(path)).name}: {error.message}")
    frame = load_corpus(full)
    rows = np.random.default_rng(0).choice(len(frame), size=min(ROWS, len(frame)), replace=False)
    sample = folder / "sample.parquet"
    frame.iloc[np.sort(rows)].reset_index(drop=True).to_parquet(sample)
    return sample, f"{len(rows):,} of {len(frame):,} prompts of the {what}"


def _texts_per_second(encoder, ids, valid) -> float:
    """Encoder forward passes over pre-tokenized batches for at least MIN_SECONDS (after a warm-up)."""
    batches = [(ids[i : i + BATCH], valid[i : i + BATCH]) for i in range(0, len(ids), BATCH)]
    encoder.encode_ids(*batches[0])
    done, start = 0, time.perf_counter()
    while True:
        for batch_ids, batch_valid in batches:
            encoder.encode_ids(batch_ids, batch_valid)
            done += len(batch_ids)
            if time.perf_counter() - start >= MIN_SECONDS:
                return done / (time.perf_counter() - start)


def main() -> None:
    import numpy as np
    import torch

    from anatomy.batching import embed_prompts
    from anatomy.corpus import load_corpus
    from anatomy.encoders import load

    with tempfile.TemporaryDirectory() as tmp:
        corpus, what = _sample_corpus(Path(tmp))
        prompts = load_corpus(corpus)["prompt"].tolist()
        print(f"{what}; batch {BATCH}; torch threads {torch.get_num_threads()}; random (seeded) weights")

        # 1. teacher at 32 vs students at 16, full-context batches as each model runs in the paper
        teacher = load("sam3", device="cpu")
        ids, valid = teacher.tokenize(prompts[:64])
        teacher_rate = _texts_per_second(teacher, ids, valid)
        print(
            f"\n{'encoder':<14}{'context':>8}{'params':>14}{'texts/s':>10}{'vs teacher':>12}{'paper (GPU)':>13}"
        )
        print(f"{'sam3':<14}{32:>8}{teacher.n_parameters:>14,}{teacher_rate:>10.1f}{'1.00x':>12}{'1.0x':>13}")
        for name in ("litetext-s0", "litetext-s1", "litetext-l"):
            student = load(name, device="cpu", context_length=16)
            s_ids, s_valid = student.tokenize(prompts[:64])
            rate = _texts_per_second(student, s_ids, s_valid)
            print(
                f"{name:<14}{16:>8}{student.n_parameters:>14,}{rate:>10.1f}{rate / teacher_rate:>11.2f}x"
                f"{PAPER_GPU_RATIO[name]:>12.1f}x"
            )
            del student

        # 2. bucketed vs padded teacher embedding of the whole sample (the embed code path)
        timings, outputs = {}, {}
        for bucket in (False, True):
            start = time.perf_counter()
            outputs[bucket] = embed_prompts(
                teacher, prompts, batch_size=EMBED_BATCH, bucket=bucket, per_token=True
            )
            timings[bucket] = time.perf_counter() - start
        diff = max(float(np.abs(outputs[True][k] - outputs[False][k]).max()) for k in ("pooled", "tokens"))
        n_valid = outputs[True]["mask"].sum(1)
        # token positions each mode computes: batches of EMBED_BATCH in length order, each cut to its longest
        batches = np.sort(n_valid)[: len(n_valid) // EMBED_BATCH * EMBED_BATCH].reshape(-1, EMBED_BATCH)
        rest = np.sort(n_valid)[len(batches) * EMBED_BATCH :]
        computed = int(batches.max(1).sum() * EMBED_BATCH + (rest.max() * len(rest) if len(rest) else 0))
        print(
            f"\nteacher embedding of {len(prompts):,} prompts (mean {n_valid.mean():.2f} valid tokens of 32): "
            f"padded {len(prompts) / timings[False]:.1f} texts/s, bucketed {len(prompts) / timings[True]:.1f} texts/s "
            f"-> {timings[False] / timings[True]:.2f}x (goal >= 3x); max |difference| {diff:.2e}"
        )
        print(
            f"token positions computed: padded {len(prompts) * 32:,}, bucketed {computed:,} "
            f"({len(prompts) * 32 / computed:.2f}x fewer; batch {EMBED_BATCH})"
        )

        # the same count on the whole corpus at the CLI's default batch (tokenizing only: no model run)
        from anatomy.batching import DEFAULT_BATCH
        from anatomy.tokenizer import clip_tokenizer

        full = load_corpus(Path(tmp) / "full.parquet")["prompt"].tolist()
        lengths = np.sort(np.minimum([len(c) + 2 for c in clip_tokenizer().encode(full)], 32))
        cut = sum(
            int(lengths[i : i + DEFAULT_BATCH].max()) * len(lengths[i : i + DEFAULT_BATCH])
            for i in range(0, len(lengths), DEFAULT_BATCH)
        )
        print(
            f"whole corpus ({len(full):,} prompts, mean {lengths.mean():.2f} tokens, batch {DEFAULT_BATCH}): "
            f"bucketing computes {len(full) * 32 / cut:.2f}x fewer token positions than padding to 32"
        )

        # 3. fp32 vs bf16 teacher on the same 8 prompts at full context (CPUs without native bf16 emulate it)
        bf16 = load("sam3", device="cpu", dtype="bf16")
        few_ids, few_valid = ids[:8], valid[:8]
        fp32_rate, bf16_rate = (
            _texts_per_second(teacher, few_ids, few_valid),
            _texts_per_second(bf16, few_ids, few_valid),
        )
        agree = torch.nn.functional.cosine_similarity(
            teacher.encode_ids(few_ids, few_valid).pooled, bf16.encode_ids(few_ids, few_valid).pooled
        )
        n = teacher.n_parameters
        print(
            f"\nteacher (8 prompts, context 32): fp32 {fp32_rate:.2f} texts/s, bf16 {bf16_rate:.2f} texts/s -> "
            f"bf16/fp32 {bf16_rate / fp32_rate:.2f}x; pooled cosine bf16 vs fp32 min {agree.min().item():.5f}"
        )
        print(f"parameter bytes: fp32 {n * 4 / 2**20:,.0f} MiB, bf16 {n * 2 / 2**20:,.0f} MiB")
        del teacher, bf16

        # 4. peak RSS of a whole `anatomy embed` process (random teacher, first 16 prompts)
        small = Path(tmp) / "small.parquet"
        load_corpus(corpus).head(16).to_parquet(small)
        for dtype in ("fp32", "bf16"):
            args = [
                "embed",
                "--corpus",
                str(small),
                "-e",
                "sam3",
                "--out",
                f"{tmp}/e-{dtype}",
                "--dtype",
                dtype,
                "-q",
            ]
            wall, peak = run_measured(args, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
            print(f"anatomy embed (sam3, {dtype}, 16 prompts): {wall:.1f} s wall, peak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
