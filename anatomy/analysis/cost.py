"""The cost analysis: what the student buys against the teacher (memory, latency, throughput; measured by
anatomy.cost.compare.measure_costs, each configuration in a fresh process) beside how close it stays (pooled
cosine and kNN overlap, as the agreement analysis computes them), and a figure of quality against memory and
latency: the frontier a user picks from. As `anatomy specialise` does, the teacher is also measured at the
student's context (the first row, the baseline of every ratio), so the finding compares like with like; the
notes say which contexts were measured. `anatomy cost --teacher T --student S --corpus C --out D` is
generated from CostParams like every analysis; `anatomy cost-table -e A -e B ...` (anatomy/cli/cost.py)
measures any list of encoders with the same function and the same MeasureParams.

The measuring defaults live once, in anatomy.cost.compare.CostSettings; the fields below read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Table, param, sample_param, seed_param
from anatomy.analysis.base import Result as BaseResult
from anatomy.cost.compare import MAX_BATCH, RUNTIMES, CostSettings, SpecItem
from anatomy.errors import InputError
from anatomy.findings import Finding

# The student's memory or latency is called a saving when it is below this share of the teacher's.
SAVING_SHARE = 0.5
QUALITY_FLOOR = 0.9  # a pooled cosine below this is called a visible quality loss
_D = CostSettings()


@dataclass(frozen=True)
class MeasureParams:
    """How the rows are measured (`anatomy cost` and `anatomy cost-table` alike); defaults: CostSettings."""

    contexts: tuple[int, ...] = param((), "Context length(s); default: each encoder's own.", flag="context",
                                      min=1, max=512)  # fmt: skip
    batches: tuple[int, ...] = param(_D.batches, "Batch sizes timed (1 = latency).", flag="batch", min=1,
                                     max=MAX_BATCH)  # fmt: skip
    runtimes: tuple[str, ...] = param(_D.runtimes, "torch | onnx | int8 (onnx/int8 export each encoder first).",
                                      flag="runtime", choices=RUNTIMES)  # fmt: skip
    warmup: int = param(_D.warmup, "Untimed batch-1 calls first.", min=0, max=1000)
    repeats: int = param(_D.repeats, "Timed batch-1 calls per round (p50, p95).", min=1, max=100_000)
    max_repeats: int = param(_D.max_repeats, "Most batch-1 calls while the spread stays large.", min=1,
                             max=1_000_000)  # fmt: skip
    max_spread: float = param(_D.max_spread, "Interquartile range / median that counts as a stable latency.",
                              min=0, min_open=True, max=10)  # fmt: skip
    throughput_repeats: int = param(_D.throughput_repeats, "Timed whole batches per larger batch size.", min=1,
                                    max=10_000)  # fmt: skip
    threads: int = param(_D.threads, "Intra-op threads of each measuring process (fixed, recorded).", min=1,
                         max=1024)  # fmt: skip

    def check(self) -> None:
        if self.max_repeats < self.repeats:  # one round is `repeats` calls: the most cannot be fewer
            raise InputError(
                f"--max-repeats: {self.max_repeats} is fewer than --repeats {self.repeats} (the calls of one round)"
            )

    def settings(self, device: str = "cpu") -> CostSettings:
        names = {f.name for f in dataclasses.fields(CostSettings)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values["batches"] = tuple(sorted(set(self.batches)))
        values["runtimes"] = tuple(dict.fromkeys(self.runtimes))
        return CostSettings(device=device, **values)


@dataclass(frozen=True)
class CostParams(MeasureParams):
    sample: int = sample_param(2000, "Prompts (from the embedding stores) for the quality columns.", min=10)
    k: int = param(10, "Neighbours for the kNN overlap.", min=1, max=100)
    seed: int = seed_param("Seed of the prompt sample.")


@dataclass
class CostResult(BaseResult):
    teacher: str
    student: str
    rows: list[dict[str, Any]]
    machine: dict[str, Any]
    method: str
    settings: dict[str, Any]
    paper: dict[str, Any]
    pooled_cosine: float | None  # mean over prompts; None when the output widths differ
    knn_overlap: float
    k: int
    n: int
    notes: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def row(self, encoder: str) -> dict[str, Any] | None:
        """The first row of an encoder (None when it could not be measured)."""
        return next((r for r in self.rows if r["encoder"] == encoder), None)

    def pair(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(teacher row, student row) the finding and the figure compare: the student's first row and the
        teacher's row at the same context and runtime (like with like), else the teacher's first row."""
        student = self.row(self.student)
        same = [r for r in self.rows if r["encoder"] == self.teacher and student is not None
                and (r["context"], r["runtime"]) == (student["context"], student["runtime"])]  # fmt: skip
        return (same[0] if same else self.row(self.teacher)), student


def quality(inputs: Inputs, params: CostParams) -> tuple[float | None, float, int, list[str]]:
    """Mean pooled cosine and kNN overlap@k of student vs teacher on a seeded sample of the corpus's distinct
    prompts, read through the embedding stores (the same prompts the agreement analysis samples, so nothing is
    encoded twice in an audit)."""
    from anatomy.analysis.sampling import draw_sequences
    from anatomy.metrics.similarity import knn_overlap, pooled_cosines

    notes: list[str] = []
    picked = draw_sequences(inputs.need_corpus(), inputs.teacher_store, params.sample, params.seed).prompts
    teacher, student = inputs.teacher_store.pooled(picked), inputs.student_store.pooled(picked)
    cosine = None
    if teacher.shape[-1] == student.shape[-1]:
        cosine = float(pooled_cosines(teacher, student).mean())
    else:
        notes.append(f"output widths differ ({teacher.shape[-1]} vs {student.shape[-1]}): no pooled cosine")
    k = knn_k(params.k, len(teacher))
    if k < 1:
        from anatomy.errors import InputError

        raise InputError(
            f"the corpus has {len(teacher)} distinct prompt(s); the kNN overlap needs at least 3",
            "ingest more prompts into the corpus",
        )
    if k < params.k:
        notes.append(f"only {len(teacher)} distinct prompts: kNN overlap at k={k}, not the asked {params.k} "
                     f"(kNN@{params.k} needs {2 * params.k + 1}: on fewer it is high whatever the outputs)")  # fmt: skip
    return cosine, float(knn_overlap(teacher, student, k).mean()), len(teacher), notes


def knn_k(k: int, n: int) -> int:
    """The k a kNN overlap on n points is measured at: at most (n - 1) // 2, so the two neighbour sets could
    be disjoint (at k = n - 1 they are every other point, and the overlap is 1.0 whatever the outputs)."""
    return min(k, (n - 1) // 2)


class CostAnalysis(Analysis):
    name = "cost"
    title = "What the student costs and buys"
    description = (
        "Teacher vs student on this machine: parameters, weight bytes, measured memory, latency and throughput "
        "beside pooled cosine and kNN overlap (`anatomy cost-table -e A -e B` measures any encoders)."
    )
    needs = frozenset({Need.PAIR, Need.CORPUS})
    Params = CostParams
    Result = CostResult
    in_audit = True  # the runner gives it a pair only when the audit has --teacher/--student

    def compute(self, inputs: Inputs, params: CostParams) -> CostResult:
        from anatomy.cost.compare import measure_costs

        inputs.progress("cost: quality of the student against the teacher")
        cosine, overlap, n, notes = quality(inputs, params)
        teacher, student = inputs.teacher.name, inputs.student.name
        specs: list[SpecItem] = [teacher, student]
        # as specialise does: the teacher also at the student's context, first (the baseline of every ratio)
        at = getattr(inputs.student, "context_length", None)
        if not params.contexts and at and at != getattr(inputs.teacher, "context_length", None):
            specs = [(teacher, at), teacher, student]
        device = getattr(getattr(inputs.teacher, "device", None), "type", "cpu")
        table = measure_costs(specs, params.contexts, params.settings(device), progress=inputs.progress)
        result = CostResult(
            teacher=teacher, student=student, pooled_cosine=cosine, knn_overlap=overlap, k=knn_k(params.k, n), n=n,
            notes=notes, **table.to_json(),
        )  # fmt: skip
        result.notes += context_notes(result)
        return result

    def figures(self, result: CostResult) -> dict[str, Any]:
        from anatomy.cost.figure import draw_frontier

        if None in result.pair():
            return {}
        return {"cost_frontier": draw_frontier(result)}

    def findings(self, result: CostResult, section: str) -> list[Finding]:
        out = []
        teacher, student = result.pair()
        if teacher is None or student is None:
            missing = result.teacher if teacher is None else result.student
            out.append(Finding("warn", section, "cost.student_vs_teacher", f"{missing} could not be measured",
                               None, "see the failures in cost.json"))  # fmt: skip
        else:
            out.append(_pair_finding(result, section, teacher, student))
        if result.warnings:
            out.append(Finding("warn", section, "cost.measurement", " ".join(result.warnings), None,
                               "do not act on these latencies until then"))  # fmt: skip
        return out

    def paper_rows(self, result: CostResult) -> list[PaperRow]:
        rows = []
        for row in result.rows:
            if row.get("paper_texts_per_s"):
                ours = max(row["texts_per_s"].values())
                rows.append(PaperRow(f"{row['encoder']} texts/s (ours: {result.machine['device_name']})",
                                     f"{ours:.1f}", f"{row['paper_texts_per_s']:.1f} (RTX 4070 laptop GPU)",
                                     "efficiency table"))  # fmt: skip
        return rows

    def tables(self, result: CostResult) -> list[Table]:
        from anatomy.cost.table import caption, columns_and_cells

        columns, cells = columns_and_cells(dataclasses.asdict(result))
        return [Table(columns, cells, "cost, measured here: " + caption(dataclasses.asdict(result)))]

    def summary(self, result: CostResult) -> list[str]:
        from anatomy.cost.table import precision_notes

        cosine = "n/a" if result.pooled_cosine is None else f"{result.pooled_cosine:.4f}"
        failures = [f"not measured: {f['encoder']} ({f['runtime']}): {f['error']}" for f in result.failures]
        return [f"quality on {result.n} prompts: pooled cosine {cosine}, kNN@{result.k} overlap {result.knn_overlap:.3f}",
                *result.notes, *precision_notes(dataclasses.asdict(result)), *failures,
                *(f"warning: {w}" for w in result.warnings)]  # fmt: skip


def context_notes(result: CostResult) -> list[str]:
    """Which contexts the teacher and the student were measured at, and what the finding compares."""
    teacher, student = result.pair()
    if teacher is None or student is None:
        return []
    own = [r for r in result.rows if r["encoder"] == result.teacher and r["context"] != student["context"]
           and r["runtime"] == student["runtime"]]  # fmt: skip
    failed = [
        f for f in result.failures if f["encoder"] == result.teacher and f["context"] == student["context"]
    ]
    if teacher["context"] == student["context"] and own:
        return [f"the teacher is measured at the student's context {student['context']} (the baseline of the "
                f"finding: like with like) and at its own {own[0]['context']} (p50 {own[0]['latency_ms_p50']:.2f} "
                f"ms against {teacher['latency_ms_p50']:.2f} ms: what the context alone changes)"]  # fmt: skip
    if teacher["context"] == student["context"]:
        return []
    why = f" ({failed[0]['error']})" if failed else ""
    return [f"the teacher could not be measured at the student's context {student['context']}{why}: the finding "
            f"compares the teacher at context {teacher['context']} with the student at {student['context']}, "
            "so its ratios include what the context alone changes"]  # fmt: skip


def _contexts(teacher: dict, student: dict) -> str:
    if teacher["context"] == student["context"]:
        return f"both at context {student['context']}"
    return (f"the teacher at context {teacher['context']}, the student at {student['context']}: the ratios include "
            "what the context alone changes")  # fmt: skip


def _pair_finding(result: CostResult, section: str, teacher: dict, student: dict) -> Finding:
    from anatomy.cost.compare import model_mib

    memory = model_mib(student) / model_mib(teacher) if model_mib(teacher) else None
    latency = student["latency_ms_p50"] / teacher["latency_ms_p50"]
    quality_ok = result.pooled_cosine is None or result.pooled_cosine >= QUALITY_FLOOR
    text = (
        f"The student holds {memory or float('nan'):.0%} of the teacher's model memory and takes {latency:.0%} "
        f"of its batch-1 latency ({_contexts(teacher, student)}) on {result.machine['device_name']} "
        f"({result.settings['threads']} thread(s)), "
        f"at pooled cosine {'n/a' if result.pooled_cosine is None else f'{result.pooled_cosine:.3f}'} and "
        f"kNN@{result.k} overlap {result.knn_overlap:.2f}."
    )
    good = ((memory or 1) < SAVING_SHARE or latency < SAVING_SHARE) and quality_ok
    action = "" if good else "check the quality columns and the memory/latency ratios before deploying it"
    return Finding("ok" if good else "warn", section, "cost.student_vs_teacher", text, memory, action)
