"""`anatomy distill`, `export` and `ablate`: train students, ship them, and compare training choices."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from anatomy.cli.common import (
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    check_out_dir,
    err,
    out,
    print_json,
    print_table,
    progress_bar,
)
from anatomy.distill.config import DistillConfig
from anatomy.distill.export import FORMATS

# DistillConfig holds every default once; the options below show and use them (a light import: no torch).
_DEFAULT: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(DistillConfig)}

EXPORT_FORMATS = tuple(FORMATS)  # the formats the CLI accepts: anatomy.distill.export's table


def distill_cmd(
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus Parquet file (anatomy ingest).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory (refused if it holds a run).")],
    teacher: Annotated[
        str, typer.Option(help="Teacher encoder spec (sam3:PATH, minilm, hf:PATH, ...).")
    ] = _DEFAULT["teacher"],
    student: Annotated[
        str, typer.Option(help="s0 | s1 | l, or a JSON config with layers, width, heads.")
    ] = _DEFAULT["student"],
    context: Annotated[
        int, typer.Option(min=2, help="The student's context length (2 .. the teacher's positions).")
    ] = _DEFAULT["context"],
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs (default: the student's paper-era setting).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Total optimizer steps (overrides --epochs).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Global batch size (all processes together).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate at batch 512 (scaled by batch / 512); > 0.")
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(min=0, help="Warm-up steps (default: the recipe's share).")
    ] = None,
    w_cos: Annotated[float | None, typer.Option(help="Weight of the masked 1 - cosine loss (>= 0).")] = None,
    w_cons: Annotated[
        float | None, typer.Option(help="Weight of the word-shuffle consistency loss (>= 0).")
    ] = None,
    clip: Annotated[float | None, typer.Option(help="Gradient-norm clipping (0: off).")] = None,
    eval_every: Annotated[
        int, typer.Option(min=1, help="Evaluate on the held-out prompts every N steps.")
    ] = _DEFAULT["eval_every"],
    save_every: Annotated[
        int | None, typer.Option(min=1, help="Checkpoint every N steps (default: --eval-every).")
    ] = None,
    eval_size: Annotated[
        int, typer.Option(min=1, help="Held-out prompts (at most 10% of the corpus).")
    ] = _DEFAULT["eval_size"],
    limit: Annotated[
        int | None, typer.Option(min=2, help="Train on a seeded sample of this many distinct prompts.")
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed for the split, the data order and the initial weights.")
    ] = _DEFAULT["seed"],
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")] = False,
    restart: Annotated[
        bool,
        typer.Option(
            help="Train again from step 0 in an --out that holds a run (its checkpoints are replaced once "
            "training starts; the teacher cache is kept).",
        ),
    ] = False,
    device: DeviceOpt = None,
    dtype: Annotated[
        Literal["auto", "fp32", "bf16"], typer.Option(help="auto (bf16 autocast on GPU) | fp32 | bf16.")
    ] = _DEFAULT["dtype"],
    cache_dir: Annotated[
        Path | None, typer.Option(help="Teacher cache folder (default: RUN_DIR/teacher_cache).")
    ] = None,
    vocab: Annotated[
        Path | None,
        typer.Option(
            help="A specialised vocabulary (DIR from `anatomy vocab --tokenizer TEACHER`): the student embeds "
            "only its kept tokens and carries it in its checkpoints.",
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start from a pretrained text tower (any encoder spec, e.g. litetext-s0:PATH or "
            "open_clip:MODEL:TAG): shapes must match, the positional table is resized, the projection is new.",
        ),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Distil a teacher's per-token outputs into a student (run with torchrun for several GPUs/processes)."""
    import os

    from anatomy.distill.train import DistillConfig, distill

    check_out_dir(out_dir)
    check_out_dir(cache_dir, "--cache-dir")
    quiet = quiet or os.environ.get("RANK", "0") != "0"  # under torchrun only rank 0 shows progress
    cfg = DistillConfig(
        teacher=teacher, student=student, corpus=str(corpus), context=context, epochs=epochs, steps=steps,
        warmup_steps=warmup_steps, batch_size=batch_size, lr=lr, w_cos=w_cos, w_cons=w_cons, clip=clip,
        eval_every=eval_every, save_every=save_every, eval_size=eval_size, limit=limit, seed=seed,
        dtype=dtype, vocab=str(vocab) if vocab is not None else None, init=init,
    )  # fmt: skip
    with progress_bar(quiet) as bar:
        cache_task = bar.add_task("teacher cache", total=None, status="")
        train_task = bar.add_task("distill", total=None, status="", visible=False)

        def on_cache(done: int, total: int) -> None:
            bar.update(cache_task, completed=done, total=total)

        def on_step(done: int, total: int, loss: float, rate: float) -> None:
            bar.update(cache_task, visible=False)
            status = f"loss {loss:.4f} {rate:,.0f} texts/s"
            bar.update(train_task, completed=done, total=total, visible=True, status=status)

        result = distill(
            cfg, out_dir, resume=resume, restart=restart, device=device, cache_dir=cache_dir, on_step=on_step,
            on_cache=on_cache, figures=True,
        )  # fmt: skip
    if as_json:
        print_json(result)
        return
    last = result["eval"]
    if last:
        out.print(
            f"{out_dir}: {result['config']['steps']} steps; held-out token cosine {last['eval_token_cosine']:.4f}, "
            f"pooled {last['eval_pooled_cosine']:.4f}, kNN@10 overlap {_num(last['eval_knn_overlap10'], '.3f')}",
            highlight=False,
        )
        out.print(
            f"student: student:{out_dir / 'checkpoints' / 'best'} (best) and .../latest", highlight=False
        )


def export_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory written by anatomy distill (or a student directory).")
    ],
    fmt: Annotated[
        Literal[EXPORT_FORMATS],  # type: ignore[valid-type]
        typer.Option(
            "--format",
            help="litetext (SAM3-LiteText checkpoint) | open_clip (local dir) | onnx | int8 | hf (transformers).",
        ),
    ],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="litetext: a .pt/.safetensors file; open_clip: a directory.")
    ],
    checkpoint: Annotated[
        Literal["best", "latest"], typer.Option(help="Which checkpoint of the run: best | latest.")
    ] = "best",
    base: Annotated[
        str | None,
        typer.Option(help="--format hf: a SAM3 / SAM3-LiteText folder or hub id; writes a full segmenter."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a distilled student in the LiteText checkpoint layout or as an open_clip local directory."""
    from anatomy.distill.export import export

    if base is not None and not base.strip():
        raise typer.BadParameter(
            "an empty --base; give a SAM3 or SAM3-LiteText folder or hub id", param_hint="--base"
        )
    if base is not None and fmt != "hf":
        raise typer.BadParameter("--base goes with --format hf", param_hint="--base")
    if fmt == "hf":
        from anatomy.distill.hf_export import export_hf

        summary = export_hf(run_dir, out_path, checkpoint, base)
    else:
        summary = export(run_dir, fmt, out_path, checkpoint)
    for note in summary.get("notes", []):  # e.g. a specialised student widened to the full table
        err.print(f"warning: {note}", highlight=False)
    if as_json:
        print_json(summary)
        return
    line = f"{summary['source']} -> {summary['out']} ({summary['format']}, {summary['keys']} tensors)"
    out.print(line + (f"; load it as {summary['load_as']}" if summary["load_as"] else ""), highlight=False)


def ablate_cmd(
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus Parquet file (anatomy ingest).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder: runs/, cache/, results/, figures/.")
    ],
    teacher: Annotated[str, typer.Option(help="Teacher encoder spec.")] = "minilm",
    student: Annotated[
        str, typer.Option(help="s0 | s1 | l, or a JSON config with layers, width, heads.")
    ] = "s0",
    budget: Annotated[int, typer.Option(min=1, help="Optimizer steps per variant.")] = 300,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size.")] = 64,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate at batch 512 (default: the student's); > 0.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=2, help="Use a seeded sample of this many distinct prompts.")
    ] = None,
    eval_size: Annotated[int, typer.Option(min=1, help="Held-out prompts.")] = 500,
    seed: Annotated[int, typer.Option(min=0, help="Seed for the split, data order and initial weights.")] = 0,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The loss ablation (MSE / +cosine / +consistency) and context ablation (8/16/32) on a small budget."""
    from rich.table import Table

    from anatomy.distill.ablate import ablate, figure_path, results_path

    check_out_dir(out_dir)

    def on_run(i: int, n: int, name: str) -> None:
        if not quiet:
            err.print(f"[{i + 1}/{n}] {name}", highlight=False, markup=False)

    result = ablate(
        teacher, corpus, out_dir, student=student, budget=budget, batch_size=batch_size, lr=lr, limit=limit,
        eval_size=eval_size, seed=seed, device=device, on_run=on_run,
    )  # fmt: skip
    if as_json:
        print_json(result)
        return
    table = Table(
        title=f"ablations ({budget} steps each; 'full' = vs the teacher's full prompt at context 32)"
    )
    for col in ("ablation", "variant", "context", "token cos", "pooled cos full", "kNN@10 full"):
        table.add_column(col, justify="left" if col in ("ablation", "variant") else "right")
    for r in result["rows"]:
        table.add_row(
            r["ablation"], r["variant"], str(r["context"]), f"{r['eval_token_cosine']:.4f}",
            _num(r["pooled_cosine_full"], ".4f"), _num(r["knn_overlap10_full"], ".3f"),
        )  # fmt: skip
    print_table(table)
    out.print(
        f"results: {results_path(out_dir)}; figure: {figure_path(out_dir)}", highlight=False, markup=False
    )


def _num(value, spec: str) -> str:
    """A figure, or n/a where it was not measured (e.g. kNN@10 on fewer than 21 held-out prompts)."""
    return "n/a" if value is None else format(value, spec)
