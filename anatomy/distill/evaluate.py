"""Held-out agreement of a student with its teacher: token and pooled cosine, kNN overlap."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

log = logging.getLogger(__name__)

KNN_K = 10  # the k of every eval_knn_overlap10 figure (never shrunk: too few prompts give None instead)

if TYPE_CHECKING:
    import torch

    from anatomy.distill.data import TeacherCache


def evaluate(
    module: torch.nn.Module, cache: TeacherCache, rows: np.ndarray, device, batch: int = 256
) -> dict:
    """Held-out agreement with the teacher at the training context.

    token cosine: mean over all valid tokens of cos(student, teacher); pooled cosine: mean over prompts of the
    cosine of masked-mean outputs; knn overlap@10: mean share of each prompt's 10 nearest held-out neighbours
    (cosine of pooled outputs) that student and teacher agree on, None (with a warning) on fewer than
    knn_min_points(10) = 21 held-out prompts, where the figure would be high whatever the student does.
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
        "eval_knn_overlap10": knn_overlap(ps.numpy(), pt.numpy(), k=KNN_K, what="held-out prompts"),
    }


def knn_min_points(k: int) -> int:
    """Points a kNN@k overlap needs to mean something: 2k + 1. On n points each neighbour set is k of the
    n - 1 others, so two sets share at least 2k - (n - 1) of them: at n = k + 1 the overlap is 1.0 whatever
    the outputs are, and only from n = 2k + 1 can it fall to 0."""
    return 2 * k + 1


_warned: set[tuple[int, int, str]] = set()


def knn_overlap(
    a: np.ndarray, b: np.ndarray, k: int = KNN_K, what: str = "points", warn: bool = True
) -> float | None:
    """Mean |kNN_a(i) ∩ kNN_b(i)| / k over points, neighbours by cosine, excluding the point itself.

    k is never shrunk: on fewer than knn_min_points(k) points the figure is not measured (None) and a
    warning says why (once per process for each size), so a trivially high overlap is never reported as
    kNN@k. warn=False: the caller reports it itself."""
    n = len(a)
    if k < 1 or n < knn_min_points(k):
        if warn and (n, k, what) not in _warned:
            _warned.add((n, k, what))
            log.warning("kNN@%d overlap not measured: %d %s, it needs at least %d (fewer give a high overlap "
                        "whatever the outputs)", k, n, what, knn_min_points(k))  # fmt: skip
        return None

    def neighbours(x):
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argpartition(-sim, k - 1, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(n)]))
