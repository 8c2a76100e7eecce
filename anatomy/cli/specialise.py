"""`anatomy specialise`: one command from a prompt log to a deployable specialised student and its bill."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anatomy.cli.common import JsonOpt, QuietOpt, check_device, check_out_dir, err, out, print_json, say
from anatomy.specialise.plan import ASSUMED_STEPS_PER_S, MIN_BUDGET_STEPS


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def _batches(texts: list[str] | None) -> tuple[int, ...]:
    """--cost-batches, repeatable and comma-separated (`--cost-batches 1 --cost-batches 64` is `1,64`)."""
    from anatomy.cost.compare import MAX_BATCH
    from anatomy.specialise.plan import SpecialiseConfig

    if not texts:
        return SpecialiseConfig.cost_batches
    try:
        values = tuple(dict.fromkeys(int(v) for v in _split(texts)))
    except ValueError:
        values = ()
    if not values or 1 not in values or any(v < 1 or v > MAX_BATCH for v in values):
        raise typer.BadParameter(
            f"{','.join(texts)!r}: batch sizes in [1, {MAX_BATCH}] including 1 (repeat the option or separate "
            "them with commas)",
            param_hint="--cost-batches",
        )
    return tuple(sorted(values))


def specialise_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Prompt files (source detected), builtin:NAME, or one corpus .parquet. "
            "Default: builtin:imagenet-prompts."
        ),
    ] = None,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: stages/, bill.json, bill.md, index.html (reruns reuse what is unchanged).",
        ),
    ] = Path("specialise-out"),
    teacher: Annotated[
        str, typer.Option(help="Teacher encoder spec (minilm, sam3:PATH, hf:PATH, ...).")
    ] = "minilm",
    student: Annotated[
        list[str] | None,
        typer.Option(
            "--student",
            help="Candidate: s0 | s1 | l | CONFIG.json (repeat or comma-separate; default: a small "
            "ladder for the teacher).",
        ),
    ] = None,
    context: Annotated[
        str, typer.Option(help="auto (the tokens analysis' recommendation) or a length.")
    ] = "auto",
    vocab: Annotated[
        str, typer.Option(help="auto (specialise when the risk measurement allows) | full.")
    ] = "auto",
    held_out: Annotated[
        list[str] | None, typer.Option("--held-out", help="Prompt file the bill also measures (repeatable).")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Distillation steps per candidate.")] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            help="Minutes of distillation for all candidates (instead of --steps), turned into steps "
            f"at an ASSUMED {ASSUMED_STEPS_PER_S:g} steps/s (a small student at batch 64 on two CPU "
            f"cores; not measured), shared equally, at least {MIN_BUDGET_STEPS} each. The bill states "
            "the rate and the measured time."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Distillation batch size.")] = 64,
    limit: Annotated[
        int | None, typer.Option(min=20, help="Use a seeded sample of this many distinct prompts.")
    ] = None,
    export: Annotated[
        list[str] | None,
        typer.Option("--export", help="Export formats, comma-separated (default onnx,int8)."),
    ] = None,
    max_quality_drop: Annotated[
        float | None, typer.Option(help="Largest 1 - pooled cosine to the teacher (test split) to accept.")
    ] = None,
    max_params: Annotated[int | None, typer.Option(help="Most parameters to accept.")] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="Largest batch-1 p50 latency (ms) to accept.")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Torch threads (training and each cost process); default: torch's."),
    ] = None,
    cost_repeats: Annotated[int, typer.Option(min=2, help="Batch-1 calls timed per cost row.")] = 20,
    cost_batches: Annotated[
        list[str] | None,
        typer.Option(
            help="Batch sizes of the cost rows: repeat or comma-separate (1 gives the latency). "
            "\\[default: 1,64]"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the split, the sample and the training.")] = 0,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:N or mps (default: cuda if available).")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Audit, specialise the vocabulary, distil candidate students, export and cost them: the bill and a
    recommendation (bill.json, bill.md, index.html in --out). Exit 0 with a warning when nothing is recommended."""
    from anatomy.specialise.pipeline import run_specialise
    from anatomy.specialise.plan import DEFAULT_EXPORTS, SpecialiseConfig

    check_out_dir(out_dir)
    cfg = SpecialiseConfig(
        inputs=tuple(inputs or ()), teacher=teacher, students=_split(student), context=context, vocab=vocab,
        held_out=tuple(held_out or ()), steps=steps, budget=budget, batch_size=batch_size,
        device=check_device(device), exports=_split(export) or DEFAULT_EXPORTS, max_quality_drop=max_quality_drop,
        max_params=max_params, max_latency_ms=max_latency_ms, limit=limit, seed=seed, threads=threads, cost_repeats=cost_repeats,
        cost_batches=_batches(cost_batches),
    )  # fmt: skip
    result = run_specialise(cfg, out_dir, say=say(quiet))
    bill = result.bill
    rec = bill.recommendation
    if rec.candidate is None:
        err.print(f"warning: {rec.reason}", highlight=False)
    for note in bill.cost_notes:  # a busy machine, latencies that did not settle, the teacher's context
        err.print(f"cost: {note}", highlight=False)
    from anatomy.specialise.render import batch_note

    if batch_note(bill):
        err.print(f"training: {batch_note(bill)}", highlight=False)
    if as_json:
        print_json(bill.to_json())
        return
    from anatomy.specialise.render import summary_table

    table = summary_table(bill)
    widths = [max(len(c), *(len(r[i]) for r in table.rows)) for i, c in enumerate(table.columns)]
    for line in [table.columns, *table.rows]:
        out.print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)), highlight=False)
    if rec.candidate is not None:
        out.print(f"recommended: {rec.candidate} ({rec.runtime}): {rec.reason}", highlight=False)
    for line in rec.watch:
        out.print(f"watch: {line}", highlight=False)
    out.print(
        f"bill: {out_dir / 'index.html'}, {out_dir / 'bill.md'}, {out_dir / 'bill.json'}", highlight=False
    )
