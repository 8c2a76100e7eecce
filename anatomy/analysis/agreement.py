"""`agreement`: a student against its teacher on the same prompts (per-token and pooled cosine, shared
neighbourhoods, intrinsic dimension of both). The math lives in anatomy.metrics.similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, param, sample_param, seed_param
from anatomy.analysis.dims import DimsEntry
from anatomy.findings import Finding
from anatomy.metrics.similarity import Distribution, agreement

# Mean per-token student-teacher cosine at or above which a student is a faithful replacement.
AGREEMENT_OK = 0.9
# The same bar for the mean pooled cosine (used when the tokenizers differ); the study has no pooled number.
POOLED_OK = 0.9
# Fewest distinct prompts compared: the intrinsic-dimension estimators need 3 distinct points.
MIN_PROMPTS = 3
# A trained student's kNN@10 overlap must beat its untrained self (step 0 of its run) by at least this much.
KNN_GAIN_MIN = 0.02


@dataclass
class RunBaseline:
    """The student's own training record (RUN/metrics.jsonl): the untrained student (step 0) and the
    evaluation of the checkpoint's step, on the run's held-out prompts against its teacher."""

    run_dir: str
    teacher: str
    step: int
    knn_overlap_step0: float
    knn_overlap: float
    token_cosine_step0: float
    token_cosine: float


def run_baseline(student_name: str) -> tuple[RunBaseline | None, str]:
    """(the run record of a `student:RUN/checkpoints/NAME` encoder, or None with the reason it is missing)."""
    import json
    from pathlib import Path

    if not student_name.startswith("student:"):
        return None, f"{student_name} has no training record here (only student:DIR checkpoints of a run do)"
    path = Path(student_name.removeprefix("student:"))
    path = path.parent if path.name in ("model.safetensors", "config.json") else path
    run = path.parent.parent
    metrics, config = run / "metrics.jsonl", path / "config.json"
    if path.parent.name != "checkpoints" or not metrics.is_file():
        return None, f"{path} is not inside a run folder with metrics.jsonl (RUN/checkpoints/NAME)"
    try:
        step = json.loads(config.read_text(encoding="utf-8"))["provenance"]["step"]
        rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        by_step = {int(r["step"]): r for r in rows}
        run_config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        first, trained = by_step[0], by_step.get(int(step))
        if trained is None:  # the checkpoint's own step was not evaluated: the last evaluation before it
            trained = by_step[max(k for k in by_step if k <= int(step))]
        if first["eval_knn_overlap10"] is None or trained["eval_knn_overlap10"] is None:
            return None, (f"the run in {run} measured no kNN@10 overlap (its held-out set is too small: "
                          f"{run_config.get('n_eval', '?')} prompts, kNN@10 needs 21)")  # fmt: skip
        return RunBaseline(
            str(run), str(run_config.get("teacher")), int(trained["step"]),
            float(first["eval_knn_overlap10"]), float(trained["eval_knn_overlap10"]),
            float(first["eval_token_cosine"]), float(trained["eval_token_cosine"]),
        ), ""  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"the run record in {run} is unreadable ({type(error).__name__}: {error})"


def same_teacher(recorded: str, used: str) -> bool:
    """Whether the teacher a run recorded (its config's spec) is the teacher of this comparison: the same spec,
    or the same family and model with paths to one file (relative to another folder, or shortened)."""
    from pathlib import Path

    if recorded == used:
        return True
    head_r, _, path_r = recorded.rpartition(":")
    head_u, _, path_u = used.rpartition(":")
    if not head_r or head_r != head_u or not path_r or not path_u:
        return False
    a, b = Path(path_r), Path(path_u)
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        return False
    n = min(len(a.parts), len(b.parts))  # one is the other's tail ("x/t.pt" and "/data/x/t.pt")
    return a.parts[-n:] == b.parts[-n:]


def other_teacher_note(baseline: RunBaseline, teacher: str) -> str:
    return (f"the run {baseline.run_dir} trained this student against teacher {baseline.teacher}, not {teacher}: "
            "its step-0 and checkpoint kNN@10 / token cosine measure agreement with that other teacher, so "
            "they are no baseline for this pair")  # fmt: skip


def applicable_baseline(result: AgreementResult) -> tuple[RunBaseline | None, str]:
    """The run baseline where it is about this pair's teacher (results written before that was checked may
    hold one measured against another teacher), else None and why."""
    b = result.baseline
    if b is not None and not same_teacher(b.teacher, result.teacher):
        return None, other_teacher_note(b, result.teacher)
    return b, result.baseline_note


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
    baseline: RunBaseline | None = None  # the student's untrained self, from its run record
    baseline_note: str = ""  # why there is no baseline

    SCHEMA_VERSION = 2  # 2: the run baseline


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
        from anatomy.analysis.sampling import draw_sequences, require_distinct
        from anatomy.errors import InputError, OptionError

        if params.k >= params.sample:
            raise OptionError("--k", f"{params.k} must be smaller than --sample ({params.sample})")
        picked = draw_sequences(
            inputs.need_corpus(), inputs.teacher_store, params.sample, params.seed
        ).prompts
        require_distinct(inputs.need_corpus(), len(picked), MIN_PROMPTS, "the kNN overlap")
        if len(picked) < MIN_PROMPTS:
            raise InputError(
                f"the corpus has {len(picked)} distinct prompt(s); agreement needs at least {MIN_PROMPTS}",
                hint="ingest more prompts into the corpus",
            )
        k = min(params.k, len(picked) - 1)  # a small corpus: every other prompt is a neighbour
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
            k,
        )
        if k < params.k:
            got.notes.append(
                f"only {len(picked)} distinct prompts: kNN overlap at k={k}, not the asked {params.k}"
            )
        dims = PairDims(
            DimsEntry.of(t_pooled, params.seed, params.n_boot),
            DimsEntry.of(s_pooled, params.seed, params.n_boot),
        )
        method = {
            "token_cosine": "cosine per token over positions valid in both encoders (same tokenizer only)",
            "pooled_cosine": "cosine of the two pooled outputs of each prompt",
            "knn_overlap": f"share of the {k} exact Euclidean nearest neighbours common to both spaces",
        }
        baseline, why = run_baseline(student.name)
        if baseline is not None and not same_teacher(
            baseline.teacher, teacher.name
        ):  # another teacher's numbers
            why = other_teacher_note(baseline, teacher.name)
            baseline = None
        return AgreementResult(
            teacher.name, student.name, len(picked), k, got.token_cosine, got.pooled_cosine,
            got.knn_overlap, dims, got.notes, method, baseline, why,
        )  # fmt: skip

    def figures(self, result: AgreementResult) -> dict[str, Any]:
        from anatomy.figures import representation as fig

        return {"agreement": fig.draw_agreement(fig.prepare_agreement(result))}

    def findings(self, result: AgreementResult, section: str) -> list[Finding]:
        return [*self._agreement_findings(result, section), _baseline_finding(result, section)]

    def _agreement_findings(self, result: AgreementResult, section: str) -> list[Finding]:
        """Per-token cosine beside the study's per-token number; pooled (different tokenizers) beside none."""
        from anatomy import paper

        knn = f"kNN overlap@{result.k} {result.knn_overlap.mean:.2f}"
        who = f"student {result.student} agrees with teacher {result.teacher}"
        if result.token_cosine is not None:
            dist, bar = result.token_cosine, AGREEMENT_OK
            key, what = (
                "agreement.token_cosine",
                f"mean per-token cosine {dist.mean:.3f} (paper {paper.AGREEMENT_TOKEN_COSINE})",
            )
        elif result.pooled_cosine is not None:
            dist, bar = result.pooled_cosine, POOLED_OK
            key = "agreement.pooled_cosine"
            what = (
                f"mean pooled cosine {dist.mean:.3f} (the study reports only a per-token cosine, "
                "which needs one tokenizer: not comparable)"
            )
        else:
            return []
        good = dist.mean >= bar
        action = "" if good else f"below {bar}: train the student longer or make it wider"
        return [Finding("ok" if good else "warn", section, key, f"{who} at {what}, {knn}", dist.mean, action)]

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
        b, why = applicable_baseline(result)
        if b is not None:
            lines.append(
                f"untrained baseline (step 0 of {b.run_dir}, teacher {b.teacher}): kNN@10 {b.knn_overlap_step0:.4f} -> "
                f"{b.knn_overlap:.4f} at step {b.step}, token cosine {b.token_cosine_step0:.4f} -> {b.token_cosine:.4f}"
            )
        else:
            lines.append(f"untrained baseline unavailable: {why}")
        lines += [f"note: {note}" for note in result.notes]
        return lines


def _baseline_finding(result: AgreementResult, section: str) -> Finding:
    """A trained student against its untrained self (step 0 of its run), or why that cannot be said."""
    b, why = applicable_baseline(result)
    if b is None:
        return Finding(
            "info", section, "agreement.baseline",
            f"untrained baseline unavailable: {why or 'no run record'}", None,
            "audit the run's checkpoint (student:RUN/checkpoints/best) with the run's own teacher to compare "
            "with step 0",
        )  # fmt: skip
    gain = b.knn_overlap - b.knn_overlap_step0
    where = f"on the held-out prompts of {b.run_dir} (teacher {b.teacher})"
    if gain < KNN_GAIN_MIN:
        return Finding(
            "warn", section, "agreement.baseline",
            f"kNN@10 overlap {b.knn_overlap:.3f} at step {b.step} is no better than the untrained student's "
            f"{b.knn_overlap_step0:.3f} (step 0) {where}; token cosine {b.token_cosine_step0:.3f} -> "
            f"{b.token_cosine:.3f}", gain,
            f"gain under {KNN_GAIN_MIN}: the distillation did not learn the teacher's neighbourhoods; train "
            "longer, raise --lr or check the teacher cache",
        )  # fmt: skip
    return Finding(
        "ok", section, "agreement.baseline",
        f"kNN@10 overlap rose from {b.knn_overlap_step0:.3f} untrained (step 0) to {b.knn_overlap:.3f} at step "
        f"{b.step} {where}; token cosine {b.token_cosine_step0:.3f} -> {b.token_cosine:.3f}", gain, "",
    )  # fmt: skip
