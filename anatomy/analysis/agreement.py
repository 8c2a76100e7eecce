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
    from anatomy.analysis.intrinsic_dim import exact_knn

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


# ------------------------------------------------------------------------------------- the analysis unit
# `agreement`: teacher vs student on the same prompts.

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, param, sample_param, seed_param  # noqa: E402
from anatomy.analysis.dims import DimsEntry  # noqa: E402
from anatomy.findings import Finding  # noqa: E402

# Mean per-token student-teacher cosine at or above which a student is a faithful replacement.
AGREEMENT_OK = 0.9


@dataclass(frozen=True)
class AgreementParams:
    sample: int = sample_param(2000, "Distinct prompts compared.", min=11, max=1_000_000)
    seed: int = seed_param()
    k: int = param(10, "Neighbours for the kNN overlap.", min=1, max=1000)
    n_boot: int = param(200, "Bootstrap draws for the intrinsic-dimension spread.", min=0, max=100_000)


@dataclass
class PairDims:
    teacher: DimsEntry
    student: DimsEntry


@dataclass
class AgreementResult(Result):
    teacher: str
    student: str
    n_prompts: int
    k: int
    token_cosine: Distribution | None
    pooled_cosine: Distribution | None
    knn_overlap: Distribution
    intrinsic_dim: PairDims
    notes: list[str]
    method: dict[str, str]


class StudentTeacherAgreement(Analysis[AgreementParams, AgreementResult]):
    name = "agreement"
    title = "Student vs teacher"
    description = (
        "Student vs teacher: per-token and pooled cosine, kNN overlap, intrinsic dimension side by side."
    )
    needs = frozenset({Need.PAIR, Need.CORPUS})
    Params = AgreementParams
    Result = AgreementResult

    def compute(self, inputs: Inputs, params: AgreementParams) -> AgreementResult:
        from anatomy.analysis.sampling import distinct_sequences, sample

        if params.k >= params.sample:
            raise ValueError(f"k ({params.k}) must be smaller than the sample ({params.sample})")
        prompts, _, _ = distinct_sequences(inputs.need_corpus(), inputs.teacher_store)
        picked = [prompts[i] for i in sample(np.arange(len(prompts)), params.sample, params.seed)]
        t_pooled, t_tokens, t_mask = inputs.teacher_store.per_token(picked)
        s_pooled, s_tokens, s_mask = inputs.student_store.per_token(picked)
        teacher, student = inputs.teacher, inputs.student
        same = getattr(teacher.tokenizer, "name", None) == getattr(student.tokenizer, "name", None)
        got = agreement(
            t_tokens if same else None,
            t_mask,
            t_pooled,
            s_tokens if same else None,
            s_mask,
            s_pooled,
            params.k,
        )
        dims = PairDims(
            DimsEntry.of(t_pooled, params.seed, params.n_boot),
            DimsEntry.of(s_pooled, params.seed, params.n_boot),
        )
        method = {
            "token_cosine": "cosine per token over positions valid in both encoders (same tokenizer only)",
            "pooled_cosine": "cosine of the two pooled outputs of each prompt",
            "knn_overlap": f"share of the {params.k} exact Euclidean nearest neighbours common to both spaces",
        }
        return AgreementResult(
            teacher.name, student.name, len(picked), params.k, got.token_cosine, got.pooled_cosine,
            got.knn_overlap, dims, got.notes, method,
        )  # fmt: skip

    def figures(self, result: AgreementResult) -> dict:
        from anatomy.figures import representation as fig

        return {"agreement": fig.draw_agreement(fig.prepare_agreement(result))}

    def findings(self, result: AgreementResult, section: str) -> list[Finding]:
        from anatomy import paper

        dist, what = (
            (result.token_cosine, "per-token") if result.token_cosine else (result.pooled_cosine, "pooled")
        )
        if dist is None:
            return []
        good = dist.mean >= AGREEMENT_OK
        return [
            Finding(
                "ok" if good else "warn",
                section,
                "agreement.token_cosine" if result.token_cosine else "agreement.pooled_cosine",
                f"student {result.student} agrees with teacher {result.teacher} at mean {what} cosine "
                f"{dist.mean:.3f} (paper {paper.AGREEMENT_TOKEN_COSINE}), kNN overlap@{result.k} "
                f"{result.knn_overlap.mean:.2f}",
                dist.mean,
                "" if good else f"below {AGREEMENT_OK}: train the student longer or make it wider",
            )
        ]

    def paper_rows(self, result: AgreementResult) -> list[PaperRow]:
        from anatomy import paper

        def mean(d: Distribution | None) -> str:
            return "–" if d is None else f"{d.mean:.3f}"

        dims = result.intrinsic_dim
        return [
            PaperRow.of("mean per-token cosine", mean(result.token_cosine), paper.AGREEMENT_TOKEN_COSINE),
            PaperRow.of("mean pooled cosine", mean(result.pooled_cosine)),
            PaperRow.of(f"kNN overlap@{result.k}", mean(result.knn_overlap)),
            PaperRow.of(
                "intrinsic dim teacher / student (TwoNN)",
                f"{dims.teacher.twonn.linear:.1f} / {dims.student.twonn.linear:.1f}",
            ),
            PaperRow.of("prompts", f"{result.n_prompts:,}"),
        ]

    def summary(self, result: AgreementResult) -> list[str]:
        lines = [f"{result.student} vs {result.teacher} on {result.n_prompts:,} prompts"]
        for key, d in (("token_cosine", result.token_cosine), ("pooled_cosine", result.pooled_cosine),
                       (f"knn_overlap@{result.k}", result.knn_overlap)):  # fmt: skip
            if d is not None:
                lines.append(f"{key}: mean {d.mean:.4f}, median {d.median:.4f}, 5th percentile {d.p05:.4f}")
        for role in ("teacher", "student"):
            e = getattr(result.intrinsic_dim, role)
            lines.append(
                f"{role} intrinsic dimension: TwoNN {e.twonn.linear:.2f}, MLE {e.mle.harmonic:.2f}, "
                f"erank {e.erank:.1f} ({e.ambient_dim} dims)"
            )
        lines += [f"note: {note}" for note in result.notes]
        return lines
