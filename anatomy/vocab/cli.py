"""`anatomy vocab`: build a specialised vocabulary from a corpus and measure what it saves and risks."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from anatomy.vocab import IMAGENET


def _parse_curve(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a comma-separated list of integers, e.g. 1,2,5") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"min-count values must be positive integers, got '{text}'")
    return values


def run_vocab(corpus: Path, out_dir: Path, params, progress=lambda _m: None):
    """compute_vocab, then DIR/results/vocab.json, DIR/figures/vocab_*.png and last DIR/vocab.json."""
    from anatomy.analysis.vocab import ANALYSIS, compute_vocab
    from anatomy.figures.style import save_figure
    from anatomy.io import write_result
    from anatomy.vocab.store import save

    result = compute_vocab(corpus, params, progress)
    inputs = {"corpus": corpus} | {
        f"held_out:{Path(s).name}": s for s in params.held_out if not s.startswith("builtin:") and s != "-"
    }
    write_result(out_dir, "vocab", result.to_json(), command="vocab", params=asdict(params), inputs=inputs)
    for stem, fig in ANALYSIS.figures(result).items():
        save_figure(fig, out_dir / "figures" / f"{stem}.png")
    save(result.vocabulary, out_dir)
    return result


def vocab_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus Parquet file (from `anatomy ingest`).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (vocab.json, results/, figures/).")
    ],
    tokenizer: Annotated[
        str,
        typer.Option("--tokenizer", help="clip (CLIP BPE) or a WordPiece encoder spec (minilm, hf:PATH)."),
    ] = "clip",
    min_count: Annotated[
        int, typer.Option("--min-count", min=1, help="Keep only words seen in at least N prompts.")
    ] = 1,
    held_out: Annotated[
        list[str] | None,
        typer.Option(
            "--held-out",
            help=f"Held-out prompt file (txt/csv/jsonl/json) or builtin:NAME; "
            f"repeatable; {IMAGENET} is always measured.",
        ),
    ] = None,  # fmt: skip
    folds: Annotated[int, typer.Option("--folds", min=2, max=100, help="Folds of the k-fold by prompt.")] = 5,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the k-fold split.")] = 0,
    width: Annotated[
        int, typer.Option("--width", min=1, help="A custom student width for the savings.")
    ] = 256,
    curve: Annotated[
        str, typer.Option("--curve", help="Min-count values of the trade-off curve, comma-separated.")
    ] = "1,2,3,5,10",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """A vocabulary holding only the tokens CORPUS uses (exact on it, never unknown elsewhere): its size,
    the parameters it saves per student body, and the long-tail risk on prompts it never saw."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from anatomy.analysis.vocab import ANALYSIS
    from anatomy.io import dumps_json

    extra = tuple(h for h in (held_out or []) if h != IMAGENET)
    params = ANALYSIS.params_from(
        {
            "tokenizer": tokenizer,
            "min_count": min_count,
            "folds": folds,
            "seed": seed,
            "width": width,
            "held_out": (IMAGENET, *extra),
            "curve": _parse_curve(curve),
        }  # fmt: skip
    )
    err = Console(stderr=True)
    result = run_vocab(
        corpus, out_dir, params, (lambda m: None) if quiet else (lambda m: err.print(escape(m)))
    )
    if as_json:
        typer.echo(dumps_json(result.to_json()), nl=False)
        return
    out = Console()
    for table in ANALYSIS.tables(result):
        shown = Table(title=table.caption)
        for col in table.columns:
            shown.add_column(col)
        for row in table.rows:
            shown.add_row(*map(escape, row))
        out.print(shown)
    for line in ANALYSIS.summary(result):
        out.print(escape(line), highlight=False, soft_wrap=True)
    out.print(f"{escape(str(out_dir / 'vocab.json'))}: {result.kept:,} tokens", highlight=False)
