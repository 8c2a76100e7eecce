"""`anatomy ingest` and `anatomy corpus`: build a corpus from prompt files, and summarise one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.text import Text

from anatomy.cli.common import JsonOpt, QuietOpt, err, out, print_json, print_table
from anatomy.corpus.sources import READERS

CountColumnOpt = Annotated[str | None, typer.Option(help="text: the csv/tsv column holding request counts.")]
CountFieldOpt = Annotated[str | None, typer.Option(help="text: the jsonl field holding request counts.")]
TimeColumnOpt = Annotated[
    str | None, typer.Option(help="text: the csv/tsv column holding timestamps (kept by day).")
]
TimeFieldOpt = Annotated[
    str | None, typer.Option(help="text: the jsonl field holding timestamps (kept by day).")
]


def read_options(synonyms=False, column=None, field=None, encoding="utf-8", count_column=None, count_field=None,
                 time_column=None, time_field=None):  # fmt: skip
    """ReadOptions from the ingest options; a count or time given both as column and field is a usage error."""
    from anatomy.corpus.sources import ReadOptions

    for a, b, name in ((count_column, count_field, "count"), (time_column, time_field, "time")):
        if a and b:
            raise typer.BadParameter(f"give --{name}-column (csv) or --{name}-field (jsonl), not both")
    return ReadOptions(
        synonyms, column, field, encoding, count_column or count_field, time_column or time_field
    )


def ingest_cmd(
    source: Annotated[
        Literal[tuple(READERS)], typer.Argument(help="Reader: " + " | ".join(READERS) + ".")  # type: ignore[valid-type]
    ],
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
    count_column: CountColumnOpt = None,
    count_field: CountFieldOpt = None,
    time_column: TimeColumnOpt = None,
    time_field: TimeFieldOpt = None,
    engine: Annotated[
        Literal["auto", "duckdb", "python"],
        typer.Option(help="text: auto reads large, compressed, globbed and Parquet inputs with DuckDB."),
    ] = "auto",
    memory_limit: Annotated[
        str | None,
        typer.Option(help="DuckDB engine: memory cap, e.g. 2GiB or 25% (default: 25%, at most 8 GiB)."),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Read prompts from SOURCE files into one deduplicated corpus (Parquet) with a manifest beside it."""
    from anatomy.corpus import ingest
    from anatomy.corpus.engine import EngineOptions

    options = read_options(
        synonyms, column, field, encoding, count_column, count_field, time_column, time_field
    )
    given = {"--count-column": count_column, "--count-field": count_field, "--time-column": time_column,
             "--time-field": time_field}  # fmt: skip
    for name, value in given.items():
        if value and source != "text":  # never silently ignored: every count would be 1
            raise typer.BadParameter(
                f"{name} reads csv/jsonl exports: give it with the text source", param_hint=name
            )
    engine_options = EngineOptions(engine, memory_limit, count_column, count_field)
    report = ingest(source, paths, out_path, options, engine_options)
    # the corpus is committed: what follows only reports (a failed print does not change the exit status)
    for f in report.files:
        for warning in f.warnings:  # e.g. prompts of absurd length (a file without line breaks?)
            err.print(Text.assemble(("warning: ", "yellow"), f"{f.input}: {warning}"))
    if as_json:
        print_json(report)
        return
    for f in report.files:
        if f.already_ingested:
            if not quiet:
                err.print(f"{f.input}: already in {out_path.name} (same sha256); nothing changed")
            continue
        out.print(
            f"{f.input}: read {f.read:,}, kept {f.kept:,}, merged {f.merged:,} duplicates, skipped {f.skipped:,}"
        )
        for reason, entry in f.skips.items():
            err.print(f"  skipped {entry['count']:,}: {reason} (e.g. {entry['examples'][0]})")
    out.print(f"{out_path}: {report.n_rows:,} rows, {report.n_distinct_prompts:,} distinct prompts")


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
        table.add_row(source, "all", f"{entry['rows']:,}", style="bold", end_section=True)
    print_table(table)
    out.print(
        f"distinct prompts overall: {summary['distinct_prompts']:,} (occurrences {summary['occurrences']:,})"
    )
