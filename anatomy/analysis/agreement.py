"""`agreement`: a student against its teacher on the same prompts (per-token and pooled cosine, shared
neighbourhoods, intrinsic dimension of both). The math lives in anatomy.metrics.similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, param, sample_param, seed_param
from anatomy.analysis.dims import DimsEntry
from anatomy.findings import Finding

# (Distribution, knn_overlap, pooled_cosines are also importable from here for older callers: cost, distill)
from anatomy.metrics.similarity import (  # noqa: F401
    Distribution,
    agreement,
    knn_overlap,
    pooled_cosines,
    token_cosines,
)

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
        from anatomy.analysis.sampling import distinct_sequences, require_distinct, sample

        if params.k >= params.sample:
            raise ValueError(f"k ({params.k}) must be smaller than the sample ({params.sample})")
        prompts, _, _ = distinct_sequences(inputs.need_corpus(), inputs.teacher_store)
        require_distinct(
            inputs.need_corpus(), len(prompts), params.k + 1, f"the kNN overlap at k = {params.k}"
        )
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

    def figures(self, result: AgreementResult) -> dict[str, Any]:
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
