"""`anatomy encoders` and `anatomy embed`: the architectures, and a corpus's embeddings cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from anatomy.cli.common import (
    CorpusOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    check_out_dir,
    echo,
    err,
    no_empty_folders_on_failure,
    out,
    print_json,
    print_table,
    progress_bar,
)
from anatomy.paper import STUDENT_CONTEXT


def encoders_cmd(
    context: Annotated[
        int,
        typer.Option("--context", min=2, max=4096, help="Context length of the students' positional tables."),
    ] = STUDENT_CONTEXT,
    vocab: Annotated[
        Path | None,
        typer.Option(
            "--vocab",
            help="A vocabulary (DIR or DIR/vocab.json from `anatomy vocab`): also show each student body "
            "with only its kept rows, and the parameters that saves.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The teacher and student architectures with parameter breakdowns (no weights needed)."""
    from rich.table import Table

    from anatomy.encoders.registry import describe_all

    rows = describe_all(context)
    if vocab is not None:
        rows += specialised_rows(vocab, context)
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
        if "saved_parameters" in row:
            share = row["saved_parameters"] / row["full_parameters"]
            table.add_row(
                f"saved vs {row['original_vocab']:,} rows", f"{row['saved_parameters']:,} ({share:.1%})"
            )
        print_table(table)


def specialised_rows(vocab: Path, context: int) -> list[dict]:
    """Each LiteText body with the vocabulary's kept rows only, beside the same body with every row."""
    from anatomy.encoders.mobileclip import KINDS, describe
    from anatomy.vocab.store import load

    kept = load(vocab)
    rows = []
    full = describe(tuple(KINDS), context, vocab_size=kept.original_size)
    for body, spec in zip(full, describe(tuple(KINDS), context, vocab_size=kept.size), strict=True):
        rows.append(
            {
                "name": f"{spec['name']} specialised ({kept.size:,} of {kept.original_size:,} tokens, {kept.tokenizer})",
                "parameters": spec["parameters"],
                "context_length": context,
                "components": spec["components"],
                "vocab_size": kept.size,
                "original_vocab": kept.original_size,
                "full_parameters": body["parameters"],
                "saved_parameters": body["parameters"] - spec["parameters"],
            }
        )
    return rows


def embed_cmd(
    corpus: CorpusOpt,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Embeddings directory (default: embeddings/<encoder> beside the corpus, "
            "where the analyses look for it; reused when current).",
        ),
    ] = None,
    encoder: Annotated[
        str, typer.Option("--encoder", "-e", help="Encoder spec (see `anatomy encoders`).")
    ] = "minilm",
    context: Annotated[
        int | None,
        typer.Option("--context", min=2, max=4096, help="Context length (default: the encoder's)."),
    ] = None,
    dtype: Annotated[Literal["fp32", "bf16"], typer.Option(help="fp32 or bf16.")] = "fp32",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=65536, help="Prompts per forward pass.")
    ] = 256,
    per_token: Annotated[
        bool, typer.Option("--per-token", help="Also keep per-token outputs (tokens.npy).")
    ] = False,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pooled (and optionally per-token) embeddings of every corpus row; resumes after a kill; torchrun shards."""
    from anatomy.embed import embed_corpus
    from anatomy.embed_store import default_cache
    from anatomy.encoders.family import ContextError
    from anatomy.errors import OptionError

    check_out_dir(out_dir)
    out_dir = out_dir or default_cache(corpus, encoder)
    with no_empty_folders_on_failure(out_dir), progress_bar(quiet) as bar:
        task = bar.add_task(f"embed {encoder}", total=None, status="")

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            result = embed_corpus(
                corpus, encoder, out_dir, context_length=context, dtype=dtype, batch_size=batch_size,
                per_token=per_token, quiet=quiet, device=device, on_progress=on_progress,
            )  # fmt: skip
        except ContextError as error:  # the encoder's positional table bounds --context
            raise OptionError(
                "--context", f"must be in [2, {error.limit}] for {encoder}, got {context}"
            ) from None
    if result.manifest is None:  # a torchrun rank other than 0: its shard is written, rank 0 merges
        if not quiet:
            err.print(f"{out_dir}: shard written; rank 0 merges")
        return
    if as_json:
        print_json(result.manifest)
        return
    m = result.manifest
    state = "reused (encoder and corpus unchanged)" if result.reused else "written"
    out.print(
        f"{out_dir}: {m['rows']:,} rows x {m['dim']} ({m['encoder']['spec']}, context {m['context_length']}, {m['dtype']}) {state}",
    )


def analyses_cmd(
    scope: Annotated[
        Literal["corpus", "encoder", "pair"] | None,
        typer.Option(help="Only the analyses of this scope (where their results live)."),
    ] = None,
    param: Annotated[
        str | None, typer.Option("--param", help="Only the analyses with this parameter.")
    ] = None,
    reads: Annotated[
        Literal["corpus"] | None, typer.Option("--reads", help="Only the analyses that take this input.")
    ] = None,
    names: Annotated[
        bool, typer.Option("--names", help="Names only, one per line (for scripts and make).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The registered analyses: what each needs, where its results go, and what it measures."""
    import dataclasses

    from rich.table import Table

    from anatomy.analysis import ANALYSES
    from anatomy.analysis.runner import reads_corpus
    from anatomy.analysis.runner import scope as scope_of

    known = {f.name for a in ANALYSES.values() for f in dataclasses.fields(a.Params)}
    if param is not None and param not in known:
        raise typer.BadParameter(f"no analysis has a parameter {param!r}; known: {', '.join(sorted(known))}",
                                 param_hint="--param")  # fmt: skip
    rows: list[dict[str, Any]] = [
        {"name": a.name, "scope": scope_of(a), "needs": sorted(n.value for n in a.needs),
         "in_audit": a.in_audit, "description": a.description or a.title}
        for a in ANALYSES.values()
        if (scope is None or scope_of(a) == scope)
        and (param is None or param in {f.name for f in dataclasses.fields(a.Params)})
        and (reads is None or reads_corpus(a))
    ]  # fmt: skip
    if names:
        echo("\n".join(r["name"] for r in rows))
    elif as_json:
        print_json(rows)
    else:
        table = Table()
        for col in ("name", "scope", "needs", "in audit", "what it measures"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["name"],
                r["scope"],
                ", ".join(r["needs"]),
                "yes" if r["in_audit"] else "no",
                r["description"],
            )
        print_table(table)
