"""The cost analysis: what the student buys against the teacher (memory, latency, throughput; measured by
anatomy.cost.compare, each in a fresh process) beside how close it stays (pooled cosine and kNN overlap from
the agreement analysis), and a figure of quality against memory and latency: the frontier a user picks from.
It runs in the audit only when the audit has a teacher and a student (Need.PAIR).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Table, param
from anatomy.analysis.base import Result as BaseResult
from anatomy.findings import Finding

# The student's memory or latency is called a saving when it is below this share of the teacher's.
SAVING_SHARE = 0.5
QUALITY_FLOOR = 0.9  # a pooled cosine below this is called a visible quality loss


@dataclass(frozen=True)
class CostParams:
    sample: int = param(2000, "Prompts (from the embedding stores) for the quality columns.", min=10)
    k: int = param(10, "Neighbours for the kNN overlap.", min=1, max=100)
    batches: tuple[int, ...] = param((1, 64), "Batch sizes timed (1 = latency).", min=1, max=4096)
    repeats: int = param(20, "Timed batch-1 calls per encoder.", min=1)
    throughput_repeats: int = param(1, "Timed whole batches per larger batch size.", min=1)
    seed: int = param(0, "Seed of the prompt sample.", min=0)


@dataclass
class CostResult(BaseResult):
    teacher: str
    student: str
    rows: list[dict[str, Any]]
    machine: dict[str, Any]
    method: str
    pooled_cosine: float | None  # mean over prompts; None when the output widths differ
    knn_overlap: float
    k: int
    n: int
    notes: list[str] = field(default_factory=list)


def quality(inputs: Inputs, params: CostParams) -> tuple[float | None, float, int, list[str]]:
    """Mean pooled cosine and kNN overlap@k of student vs teacher on a seeded sample of the corpus's distinct
    prompts, read through the embedding stores (the same prompts the agreement analysis samples, so nothing is
    encoded twice in an audit)."""
    from anatomy.analysis.agreement import knn_overlap, pooled_cosines
    from anatomy.analysis.sampling import distinct_sequences, sample

    notes: list[str] = []
    prompts, _, _ = distinct_sequences(inputs.need_corpus(), inputs.teacher_store)
    picked = [prompts[i] for i in sample(np.arange(len(prompts)), params.sample, params.seed)]
    teacher, student = inputs.teacher_store.pooled(picked), inputs.student_store.pooled(picked)
    cosine = None
    if teacher.shape[-1] == student.shape[-1]:
        cosine = float(pooled_cosines(teacher, student).mean())
    else:
        notes.append(f"output widths differ ({teacher.shape[-1]} vs {student.shape[-1]}): no pooled cosine")
    k = min(params.k, len(teacher) - 1)
    return cosine, float(knn_overlap(teacher, student, k).mean()), len(teacher), notes


class CostAnalysis(Analysis):
    name = "cost"
    title = "What the student costs and buys"
    description = (
        "Teacher vs student on this machine: parameters, weight bytes, measured memory, latency and throughput "
        "beside pooled cosine and kNN overlap (anatomy cost measures any encoders without a pair)."
    )
    needs = frozenset({Need.PAIR, Need.CORPUS})
    Params = CostParams
    Result = CostResult
    in_audit = True  # the runner gives it a pair only when the audit has --teacher/--student
    generated_command = False  # `anatomy cost -e SPEC...` (anatomy/cli/cost.py) measures any encoders

    def compute(self, inputs: Inputs, params: CostParams) -> CostResult:
        from anatomy.cost.compare import CostSettings, run_cost

        inputs.progress("cost: quality of the student against the teacher")
        cosine, overlap, n, notes = quality(inputs, params)
        settings = CostSettings(batches=tuple(params.batches), repeats=params.repeats,
                                throughput_repeats=params.throughput_repeats)  # fmt: skip
        specs = [inputs.teacher.name, inputs.student.name]
        with tempfile.TemporaryDirectory() as tmp:
            measured = run_cost(specs, [], settings, tmp, inputs.progress)
        return CostResult(
            teacher=specs[0], student=specs[1], rows=measured["rows"], machine=measured["machine"],
            method=measured["method"], pooled_cosine=cosine, knn_overlap=overlap, k=params.k, n=n, notes=notes,
        )  # fmt: skip

    def figures(self, result: CostResult) -> dict[str, Any]:
        from anatomy.cost.figure import draw_frontier

        return {"cost_frontier": draw_frontier(result)}

    def findings(self, result: CostResult, section: str) -> list[Finding]:
        teacher, student = result.rows[0], result.rows[-1]
        memory = student["ratios"]["model_mib"]
        latency = student["ratios"]["latency_p50"]
        quality_ok = result.pooled_cosine is None or result.pooled_cosine >= QUALITY_FLOOR
        text = (
            f"The student holds {memory:.0%} of the teacher's model memory and takes {latency:.0%} of its batch-1 "
            f"latency on {result.machine['device_name']}, at pooled cosine "
            f"{'n/a' if result.pooled_cosine is None else f'{result.pooled_cosine:.3f}'} and kNN@{result.k} "
            f"overlap {result.knn_overlap:.2f}."
        )
        saving = (memory or 1) < SAVING_SHARE or (latency or 1) < SAVING_SHARE
        return [_finding(section, text, bool(saving and quality_ok), teacher, student)]

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
        from anatomy.cost.compare import table_lines

        return [
            Table(["measured"], [[line] for line in table_lines(_as_cost(result))], "cost, measured here")
        ]

    def summary(self, result: CostResult) -> list[str]:
        from anatomy.cost.compare import table_lines

        cosine = "n/a" if result.pooled_cosine is None else f"{result.pooled_cosine:.4f}"
        return [*table_lines(_as_cost(result)),
                f"quality on {result.n} prompts: pooled cosine {cosine}, kNN@{result.k} overlap {result.knn_overlap:.3f}",
                *result.notes]  # fmt: skip


def _as_cost(result: CostResult) -> dict:
    from anatomy.cost.compare import PAPER_DEVICE, PAPER_SOURCE, PAPER_TEXTS_PER_S

    batches = sorted({int(b) for row in result.rows for b in row["texts_per_s"]})
    return {"rows": result.rows, "machine": result.machine, "settings": {"batches": batches},
            "paper": {"device": PAPER_DEVICE, "source": PAPER_SOURCE, "texts_per_s": PAPER_TEXTS_PER_S}}  # fmt: skip


def _finding(section: str, text: str, good: bool, teacher: dict, student: dict) -> Finding:
    action = "" if good else "check the quality columns and the memory/latency ratios before deploying it"
    ratio = student["ratios"]["model_mib"]
    return Finding("ok" if good else "warn", section, "cost.student_vs_teacher", text, ratio, action)
