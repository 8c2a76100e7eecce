"""Distillation training throughput (texts/s) of each LiteText student at context 16, fp32 against bf16.

One training step is exactly distill's: forward over the prompts and their word-shuffled copies (the recipe's
consistency term), MSE + cosine + consistency loss against 256-d targets, backward, clipping, AdamW. Real
prompts (open_clip's ImageNet templates), CLIP-tokenized; random weights and targets (speed does not depend on
them). bf16 here is autocast over fp32 master weights, as distill --dtype bf16 runs; on CPUs without native
bf16 it is usually slower. Ratios are measured in this run: bf16 against fp32 per student, and each student
against S0 in fp32.
"""

from __future__ import annotations

import time

from benchmarks.common import size

CONTEXT = 16
BATCH = size(8, 2)  # small: a bf16 step on a CPU without native bf16 takes tens of seconds
WARMUP_STEPS = size(2, 0)  # AdamW state allocation and first-call kernel choices stay out of the timing
MIN_SECONDS = size(2, 0)  # time each setting for at least this long (and at least one step)


def _batch(n: int):
    import numpy as np
    import torch
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    from anatomy.distill.data import Batch
    from anatomy.distill.losses import shuffle_word_ids
    from anatomy.encoders.base import valid_mask
    from anatomy.tokenizer import clip_tokenizer, pack

    prompts = [t(c) for t in OPENAI_IMAGENET_TEMPLATES for c in IMAGENET_CLASSNAMES][:: 80_000 // n][:n]
    tok = clip_tokenizer()
    rng = np.random.default_rng(0)
    content = tok.encode(prompts)
    shuffled = [shuffle_word_ids(tok.encode(p.split()), rng) for p in prompts]
    ids = pack(content, CONTEXT, tok.sot_id, tok.eot_id, tok.pad_id)
    sids = pack(shuffled, CONTEXT, tok.sot_id, tok.eot_id, tok.pad_id)
    gen = torch.Generator().manual_seed(0)
    return Batch(
        ids=torch.from_numpy(ids),
        valid=torch.from_numpy(valid_mask(ids, [len(c) for c in content])),
        targets=torch.randn(n, CONTEXT, 256, generator=gen),
        shuffled_ids=torch.from_numpy(sids),
        shuffled_valid=torch.from_numpy(valid_mask(sids, [len(c) for c in shuffled])),
    )


def _texts_per_second(kind: str, dtype: str, batch) -> tuple[float, int]:
    import torch

    from anatomy.distill.losses import LossWeights
    from anatomy.distill.train import RECIPES, forward_loss, param_groups, update
    from anatomy.encoders.mobileclip import build_litetext

    recipe = RECIPES[kind]
    torch.manual_seed(0)
    module = build_litetext(kind, CONTEXT).train()
    optimizer = torch.optim.AdamW(param_groups(module, 0.05), lr=1e-4)
    weights = LossWeights(recipe.w_cos, recipe.w_cons)
    dev = torch.device("cpu")
    rows = slice(0, BATCH)
    for _ in range(WARMUP_STEPS):
        loss, _ = forward_loss(module, batch, rows, weights, dev, dtype)
        update(module, optimizer, loss, recipe.clip)
    steps, start = 0, time.perf_counter()
    while steps < 1 or time.perf_counter() - start < MIN_SECONDS:
        loss, _ = forward_loss(module, batch, rows, weights, dev, dtype)
        update(module, optimizer, loss, recipe.clip)
        steps += 1
    return steps * BATCH / (time.perf_counter() - start), sum(p.numel() for p in module.parameters())


def main() -> None:
    import torch

    batch = _batch(BATCH)
    print(f"training step (batch {BATCH}, context {CONTEXT}, MSE+cos+consistency, AdamW) on CPU, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    base = None
    for kind in ("s0", "s1", "l")[: size(3, 1)]:
        fp32, n_params = _texts_per_second(kind, "fp32", batch)
        bf16, _ = _texts_per_second(kind, "bf16", batch)
        base = base or fp32
        print(
            f"litetext-{kind:<2} {n_params / 1e6:6.1f} M params  fp32 {fp32:7.1f} texts/s  bf16 {bf16:7.1f} texts/s  "
            f"bf16/fp32 {bf16 / fp32:5.2f}x  fp32 vs s0 {fp32 / base:5.2f}x"
        )


if __name__ == "__main__":
    main()
