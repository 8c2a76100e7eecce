"""The three LiteText students at context 16: texts/s in fp32 and bf16, and parameter bytes.

Random weights (speed does not depend on them), real prompts (open_clip's ImageNet templates), pre-tokenized
so only the encoder is timed. Baselines measured in this run: each student's bf16 against its own fp32, and
every student against litetext-s0 in fp32. The teacher-vs-student ratios are in bench_encoders (part A).
"""

from __future__ import annotations

import time

from benchmarks.common import peak_rss_mib, size

CONTEXT = 16
BATCH = size(32, 4)
MIN_SECONDS = size(1.5, 0)  # time each setting for at least this long (after a one-text warm-up)


def _prompts(n: int) -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    return [t(c) for t in OPENAI_IMAGENET_TEMPLATES for c in IMAGENET_CLASSNAMES][:: 80_000 // n][:n]


def _texts_per_second(module, ids, dtype, device) -> float:
    """Throughput over whole batches; bf16 matmuls are very slow on CPUs without native bf16 (AVX2 only)."""
    import torch

    module = module.to(device, dtype).eval()
    batches = list(torch.as_tensor(ids, device=device).split(BATCH))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        module(batches[0][:1], None)  # warm-up: kernels chosen, memory allocated
        sync()
        done, start = 0, time.perf_counter()
        while True:
            for batch in batches:
                module(batch, None)
                done += len(batch)
                sync()
                if time.perf_counter() - start >= MIN_SECONDS:
                    return done / (time.perf_counter() - start)


def main() -> None:
    import torch

    from anatomy.encoders.mobileclip import KINDS, build_litetext
    from anatomy.tokenizer import clip_tokenizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ids = clip_tokenizer()(_prompts(size(512, 8)), CONTEXT)
    print(
        f"{len(ids)} ImageNet-template prompts at context {CONTEXT}, batch {BATCH}, {device}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'student':<13}{'params':>13}{'fp32 MiB':>10}{'bf16 MiB':>10}{'fp32 txt/s':>12}{'bf16 txt/s':>12}{'bf16/fp32':>11}{'vs s0 fp32':>12}"
    )
    baseline = None
    for kind in list(KINDS)[: size(len(KINDS), 1)]:
        torch.manual_seed(0)
        module = build_litetext(kind, CONTEXT)
        n_params = sum(p.numel() for p in module.parameters())
        fp32 = _texts_per_second(module, ids, torch.float32, device)
        bf16 = _texts_per_second(module, ids, torch.bfloat16, device)
        baseline = baseline or fp32
        print(
            f"litetext-{kind:<4}{n_params:>13,}{n_params * 4 / 2**20:>10.1f}{n_params * 2 / 2**20:>10.1f}"
            f"{fp32:>12.1f}{bf16:>12.1f}{bf16 / fp32:>10.2f}x{fp32 / baseline:>11.2f}x"
        )
        del module
    print(f"peak RSS of this process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
