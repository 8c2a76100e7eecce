"""`anatomy encoders` and `anatomy embed`: the architectures, and a corpus's embeddings cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anatomy.cli.common import JsonOpt, QuietOpt, err, out, print_json, progress_bar


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
        table.add_row("total", f"{row['parameters']:,}", style="bold", end_section=True)
        out.print(table)


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

    with progress_bar(quiet) as bar:
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
