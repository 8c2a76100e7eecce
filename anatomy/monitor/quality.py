"""Quality where it can be measured: the deployed student against its teacher on a seeded sample of the log.

The figures are the run's own held-out ones (anatomy.distill.evaluate), so they compare directly: token
cosine (mean over every valid token, on prompts the student tokenizes as the teacher does), pooled cosine
(mean over prompts of the cosine of masked-mean outputs) and kNN@10 overlap (how many of each prompt's 10
nearest sample neighbours the two agree on). The sample has the run's held-out size by default, since the
kNN overlap depends on how many prompts it is measured among.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

BATCH = 256
KNN_K = 10  # kNN@10 needs 2 * KNN_K + 1 sampled prompts (anatomy.distill.evaluate.knn_min_points)


@dataclass
class QualityCheck:
    student: str
    teacher: str
    sample: int
    seed: int
    token_cosine: float | None  # None when no sampled prompt tokenizes as the teacher does
    pooled_cosine: float
    knn_overlap10: float | None  # None when the sample has fewer than 2 * KNN_K + 1 prompts
    run: dict[str, float] = field(default_factory=dict)  # the run's own held-out figures (eval_*)
    token_prompts: int = 0  # sampled prompts the token cosine is over


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 21]).choice(n, size=size, replace=False))


def _encode(encoder, prompts: list[str], context: int):
    tokens, masks, pooled = [], [], []
    for start in range(0, len(prompts), BATCH):
        out = encoder.encode(prompts[start : start + BATCH], context_length=context)
        tokens.append(out.tokens.float().cpu().numpy())
        masks.append(out.mask.cpu().numpy())
        pooled.append(out.pooled.float().cpu().numpy())
    return np.concatenate(tokens), np.concatenate(masks), np.concatenate(pooled)


def check_quality(prompts: Sequence[str], teacher, student, context: int, rows: np.ndarray, same_tokens: np.ndarray,
                  seed: int, run: dict[str, float]) -> QualityCheck:  # fmt: skip
    """same_tokens: per log prompt, whether the student's tokenization equals the teacher's (token cosine)."""
    from anatomy.distill.evaluate import knn_overlap

    chosen = [prompts[i] for i in rows]
    t_tok, t_mask, t_pool = _encode(teacher, chosen, context)
    s_tok, s_mask, s_pool = _encode(student, chosen, context)
    if s_pool.shape[-1] != t_pool.shape[-1]:
        from anatomy.errors import InputError

        raise InputError(
            f"{student.name} gives {s_pool.shape[-1]}-d outputs, its teacher {teacher.name} {t_pool.shape[-1]}-d: "
            "the deployed checkpoint is not a student of this teacher",
            "check --against: its checkpoints/best must be the run's own student",
        )
    width = min(t_tok.shape[1], s_tok.shape[1])
    aligned = same_tokens[rows][:, None] & t_mask[:, :width] & s_mask[:, :width]
    a, b = t_tok[:, :width][aligned], s_tok[:, :width][aligned]
    token = None
    if len(a):
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-8)
        token = float(cos.mean())
    tp, sp = t_pool.astype(np.float64), s_pool.astype(np.float64)
    pooled = (tp * sp).sum(1) / np.maximum(np.linalg.norm(tp, axis=1) * np.linalg.norm(sp, axis=1), 1e-12)
    knn = knn_overlap(sp, tp, k=KNN_K, warn=False)  # None on too few (never a shrunk k): a finding says why
    return QualityCheck(
        student=student.name, teacher=teacher.name, sample=len(rows), seed=seed, token_cosine=token,
        pooled_cosine=float(pooled.mean()), knn_overlap10=knn, run=dict(run),
        token_prompts=int(same_tokens[rows].sum()),
    )  # fmt: skip
