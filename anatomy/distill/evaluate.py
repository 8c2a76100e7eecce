"""Held-out agreement of a student with its teacher: token and pooled cosine, kNN overlap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from anatomy.distill.data import TeacherCache


def evaluate(
    module: torch.nn.Module, cache: TeacherCache, rows: np.ndarray, device, batch: int = 256
) -> dict:
    """Held-out agreement with the teacher at the training context.

    token cosine: mean over all valid tokens of cos(student, teacher); pooled cosine: mean over prompts of the
    cosine of masked-mean outputs; knn overlap@10: mean share of each prompt's 10 nearest held-out neighbours
    (cosine of pooled outputs) that student and teacher agree on.
    """
    import torch
    import torch.nn.functional as F

    from anatomy.distill.data import make_batch
    from anatomy.encoders.base import masked_mean

    was_training = module.training
    module.eval()
    cos_sum, n_tokens, pooled_s, pooled_t = 0.0, 0, [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            b = make_batch(cache, rows[start : start + batch], device)
            out = module(b.ids, b.valid).float()
            cos = F.cosine_similarity(out, b.targets, dim=-1, eps=1e-8)
            cos_sum += float((cos * b.valid).sum())
            n_tokens += int(b.valid.sum())
            pooled_s.append(masked_mean(out, b.valid).cpu())
            pooled_t.append(masked_mean(b.targets, b.valid).cpu())
    module.train(was_training)
    ps, pt = torch.cat(pooled_s).double(), torch.cat(pooled_t).double()
    return {
        "eval_token_cosine": cos_sum / max(n_tokens, 1),
        "eval_pooled_cosine": float(F.cosine_similarity(ps, pt, dim=-1, eps=1e-12).mean()),
        "eval_knn_overlap10": knn_overlap(ps.numpy(), pt.numpy(), k=10),
    }


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean |kNN_a(i) ∩ kNN_b(i)| / k over points, neighbours by cosine, excluding the point itself."""
    n = len(a)
    k = min(k, n - 1)
    if k < 1:
        return float("nan")

    def neighbours(x):
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argpartition(-sim, k - 1, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(n)]))
