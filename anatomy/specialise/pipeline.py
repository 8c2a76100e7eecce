"""`anatomy specialise`: the chain of stages from a prompt log to a specialised student and its bill.

    corpus -> tokens (context) -> split -> vocab (+ risk) -> teacher (cache) -> reference (teacher outputs)
           -> per candidate: distill -> evaluate -> export  -> cost -> the bill (a view, rebuilt every run)

The split comes before the vocabulary so the vocabulary is built from the training prompts only and its
risk on the test split is a measurement on prompts it never saw. The pipeline only orders the stages
(anatomy.specialise.stages caches, verifies, commits and resumes each); the bill is computed from what they
wrote (anatomy.specialise.bill).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.distill.rundir import CHECKPOINTS, LOG, STATE, TIMINGS
from anatomy.errors import InputError
from anatomy.specialise import data_stages as ds
from anatomy.specialise import model_stages as ms
from anatomy.specialise.plan import (
    Candidate,
    SpecialiseConfig,
    batch_for,
    candidates,
    check_inputs,
    check_teacher,
    steps_for,
)
from anatomy.specialise.stages import Outcome, Stage, Store, run_stage

log = logging.getLogger(__name__)

# Relative work of each kind of stage, for the remaining-time estimate before any stage has been timed.
WEIGHTS = {"corpus": 1, "tokens": 1, "split": 0.2, "vocab": 2, "teacher": 4, "reference": 2, "distill": 20,
           "evaluate": 1, "export": 3, "cost": 6}  # fmt: skip


# What later stages do not read from a distillation: its log and measured timings, and its resume state, whose
# bytes differ after a resume though its content (weights, optimizer, step, RNG) is equal (torch.save's order).
DISTILL_SIDE = (f"{ms.RUN}/{LOG}", f"{ms.RUN}/{TIMINGS}", f"{ms.RUN}/{CHECKPOINTS}/{STATE}")


@dataclass
class PipelineResult:
    out_dir: Path
    outcomes: list[Outcome]
    bill: Any = None  # anatomy.specialise.bill.Bill
    ran: list[str] = field(default_factory=list)  # stages run (not reused) in this call

    @property
    def reused(self) -> list[str]:
        return [o.name for o in self.outcomes if o.reused]


def _context(cfg: SpecialiseConfig) -> Callable[[dict], int]:
    def resolve(summaries: dict) -> int:
        if cfg.fixed_context is not None:
            return cfg.fixed_context
        recommended = summaries["tokens"]["recommended_context"]
        if recommended is None:
            raise InputError("the tokens analysis recommends no context for this corpus (prompts too long)",
                             "give --context L")  # fmt: skip
        return int(recommended)

    return resolve


def build_stages(cfg: SpecialiseConfig, inputs: list[str], cands: list[Candidate]) -> list[Stage]:
    from anatomy.report.collect import display

    teacher = ds.TeacherLoader(cfg.teacher, cfg.device)
    context = _context(cfg)
    files = {f"input:{display(i)}": i for i in inputs if Path(i).exists()}
    held = {f"held_out:{Path(h).name}": h for h in cfg.held_out}
    steps = steps_for(cfg, len(cands))
    stages = [
        Stage("corpus", "corpus", (), lambda _s: {"inputs": [display(i) for i in inputs], "source": cfg.source},
              lambda r: ds.corpus_stage(r, cfg, inputs), files=files),
        Stage("tokens", "tokens", ("corpus",), lambda _s: {"tokenizer": cfg.teacher},
              lambda r: ds.tokens_stage(r, cfg)),
        Stage("split", "split", ("corpus",),
              lambda _s: {"seed": cfg.seed, "test_share": cfg.test_share, "limit": cfg.limit},
              lambda r: ds.split_stage(r, cfg)),
        Stage("vocab", "vocab", ("split",), lambda _s: {"mode": cfg.vocab, "tokenizer": cfg.teacher,
              "seed": cfg.seed}, lambda r: ds.vocab_stage(r, cfg), files=held, side=(f"{ds.VOCAB_ANALYSIS}/*",)),
        Stage("teacher", "teacher", ("tokens", "split"),
              lambda s: {"teacher": cfg.teacher, "context": context(s)},
              lambda r: ds.teacher_stage(r, cfg, teacher)),
        Stage("reference", "reference", ("tokens", "split"),
              lambda s: {"teacher": cfg.teacher, "context": context(s)},
              lambda r: ds.reference_stage(r, cfg, teacher), files=held),
    ]  # fmt: skip
    for cand in cands:
        stages += _candidate_stages(cfg, cand, context, steps, held)
    names = [c.name for c in cands]
    stages.append(Stage(
        "cost", "cost", ("tokens", *(f"{k}-{n}" for n in names for k in ("distill", "export"))),
        lambda s: {"teacher": cfg.teacher, "context": context(s), "device": cfg.device or "cpu",
                   "repeats": cfg.cost_repeats, "threads": cfg.threads, "batches": list(cfg.cost_batches)},
        lambda r: ms.cost_stage(r, cfg, names), side=("cost.json", "onnx/*"),
    ))  # fmt: skip
    return [_aliased(s) for s in stages]


def _candidate_stages(cfg: SpecialiseConfig, cand: Candidate, context, steps: int, held: dict) -> list[Stage]:
    def params(s: dict) -> dict:
        return {"candidate": cand.as_param(), "teacher": cfg.teacher, "context": context(s), "steps": steps,
                "batch_size": batch_for(cfg, s["split"]["n_train"]), "seed": cfg.seed,
                "device": cfg.device or "auto"}  # fmt: skip

    return [
        Stage(f"distill-{cand.name}", "distill", ("tokens", "split", "vocab", "teacher"), params,
              lambda r: ms.distill_stage(r, cfg, cand), resumable=True, side=DISTILL_SIDE),
        Stage(f"evaluate-{cand.name}", "evaluate", ("split", "reference", "distill"),
              lambda _s: {}, lambda r: ms.evaluate_stage(r, cfg), files=held),
        Stage(f"export-{cand.name}", "export", ("split", "distill"),
              lambda _s: {"formats": list(cfg.exports)}, lambda r: ms.export_stage(r, cfg)),
    ]  # fmt: skip


def _aliased(stage: Stage) -> Stage:
    """Per-candidate stages name their own candidate's distill stage 'distill' in their inputs."""
    if stage.kind not in ("evaluate", "export"):
        return stage
    name = stage.name.split("-", 1)[1]
    needs = tuple(f"distill-{name}" if n == "distill" else n for n in stage.needs)
    body = stage.run

    def run(r, body=body, name=name):
        r.inputs["distill"] = r.inputs[f"distill-{name}"]
        return body(r)

    from dataclasses import replace

    return replace(stage, needs=needs, run=run)


class Progress:
    """One line per stage on stderr: what runs, its time, the run's elapsed time and an estimate of the rest."""

    def __init__(self, stages: list[Stage], say: Callable[[str], None]):
        self.say, self.start = say, time.perf_counter()
        self.left = {s.name: WEIGHTS.get(s.kind, 1.0) for s in stages}
        self.work_s, self.work_w = 0.0, 0.0

    def remaining(self) -> str:
        weight = sum(self.left.values())
        if self.work_w <= 0:
            return "estimating"
        return f"~{weight * self.work_s / self.work_w:.0f} s left"

    def within(self, name: str) -> Callable[[float], None]:
        """A stage's own progress (share done): a line at each quarter, with the stage's own estimate."""
        start, shown = time.perf_counter(), [0]

        def report(fraction: float) -> None:
            quarter = int(fraction * 4)
            if 0 < quarter < 4 and quarter > shown[0]:
                shown[0] = quarter
                spent = time.perf_counter() - start
                self.say(f"  {name}: {fraction:.0%} in {spent:.0f} s, ~{spent * (1 - fraction) / fraction:.0f} s "
                         "left in this stage")  # fmt: skip

        return report

    def done(self, outcome: Outcome, index: int, total: int) -> None:
        w = self.left.pop(outcome.name, 1.0)
        if not outcome.reused:
            self.work_s, self.work_w = self.work_s + outcome.seconds, self.work_w + w
        elapsed = time.perf_counter() - self.start
        how = "reused (verified)" if outcome.reused else f"{outcome.seconds:.1f} s"
        self.say(f"[{index}/{total}] {outcome.name}: {how}; elapsed {elapsed:.0f} s, {self.remaining()}")


def run_specialise(
    cfg: SpecialiseConfig, out_dir: str | Path, say: Callable[[str], None] = lambda _m: None
) -> PipelineResult:
    """Run (or reuse) every stage into out_dir, then write the bill. Inputs are checked before out_dir is
    touched; a failing stage leaves every committed stage as it was."""
    from anatomy.locks import locked
    from anatomy.specialise.bill import write_bill

    out_dir = Path(out_dir)
    inputs = check_inputs(cfg)
    check_teacher(cfg.teacher)
    cands = candidates(cfg)
    if cfg.held_out and ds.TEST_SET in [Path(h).name for h in cfg.held_out]:
        raise InputError(f"--held-out {ds.TEST_SET}: the name is the test split's", "rename the file")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"{out_dir}: exists and is not a directory", "give --out a folder (created if missing)"
        )
    from anatomy.audit import refuse_other_output

    refuse_other_output(out_dir, "specialise")  # both write index.html: never into an audit's folder
    stages = build_stages(cfg, inputs, cands)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    store = Store(out_dir)
    progress = Progress(stages, say)
    done: dict[str, Outcome] = {}
    result = PipelineResult(out_dir, [])
    out_dir.mkdir(parents=True, exist_ok=True)
    with locked(
        store.root, clean=False
    ):  # one run at a time in a DIR (a second waits, then says who holds it)
        for i, stage in enumerate(stages, 1):
            say(f"[{i}/{len(stages)}] {stage.name} ...")
            outcome = run_stage(store, stage, done, progress.within(stage.name))
            done[stage.name] = outcome
            result.outcomes.append(outcome)
            if not outcome.reused:
                result.ran.append(stage.name)
            progress.done(outcome, i, len(stages))
        result.bill = write_bill(out_dir, cfg, [c.name for c in cands], result.outcomes)
    return result
