"""`anatomy ablate`: the paper's loss ablation (MSE / + cosine / + consistency) and context ablation
(8 / 16 / 32) as short distillation runs on one budget, summarised in one table and one figure.

Each variant is an ordinary distill run (OUT/runs/NAME) sharing one teacher cache per context. A run's own
held-out numbers are measured at its own context, which is not comparable across contexts (a context-8
student is graded only on the first 8 positions of truncated prompts). So every run is also scored against
one common reference: the teacher's pooled output of the FULL prompt at the largest context
(`pooled_cosine_full`, `knn_overlap10_full`): what a short context loses shows up there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anatomy.distill.train import RECIPES, DistillConfig, distill, knn_overlap
from anatomy.errors import OptionError
from anatomy.io import write_result

log = logging.getLogger(__name__)

LOSS_VARIANTS = ("mse", "mse+cos", "mse+cos+cons")
CONTEXTS = (8, 16, 32)
BASE_CONTEXT = 16


@dataclass(frozen=True)
class AblationPlan:
    name: str  # run folder name
    ablation: str  # loss | context
    variant: str
    context: int
    w_cos: float
    w_cons: float


def plan(student: str, contexts=CONTEXTS) -> list[AblationPlan]:
    """The runs: three losses at context 16, then the full loss at each other context (16 is shared)."""
    recipe = RECIPES.get(student, RECIPES["s0"])  # a custom student uses S0's weights, as distill does
    weights = {
        "mse": (0.0, 0.0),
        "mse+cos": (recipe.w_cos, 0.0),
        "mse+cos+cons": (recipe.w_cos, recipe.w_cons),
    }
    runs = [AblationPlan(f"loss-{v}", "loss", v, BASE_CONTEXT, *weights[v]) for v in LOSS_VARIANTS]
    runs += [
        AblationPlan(f"context-{c}", "context", str(c), c, *weights["mse+cos+cons"])
        for c in contexts
        if c != BASE_CONTEXT
    ]
    return runs


def ablate(
    teacher_spec: str,
    corpus: str | Path,
    out_dir: str | Path,
    *,
    student: str = "s0",
    budget: int = 300,
    batch_size: int = 64,
    lr: float | None = None,
    limit: int | None = None,
    eval_size: int = 500,
    seed: int = 0,
    device: str | None = None,
    teacher=None,
    on_run=None,
    figures: bool = True,
) -> dict:
    """Run every variant for `budget` steps; returns {"rows": [...]} (one row per variant, both ablations).

    Also writes OUT/results/ablation.json (the rows plus the parameters and the corpus hash) and, with
    `figures`, OUT/figures/ablation.png. Every option is checked before any work (OptionError).
    """
    from anatomy.distill import data
    from anatomy.encoders.device import check_device
    from anatomy.encoders.student import load_student

    device = check_device(device)
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise OptionError(
            "--budget", f"must be an integer >= 1 (optimizer steps per variant), got {budget!r}"
        )
    # every other option as the variants' runs will check it, before the teacher is loaded
    DistillConfig(
        student=student,
        steps=budget,
        batch_size=batch_size,
        lr=lr,
        eval_size=eval_size,
        limit=limit,
        seed=seed,
    )
    params = {"teacher": teacher_spec, "student": student, "budget": budget, "batch_size": batch_size, "lr": lr,
              "limit": limit, "eval_size": eval_size, "seed": seed}  # fmt: skip
    out_dir = Path(out_dir)
    runs = plan(student)
    reference_context = max(r.context for r in runs)
    if teacher is None:
        from anatomy.encoders.registry import load

        teacher = load(teacher_spec, device=device, context_length=reference_context)
    cache_dir = out_dir / "cache"
    prompts, corpus_sha = data.load_prompts(corpus, limit, seed)
    reference = data.teacher_cache(teacher, prompts, reference_context, cache_dir, corpus_sha256=corpus_sha)

    rows, base_row = [], None
    for i, run in enumerate(runs):
        if on_run:
            on_run(i, len(runs), run.name)
        cfg = DistillConfig(
            teacher=teacher_spec,
            student=student,
            corpus=str(corpus),
            context=run.context,
            steps=budget,
            batch_size=batch_size,
            lr=lr,
            w_cos=run.w_cos,
            w_cons=run.w_cons,
            eval_every=max(1, budget // 4),
            save_every=budget,
            eval_size=eval_size,
            limit=limit,
            seed=seed,
        )
        run_dir = out_dir / "runs" / run.name
        resume = (run_dir / "config.json").exists()  # an interrupted ablation continues where it stopped
        result = distill(cfg, run_dir, resume=resume, device=device, cache_dir=cache_dir, teacher=teacher)
        n = len(reference.prompts)
        _, eval_idx = data.split_heldout(n, min(eval_size, max(1, n // 10)), seed)
        own = data.teacher_cache(teacher, prompts, run.context, cache_dir)
        module = load_student(run_dir / "checkpoints" / "latest", device=device or "cpu").module
        full = score_against_reference(module, own, reference, eval_idx)
        row = {
            "ablation": run.ablation,
            "variant": run.variant,
            "context": run.context,
            "w_cos": run.w_cos,
            "w_cons": run.w_cons,
            "steps": budget,
            **{k: v for k, v in result["eval"].items() if k != "step"},
            **full,
        }
        rows.append(row)
        if run.ablation == "loss" and run.variant == LOSS_VARIANTS[-1]:
            base_row = row
    # the full-loss context-16 run is also the context ablation's 16 row
    if base_row is not None:
        rows.append({**base_row, "ablation": "context", "variant": str(BASE_CONTEXT)})
    rows.sort(key=lambda r: (r["ablation"] != "loss", r["context"] if r["ablation"] == "context" else 0))
    result = {"rows": rows, "reference_context": reference_context, "n_prompts": len(prompts)}
    write_result(out_dir, "ablation", result, command="ablate", params=params, inputs={"corpus": corpus})
    if figures:
        from anatomy.figures.distill import draw_ablation, prepare_ablation
        from anatomy.figures.style import save_figure

        save_figure(draw_ablation(prepare_ablation(result)), figure_path(out_dir))
    return result


def results_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "results" / "ablation.json"


def figure_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "figures" / "ablation.png"


def score_against_reference(module, own, reference, rows: np.ndarray, batch: int = 256) -> dict:
    """Pooled cosine and kNN@10 overlap of the student (at its context) against the teacher's pooled output of
    the full prompt at the reference context."""
    import torch
    import torch.nn.functional as F

    from anatomy.distill.data import make_batch
    from anatomy.encoders.base import masked_mean

    device = next(module.parameters()).device
    pooled_s, pooled_t = [], []
    module.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            picked = rows[start : start + batch]
            b = make_batch(own, picked, device)
            pooled_s.append(masked_mean(module(b.ids, b.valid).float(), b.valid).cpu())
            r = make_batch(reference, picked, "cpu")
            pooled_t.append(masked_mean(r.targets, r.valid))
    ps, pt = torch.cat(pooled_s).double(), torch.cat(pooled_t).double()
    return {
        "pooled_cosine_full": float(F.cosine_similarity(ps, pt, dim=-1).mean()),
        "knn_overlap10_full": knn_overlap(ps.numpy(), pt.numpy(), 10),
    }
