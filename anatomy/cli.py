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

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
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
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
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
    paths: Annotated[list[str], typer.Argument(help="Files or directories; '-' reads stdin; builtin:NAME for built-in sets.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Corpus Parquet file (created, or merged into).")],
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
            err.print(f"{f.input}: already in {out_path.name} (same sha256); nothing changed") if not quiet else None
            continue
        line = f"{f.input}: read {f.read:,}, kept {f.kept:,}, merged {f.merged:,} duplicates, skipped {f.skipped:,}"
        out.print(line, highlight=False)
        for reason, entry in f.skips.items():
            err.print(f"  skipped {entry['count']:,}: {reason} (e.g. {entry['examples'][0]})", highlight=False)
    out.print(f"{out_path}: {report.n_rows:,} rows, {report.n_distinct_prompts:,} distinct prompts", highlight=False)


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
    out.print(f"distinct prompts overall: {summary['distinct_prompts']:,} (occurrences {summary['occurrences']:,})")
