"""The `anatomy` command: thin commands that parse options, call one library function and print.

Results and tables go to stdout, progress and messages to stderr. A user mistake (AnatomyError) is printed
in one or two lines and exits 1; usage errors exit 2 (typer's default). Heavy libraries are imported
inside the commands so `anatomy --help` stays instant.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from anatomy.errors import AnatomyError

app = typer.Typer(
    name="anatomy",
    help="Audit how much of a text encoder a prompt workload really uses, and distill smaller students.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
out = Console()  # results: stdout
err = Console(stderr=True)  # messages and progress: stderr

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or notices on stderr.")]


def command(*args, **kwargs):
    """app.command() that turns AnatomyError into a short message and exit code 1."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            try:
                return fn(*a, **k)
            except AnatomyError as error:
                err.print(f"[bold red]error:[/] {error.message}", highlight=False, soft_wrap=True)
                if error.hint:
                    err.print(f"  hint: {error.hint}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


def print_json(data) -> None:
    from anatomy.io import dumps_json

    typer.echo(dumps_json(data), nl=False)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
        force=True,
    )


# ---------------------------------------------------------------------------------------------- corpus


@command("ingest")
def ingest_cmd(
    source: Annotated[str, typer.Argument(help="lvis | refcoco | saco | rf100vl | text | builtin")],
    paths: Annotated[
        list[str],
        typer.Argument(help="Files or directories; '-' reads stdin; builtin:NAME for built-in sets."),
    ],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="Corpus Parquet file (created, or merged into).")
    ],
    synonyms: Annotated[bool, typer.Option(help="lvis: add each synonym as its own prompt.")] = False,
    column: Annotated[str | None, typer.Option(help="text: the csv/tsv column holding prompts.")] = None,
    field: Annotated[str | None, typer.Option(help="text: the jsonl field holding prompts.")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the inputs.")] = "utf-8",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Read prompts from SOURCE files into one deduplicated corpus (Parquet) with a manifest beside it."""
    from anatomy.corpus import ingest
    from anatomy.corpus.sources import ReadOptions

    report = ingest(source, paths, out_path, ReadOptions(synonyms, column, field, encoding))
    if as_json:
        print_json(report)
        return
    for f in report.files:
        if f.already_ingested:
            err.print(
                f"{f.input}: already in {out_path.name} (same sha256); nothing changed"
            ) if not quiet else None
            continue
        line = f"{f.input}: read {f.read:,}, kept {f.kept:,}, merged {f.merged:,} duplicates, skipped {f.skipped:,}"
        out.print(line, highlight=False)
        for reason, entry in f.skips.items():
            err.print(
                f"  skipped {entry['count']:,}: {reason} (e.g. {entry['examples'][0]})", highlight=False
            )
    out.print(
        f"{out_path}: {report.n_rows:,} rows, {report.n_distinct_prompts:,} distinct prompts", highlight=False
    )


@command("corpus")
def corpus_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus Parquet file.")],
    as_json: JsonOpt = False,
) -> None:
    """Counts per source and subset, and the number of distinct prompts overall."""
    from rich.table import Table

    from anatomy.corpus import load_corpus
    from anatomy.corpus.corpus import corpus_summary

    summary = corpus_summary(load_corpus(corpus))
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"{corpus.name}")
    for col in ("source", "subset", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for source, entry in summary["sources"].items():
        for subset, n in entry["subsets"].items():
            table.add_row(source, subset, f"{n:,}")
        table.add_row(f"[bold]{source}[/]", "[bold]all[/]", f"[bold]{entry['rows']:,}[/]", end_section=True)
    out.print(table)
    out.print(
        f"distinct prompts overall: {summary['distinct_prompts']:,} (occurrences {summary['occurrences']:,})"
    )


# ---------------------------------------------------------------------------------------------- tokens


def _parse_contexts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"'{text}' is not a comma-separated list of integers, e.g. 8,16,32"
        ) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"context lengths must be positive integers, got '{text}'")
    return values


@command("tokens")
def tokens_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus Parquet file (from `anatomy ingest`).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (tokens.parquet, results/, figures/).")
    ],
    context: Annotated[
        str, typer.Option("--context", help="Context lengths for the table, comma-separated.")
    ] = "8,16,24,32,77",
    tokenizer: Annotated[
        str,
        typer.Option("--tokenizer", help="clip (CLIP BPE) or an encoder spec whose own tokenizer to use."),
    ] = "clip",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Token lengths, the context-window table and vocabulary coverage of a corpus."""
    from anatomy.tokens import run_tokens

    result = run_tokens(corpus, out_dir, _parse_contexts(context), tokenizer, quiet=quiet)
    if as_json:
        print_json(result)
        return
    _print_tokens(result, out_dir)


def _print_tokens(result: dict, out_dir: Path) -> None:
    from rich.table import Table

    paper = result["paper"]
    blocks = {"overall": result["overall"], **result["sources"]}
    lengths = Table(title="Tokens per prompt (start and end included)")
    for col in ("block", "prompts", "mean", "median", "p90", "p95", "p99", "max"):
        lengths.add_column(col, justify="left" if col == "block" else "right")
    for name, b in blocks.items():
        s = b["length"]
        lengths.add_row(
            name,
            f"{b['n_prompts']:,}",
            f"{s['mean']:.2f}",
            *(f"{s[k]:g}" for k in ("median", "p90", "p95", "p99", "max")),
        )
    lengths.add_row(
        "[dim]paper[/]",
        f"[dim]{paper['n_prompts']:,}[/]",
        f"[dim]{paper['length']['mean']}[/]",
        "",
        "",
        "",
        "",
        "",
    )
    out.print(lengths)

    ctx = Table(title="Context window (overall; paper's values in brackets)")
    for col in ("L", "density", "padding", "truncation", "token loss", "loss per prompt"):
        ctx.add_column(col, justify="right")
    for L, row in result["overall"]["context"].items():
        p = paper["context"].get(L, {})

        def cell(key: str, row=row, p=p) -> str:
            ours = f"{row[key]:.1%}" if key != "density" else f"{row[key]:.3f}"
            if key not in p:
                return ours
            theirs = f"{p[key]:.1%}" if key != "density" else f"{p[key]:.3f}"
            return f"{ours} [dim]({theirs})[/]"

        ctx.add_row(
            L,
            *(cell(k) for k in ("density", "padding", "truncation", "token_loss")),
            f"{row['token_loss_per_prompt']:.1%}",
        )
    out.print(ctx)

    vocab = Table(title="Vocabulary")
    for col in ("block", "used", "unused", "top-10", "top-100", "top-1000", "special share"):
        vocab.add_column(col, justify="left" if col == "block" else "right")
    for name, b in blocks.items():
        v = b["vocab"]
        vocab.add_row(
            name,
            f"{v['used']:,}",
            f"{v['unused_share']:.1%}",
            *(f"{v['top_k_coverage'][k]:.1%}" for k in ("10", "100", "1000")),
            f"{v['special_share']:.1%}",
        )
    pv = paper["vocab"]
    vocab.add_row(
        "[dim]paper[/]",
        f"[dim]{pv['used']:,}[/]",
        f"[dim]{pv['unused_share']:.0%}[/]",
        "",
        f"[dim]{pv['top_k_coverage']['100']:.1%}[/]",
        "",
        f"[dim]{pv['special_share']:.1%}[/]",
    )
    out.print(vocab)
    mean_share = result["overall"]["vocab"].get("special_share_mean_over_sources")
    if mean_share is not None:
        out.print(
            f"special share, mean over sources: {mean_share:.1%} (paper {pv['special_share']:.1%})",
            highlight=False,
        )

    rec = result["recommended_context"]
    for convention in ("pooled", "per_prompt"):
        r = rec[convention]
        if r["L"] is None:
            out.print(
                f"recommended context ({convention} loss): none in range - {r['reason']}", highlight=False
            )
        else:
            out.print(
                f"recommended context ({convention} loss): L={r['L']} (token loss {r['token_loss']:.2%}, per prompt "
                f"{r['token_loss_per_prompt']:.2%}, truncation {r['truncation']:.2%}, density {r['density']:.3f})",
                highlight=False,
            )
    out.print(f"[dim]rule: {rec['rule']}[/]", highlight=False)
    out.print(
        f"results: {out_dir / 'results' / 'tokens.json'}; figures: {out_dir / 'figures'}/tokens_*.png",
        highlight=False,
    )


# -------------------------------------------------------------------------------------- encoders, embed


@command("encoders")
def encoders_cmd(
    context: Annotated[
        int, typer.Option("--context", help="Context length of the students' positional tables.")
    ] = 16,
    as_json: JsonOpt = False,
) -> None:
    """The teacher and student architectures with parameter breakdowns (no weights needed)."""
    from rich.table import Table

    from anatomy.encoders.registry import describe_all

    rows = describe_all(context)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        table = Table(title=f"{row['name']} (context {row['context_length']})", title_justify="left")
        table.add_column("component")
        table.add_column("parameters", justify="right")
        for name, n in row["components"].items():
            table.add_row(name, f"{n:,}")
        table.add_row("[bold]total[/]", f"[bold]{row['parameters']:,}[/]", end_section=True)
        out.print(table)


@command("embed")
def embed_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus Parquet file (from `anatomy ingest`).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Embeddings directory (created; reused when current).")
    ],
    encoder: Annotated[
        str, typer.Option("--encoder", "-e", help="Encoder spec (see `anatomy encoders`).")
    ] = "minilm",
    context: Annotated[
        int | None, typer.Option("--context", min=2, help="Context length (default: the encoder's).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="fp32 or bf16.")] = "fp32",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")] = 256,
    per_token: Annotated[
        bool, typer.Option("--per-token", help="Also keep per-token outputs (tokens.npy).")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pooled (and optionally per-token) embeddings of every corpus row; resumes after a kill; torchrun shards."""
    from anatomy.embed import embed_corpus

    with _progress(quiet) as bar:
        task = bar.add_task(f"embed {encoder}", total=None, status="")

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = embed_corpus(
            corpus,
            encoder,
            out_dir,
            context_length=context,
            dtype=dtype,
            batch_size=batch_size,
            per_token=per_token,
            quiet=quiet,
            device=device,
            on_progress=on_progress,
        )
    if result.manifest is None:  # a torchrun rank other than 0: its shard is written, rank 0 merges
        err.print(
            f"{out_dir}: shard written; rank 0 merges", highlight=False, soft_wrap=True
        ) if not quiet else None
        return
    if as_json:
        print_json(result.manifest)
        return
    m = result.manifest
    state = "reused (encoder and corpus unchanged)" if result.reused else "written"
    out.print(
        f"{out_dir}: {m['rows']:,} rows x {m['dim']} ({m['encoder']['spec']}, context {m['context_length']}, {m['dtype']}) {state}",
        highlight=False,
        soft_wrap=True,
    )


# ----------------------------------------------------------------------------------- representation anatomy

EncoderOpt = Annotated[str, typer.Option("--encoder", "-e", help="Encoder spec (see `anatomy encoders`).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory (results/ and figures/ inside).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every sampling step.")]


def _print_rank_family(title: str, entry) -> None:
    from anatomy.io import to_jsonable

    for centring in ("centred", "uncentred"):
        s = to_jsonable(entry[centring])
        out.print(
            f"{title} ({centring}): erank {s['erank']:.1f} of {s['n_values']}, erank(s^2) {s['erank_sq']:.1f}, "
            f"participation {s['participation_ratio']:.1f}, stable {s['stable_rank']:.2f}, n90 {s['n90']}",
            highlight=False,
        )


@command("positions")
def positions_cmd(
    out_dir: OutOpt,
    encoder: EncoderOpt = "minilm",
    block: Annotated[int, typer.Option("--block", min=1, help="Block size for the block means.")] = 8,
    rows: Annotated[
        str, typer.Option("--rows", help="context: the first context-length rows; all: the whole table.")
    ] = "context",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Positional table: cosine matrix, block means, adjacent similarity, PCA curve, effective ranks."""
    from anatomy.analysis.run import run_positions

    result = run_positions(encoder, out_dir, block=block, rows=rows, quiet=quiet)
    if as_json:
        print_json(result)
        return
    out.print(f"{result['encoder']}: {result['rows_rule']}, {result['dim']} dims", highlight=False)
    within = ", ".join(f"{v:.3f}" for v in result["within_block"][:8])
    out.print(
        f"within-block mean cosine (block {block}): {within}{' ...' if len(result['within_block']) > 8 else ''}"
    )
    out.print(
        f"adjacent positions: mean cosine {result['adjacent']['mean']:.3f}; PCA: {result['pca']['n90']} components for 90%"
    )
    _print_rank_family("table", result["spectrum"])
    out.print(
        f"written: {out_dir / 'results' / 'positions.json'} and figures/positions_*.png", highlight=False
    )


@command("spectrum")
def spectrum_cmd(
    out_dir: OutOpt,
    encoder: EncoderOpt = "minilm",
    corpus: Annotated[
        Path | None, typer.Option("--corpus", "-c", help="Corpus: also the subset of ids it uses.")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """SVD of the token-embedding matrix (full vocabulary, and the ids the corpus uses): effective ranks."""
    from anatomy.analysis.run import run_spectrum

    result = run_spectrum(encoder, out_dir, corpus=corpus, quiet=quiet)
    if as_json:
        print_json(result)
        return
    _print_rank_family(f"full vocabulary ({result['vocab_size']:,} ids)", result["full"])
    if "used" in result:
        _print_rank_family(f"used subset ({result['used']['n_ids']:,} ids)", result["used"])
    out.print(f"written: {out_dir / 'results' / 'spectrum.json'} and figures/spectrum.png", highlight=False)


@command("dims")
def dims_cmd(
    out_dir: OutOpt,
    encoder: Annotated[
        str | None, typer.Option("--encoder", "-e", help="Encoder spec (with --corpus).")
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", "-c", help="Corpus whose prompts are embedded.")
    ] = None,
    embeddings: Annotated[
        Path | None, typer.Option("--embeddings", help="A saved [N, D] .npy array instead.")
    ] = None,
    sample: Annotated[
        int | None, typer.Option("--sample", min=3, help="Distinct points per group (default 5000).")
    ] = None,
    all_points: Annotated[bool, typer.Option("--all", help="Every distinct point (100k+ is fine).")] = False,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Intrinsic dimension (TwoNN, MLE) and linear effective rank of pooled outputs, overall and per source."""
    from anatomy.analysis.run import DIMS_SAMPLE, run_dims

    if all_points and sample is not None:
        raise typer.BadParameter("give --sample N or --all, not both", param_hint="--sample/--all")
    if (encoder is None) == (embeddings is None):
        raise typer.BadParameter(
            "give --encoder SPEC --corpus CORPUS, or --embeddings FILE.npy", param_hint="--encoder"
        )
    result = run_dims(
        out_dir,
        encoder,
        corpus,
        embeddings,
        sample=sample or DIMS_SAMPLE,
        all_points=all_points,
        seed=seed,
        quiet=quiet,
    )
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    table = Table(title=f"intrinsic dimension: {result['input']}")
    for col in (
        "group",
        "points",
        "dims",
        "TwoNN linear",
        "TwoNN closed",
        "MLE harmonic",
        "MLE mean",
        "erank",
    ):
        table.add_column(col, justify="left" if col == "group" else "right")

    def cell(value: float, key: str, spread: dict) -> str:
        return f"{value:.2f} ± {spread[key]['std']:.2f}" if key in spread else f"{value:.2f}"

    for group, e in [("overall", result["overall"]), *result["sources"].items()]:
        sd = e["spread"]
        table.add_row(
            group, f"{e['n_points']:,}", str(e["ambient_dim"]), cell(e["twonn"]["linear"], "twonn_linear", sd),
            cell(e["twonn"]["closed_form"], "twonn_closed_form", sd), cell(e["mle"]["harmonic"], "mle_harmonic", sd),
            cell(e["mle"]["mean"], "mle_mean", sd), f"{e['erank']:.1f}",
        )  # fmt: skip
    out.print(table)
    out.print(f"written: {out_dir / 'results' / 'dims.json'} and figures/dims.png", highlight=False)


@command("robustness")
def robustness_cmd(
    out_dir: OutOpt,
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus whose prompts are embedded.")],
    encoder: EncoderOpt = "minilm",
    noise: Annotated[
        list[float] | None, typer.Option("--noise", help="Noise level(s), repeatable (default 0.1).")
    ] = None,
    sample: Annotated[
        int, typer.Option("--sample", min=2, help="Distinct prompts in the attention set.")
    ] = 2000,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Softmax error attenuation: input, logit and attention-output errors under Gaussian noise."""
    from anatomy.analysis.run import run_robustness
    from anatomy.io import to_jsonable

    result = run_robustness(
        encoder, corpus, out_dir, noise=tuple(noise or (0.1,)), seed=seed, sample=sample, quiet=quiet
    )
    if as_json:
        print_json(result)
        return
    c = result["construction"]
    out.print(
        f"X: {c['X']}; {c['queries']}; {c['keys']}; logits {c['logits']}; {c['values']}", highlight=False
    )
    for level in to_jsonable(result["levels"]):
        out.print(
            f"noise {level['noise']:g}: input {level['input_error']:.4f}, logits {level['logit_error']:.4f}, "
            f"output {level['output_error']:.6f}, reduction x{level['reduction_factor']:.1f} "
            f"(output with noisy values {level['output_error_noisy_values']:.4f})",
            highlight=False,
        )
    out.print(
        f"written: {out_dir / 'results' / 'robustness.json'} and figures/robustness.png", highlight=False
    )


@command("agreement")
def agreement_cmd(
    out_dir: OutOpt,
    teacher: Annotated[str, typer.Option("--teacher", help="Teacher encoder spec.")],
    student: Annotated[str, typer.Option("--student", help="Student encoder spec.")],
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus whose prompts both encode.")],
    sample: Annotated[int, typer.Option("--sample", min=11, help="Distinct prompts compared.")] = 2000,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Student vs teacher: per-token and pooled cosine, kNN overlap@10, intrinsic dimension side by side."""
    from anatomy.analysis.run import run_agreement
    from anatomy.io import to_jsonable

    result = to_jsonable(
        run_agreement(teacher, student, corpus, out_dir, sample=sample, seed=seed, quiet=quiet)
    )
    if as_json:
        print_json(result)
        return
    out.print(
        f"{result['student']} vs {result['teacher']} on {result['n_prompts']:,} prompts", highlight=False
    )
    for key in ("token_cosine", "pooled_cosine", "knn_overlap@10"):
        d = result.get(key)
        if d:
            out.print(f"{key}: mean {d['mean']:.4f}, median {d['median']:.4f}, 5th percentile {d['p05']:.4f}")
    for role in ("teacher", "student"):
        e = result["intrinsic_dim"][role]
        out.print(
            f"{role} intrinsic dimension: TwoNN {e['twonn']['linear']:.2f}, MLE {e['mle']['harmonic']:.2f}, "
            f"erank {e['erank']:.1f} ({e['ambient_dim']} dims)",
            highlight=False,
        )
    for note in result["notes"]:
        err.print(f"note: {note}", highlight=False)
    out.print(f"written: {out_dir / 'results' / 'agreement.json'} and figures/agreement.png", highlight=False)


# --------------------------------------------------------------------------------------------- distill


def _progress(quiet: bool):
    """A rich progress bar on stderr (a no-op context when quiet)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=True,
    )


@command("distill")
def distill_cmd(
    corpus: Annotated[Path, typer.Option(help="Corpus Parquet file (anatomy ingest).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory (refused if it holds a run).")],
    teacher: Annotated[
        str, typer.Option(help="Teacher encoder spec (sam3:PATH, minilm, hf:PATH, ...).")
    ] = "minilm",
    student: Annotated[
        str, typer.Option(help="s0 | s1 | l, or a JSON config with layers, width, heads.")
    ] = "s0",
    context: Annotated[int, typer.Option(help="The student's context length.")] = 16,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs (default: the student's paper-era setting).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimizer steps (overrides --epochs).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Global batch size (all processes together).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate at batch 512 (scaled by batch / 512).")
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help="Warm-up steps (default: the recipe's share).")
    ] = None,
    w_cos: Annotated[float | None, typer.Option(help="Weight of the masked 1 - cosine loss.")] = None,
    w_cons: Annotated[float | None, typer.Option(help="Weight of the word-shuffle consistency loss.")] = None,
    clip: Annotated[float | None, typer.Option(help="Gradient-norm clipping (0: off).")] = None,
    eval_every: Annotated[int, typer.Option(help="Evaluate on the held-out prompts every N steps.")] = 200,
    save_every: Annotated[
        int | None, typer.Option(help="Checkpoint every N steps (default: --eval-every).")
    ] = None,
    eval_size: Annotated[int, typer.Option(help="Held-out prompts (at most 10% of the corpus).")] = 1000,
    limit: Annotated[
        int | None, typer.Option(help="Train on a seeded sample of this many distinct prompts.")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for the split, the data order and the initial weights.")
    ] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="auto (bf16 autocast on GPU) | fp32 | bf16.")] = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Teacher cache folder (default: RUN_DIR/teacher_cache).")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Distil a teacher's per-token outputs into a student (run with torchrun for several GPUs/processes)."""
    import os

    from anatomy.distill.train import DistillConfig, distill

    quiet = quiet or os.environ.get("RANK", "0") != "0"  # under torchrun only rank 0 shows progress
    cfg = DistillConfig(
        teacher=teacher,
        student=student,
        corpus=str(corpus),
        context=context,
        epochs=epochs,
        steps=steps,
        warmup_steps=warmup_steps,
        batch_size=batch_size,
        lr=lr,
        w_cos=w_cos,
        w_cons=w_cons,
        clip=clip,
        eval_every=eval_every,
        save_every=save_every,
        eval_size=eval_size,
        limit=limit,
        seed=seed,
        dtype=dtype,
    )
    with _progress(quiet) as bar:
        cache_task = bar.add_task("teacher cache", total=None, status="")
        train_task = bar.add_task("distill", total=None, status="", visible=False)

        def on_cache(done: int, total: int) -> None:
            bar.update(cache_task, completed=done, total=total)

        def on_step(done: int, total: int, loss: float, rate: float) -> None:
            bar.update(cache_task, visible=False)
            bar.update(
                train_task,
                completed=done,
                total=total,
                visible=True,
                status=f"loss {loss:.4f} {rate:,.0f} texts/s",
            )

        result = distill(
            cfg,
            out_dir,
            resume=resume,
            device=device,
            cache_dir=cache_dir,
            on_step=on_step,
            on_cache=on_cache,
        )
    if result["eval"]:  # rank 0: the held-out curve as a figure beside the metrics
        from anatomy.distill.train import read_metrics
        from anatomy.figures.distill import draw_training_curves, prepare_training_curves
        from anatomy.figures.style import save_figure

        frame = prepare_training_curves({out_dir.name: read_metrics(out_dir)})
        save_figure(draw_training_curves(frame), out_dir / "figures" / "training.png")
    if as_json:
        print_json(result)
        return
    last = result["eval"]
    if last:
        out.print(
            f"{out_dir}: {result['config']['steps']} steps; held-out token cosine {last['eval_token_cosine']:.4f}, "
            f"pooled {last['eval_pooled_cosine']:.4f}, kNN@10 overlap {last['eval_knn_overlap10']:.3f}",
            highlight=False,
        )
        out.print(
            f"student: student:{out_dir / 'checkpoints' / 'best'} (best) and .../latest", highlight=False
        )


@command("export")
def export_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory written by anatomy distill (or a student directory).")
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="litetext (SAM3-LiteText checkpoint) | open_clip (local dir).")
    ],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="litetext: a .pt/.safetensors file; open_clip: a directory.")
    ],
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint of the run: best | latest.")] = "best",
    as_json: JsonOpt = False,
) -> None:
    """Export a distilled student in the LiteText checkpoint layout or as an open_clip local directory."""
    from anatomy.distill.export import export

    summary = export(run_dir, fmt, out_path, checkpoint)
    if as_json:
        print_json(summary)
        return
    line = f"{summary['source']} -> {summary['out']} ({summary['format']}, {summary['keys']} tensors)"
    out.print(line + (f"; load it as {summary['load_as']}" if summary["load_as"] else ""), highlight=False)


@command("ablate")
def ablate_cmd(
    corpus: Annotated[Path, typer.Option(help="Corpus Parquet file (anatomy ingest).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder: runs/, cache/, results/, figures/.")
    ],
    teacher: Annotated[str, typer.Option(help="Teacher encoder spec.")] = "minilm",
    student: Annotated[
        str, typer.Option(help="s0 | s1 | l, or a JSON config with layers, width, heads.")
    ] = "s0",
    budget: Annotated[int, typer.Option(help="Optimizer steps per variant.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 64,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate at batch 512 (default: the student's).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Use a seeded sample of this many distinct prompts.")
    ] = None,
    eval_size: Annotated[int, typer.Option(help="Held-out prompts.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed for the split, data order and initial weights.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The loss ablation (MSE / +cosine / +consistency) and context ablation (8/16/32) on a small budget."""
    from rich.table import Table

    from anatomy.distill.ablate import ablate
    from anatomy.figures.distill import draw_ablation, prepare_ablation
    from anatomy.figures.style import save_figure
    from anatomy.io import write_result

    def on_run(i: int, n: int, name: str) -> None:
        if not quiet:
            err.print(f"[{i + 1}/{n}] {name}", highlight=False)

    params = {"teacher": teacher, "student": student, "budget": budget, "batch_size": batch_size, "lr": lr,
              "limit": limit, "eval_size": eval_size, "seed": seed}  # fmt: skip
    result = ablate(
        teacher, corpus, out_dir, student=student, budget=budget, batch_size=batch_size, lr=lr, limit=limit,
        eval_size=eval_size, seed=seed, device=device, on_run=on_run,
    )  # fmt: skip
    write_result(out_dir, "ablation", result, command="ablate", params=params, inputs={"corpus": corpus})
    save_figure(draw_ablation(prepare_ablation(result)), out_dir / "figures" / "ablation.png")
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
            f"{r['pooled_cosine_full']:.4f}", f"{r['knn_overlap10_full']:.3f}",
        )  # fmt: skip
    out.print(table)
    out.print(
        f"results: {out_dir / 'results' / 'ablation.json'}; figure: {out_dir / 'figures' / 'ablation.png'}"
    )


# ----------------------------------------------------------------------------------------------- audit

_MARK_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "info": "cyan"}


def _print_findings(findings, out_dir: Path) -> None:
    """spaCy `debug data` style: a rule per section, one marked line per finding, then the counts."""
    from anatomy.findings import MARK_SYMBOLS, counts

    section = None
    for f in findings:
        if f.section != section:
            section = f.section
            out.rule(f"[bold]{section}[/]", align="left")
        style = _MARK_STYLE[f.mark]
        out.print(f"[{style}]{MARK_SYMBOLS[f.mark]}[/] {f.line()}", highlight=False, soft_wrap=True)
    total = counts(findings)
    out.rule()
    out.print(", ".join(f"[{_MARK_STYLE[m]}]{n} {m}[/]" for m, n in total.items()), highlight=False)
    out.print(f"report: {out_dir / 'index.html'} and {out_dir / 'report.md'}", highlight=False)


def _findings_json(result) -> dict:
    from anatomy.findings import as_data, counts

    return {
        "out": str(result.out_dir),
        "counts": counts(result.findings),
        "findings": as_data(result.findings),
        "report": {"html": str(result.out_dir / "index.html"), "markdown": str(result.out_dir / "report.md")},
    }


@command("audit")
def audit_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Prompt files (source detected), builtin:NAME, or one corpus .parquet. Default: builtin:imagenet-prompts."
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Audit directory (created; reruns overwrite).")
    ] = Path("audit-out"),
    encoders: Annotated[
        list[str] | None,
        typer.Option("--encoder", "-e", help="Encoder spec to analyse (repeatable). Default: minilm."),
    ] = None,
    teacher: Annotated[
        str | None, typer.Option(help="Teacher encoder spec (with --student: agreement).")
    ] = None,
    student: Annotated[
        str | None, typer.Option(help="Student encoder spec (with --teacher: agreement).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Reader for every input (lvis|refcoco|saco|rf100vl|text|builtin); default: detected."
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(min=50, help="Prompts for the output analyses (dims, robustness, agreement)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for every sampling step.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole study on a corpus: ingest, tokens, per-encoder analyses, findings and an HTML report.

    Exits 1, after writing everything, when a finding is a failure (unreadable input, encoder not loaded).
    """
    from anatomy.audit import AuditConfig, run_audit

    cfg = AuditConfig(
        inputs=tuple(inputs or ()),
        source=source,
        encoders=tuple(encoders or ()),
        teacher=teacher,
        student=student,
        sample=sample,
        seed=seed,
        device=device,
        quiet=quiet,
    )
    progress = None if quiet else (lambda msg: err.print(f"[dim]audit:[/] {msg}", highlight=False))
    result = run_audit(cfg, out_dir, progress=progress)
    if as_json:
        print_json(_findings_json(result))
    else:
        _print_findings(result.findings, out_dir)
    if result.failed:
        raise typer.Exit(1)


@command("report")
def report_cmd(
    audit_dir: Annotated[
        Path, typer.Argument(help="An audit directory (from `anatomy audit` or `make reports`).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Rebuild findings, report.md and index.html from the results in an audit directory."""
    from anatomy.audit import finish
    from anatomy.errors import InputError

    if not audit_dir.is_dir():
        raise InputError(f"{audit_dir}: not a directory", "give the --out folder of `anatomy audit`")
    result = finish(audit_dir)
    if as_json:
        print_json(_findings_json(result))
    else:
        _print_findings(result.findings, audit_dir)


from anatomy.cost.cli import cost_cmd  # noqa: E402

command("cost")(cost_cmd)
