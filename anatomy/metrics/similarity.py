"""Student-teacher agreement on the same prompts: per-token and pooled cosine, and shared neighbourhoods.

- per-token cosine: over positions valid in both encoders (the first min(L_t, L_s) positions, masks by
  position), the measure behind the paper's mean of 0.938; needs equal output widths;
- pooled cosine: between the two pooled embeddings of each prompt; needs equal output widths;
- kNN overlap@k: |N_teacher(i) & N_student(i)| / k with exact Euclidean neighbours in each space (any widths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Distribution:
    n: int
    mean: float
    median: float
    p05: float
    min: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        v = np.asarray(values, dtype=np.float64)
        return cls(
            int(v.size), float(v.mean()), float(np.median(v)), float(np.percentile(v, 5)), float(v.min())
        )


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.sum(a * b, axis=-1) / np.where(denom == 0, np.inf, denom)


def token_cosines(
    teacher: np.ndarray, teacher_mask: np.ndarray, student: np.ndarray, student_mask: np.ndarray
):
    """Cosine of each token valid in both: teacher/student [B, L, D] with masks [B, L] (by position)."""
    if teacher.shape[-1] != student.shape[-1]:
        raise ValueError(
            f"output widths differ ({teacher.shape[-1]} vs {student.shape[-1]}): no per-token cosine"
        )
    length = min(teacher.shape[1], student.shape[1])
    both = np.asarray(teacher_mask)[:, :length] & np.asarray(student_mask)[:, :length]
    return _rowwise_cosine(teacher[:, :length][both], student[:, :length][both])


def pooled_cosines(teacher: np.ndarray, student: np.ndarray) -> np.ndarray:
    if teacher.shape != student.shape:
        raise ValueError(f"pooled shapes differ ({teacher.shape} vs {student.shape}): no pooled cosine")
    return _rowwise_cosine(teacher, student)


def knn_overlap(teacher: np.ndarray, student: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-point share of the k nearest neighbours that the two spaces have in common."""
    from anatomy.metrics.knn import exact_knn

    if len(teacher) != len(student):
        raise ValueError(f"different numbers of points ({len(teacher)} vs {len(student)})")
    _, nt = exact_knn(teacher, k)
    _, ns = exact_knn(student, k)
    common = (nt[:, :, None] == ns[:, None, :]).any(axis=2).sum(axis=1)
    return common / k


@dataclass(frozen=True)
class Agreement:
    token_cosine: Distribution | None
    pooled_cosine: Distribution | None
    knn_overlap: Distribution
    k: int
    notes: list[str]


def agreement(
    teacher_tokens, teacher_mask, teacher_pooled, student_tokens, student_mask, student_pooled, k: int = 10
) -> Agreement:
    """Token arrays may be None (e.g. different tokenizers): the per-token cosine is then left out."""
    notes = []
    token = pooled = None
    if teacher_pooled.shape[-1] == student_pooled.shape[-1]:
        if teacher_tokens is not None and student_tokens is not None:
            token = Distribution.of(token_cosines(teacher_tokens, teacher_mask, student_tokens, student_mask))
        else:
            notes.append("the encoders tokenize differently: tokens do not correspond, no per-token cosine")
        pooled = Distribution.of(pooled_cosines(teacher_pooled, student_pooled))
    else:
        notes.append(
            f"output widths differ (teacher {teacher_pooled.shape[-1]}, student {student_pooled.shape[-1]}): "
            "cosines are undefined; only neighbourhoods and intrinsic dimension are compared"
        )
    overlap = Distribution.of(knn_overlap(teacher_pooled, student_pooled, k))
    return Agreement(token, pooled, overlap, k, notes)
