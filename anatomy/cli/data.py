"""`anatomy data ...`: fetch the study's datasets into data/raw, show their state, feed them to ingest.

Registered in anatomy/cli/__init__.py as the `data` group. Importing this module imports no
network library (urllib and huggingface_hub are imported when a fetch runs).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from anatomy.cli.common import check_out_dir, echo, err, fail, guarded, out, print_json, print_table

app = typer.Typer(
    help="The study's datasets: fetch them from their official sources, list them, ingest them.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="The data folder (official layout).")]
DataOpt = Annotated[
    Path, typer.Option("--data", help="A data folder: data/raw (registry layout) or ../shared/data.")
]


def _command(fn):
    """guarded (AnatomyError -> one line, exit 1), and Ctrl-C -> exit 130 with no traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except KeyboardInterrupt:
            err.print("interrupted: partial downloads stay as *.part; run the fetch again to resume")
            raise typer.Exit(130) from None

    return guarded(wrapper)


def _progress_bar(quiet: bool):
    """(rich Progress or None, callback(label, done, total))."""
    if quiet:
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err
    )
    tasks: dict[str, TaskID] = {}

    def on_bytes(label: str, done: int, total: int | None) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    return bar, on_bytes


@app.command("fetch")
@_command
def fetch_cmd(
    names: Annotated[
        list[str] | None, typer.Argument(help="Datasets to fetch (default: all); see `anatomy data list`.")
    ] = None,
    out_dir: OutOpt = Path("data/raw"),
    base_url: Annotated[
        str | None,
        typer.Option(
            help="A mirror laid out as BASE/HOST/PATH for every HTTP source (and the Roboflow API)."
        ),
    ] = None,
    deadline: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=7 * 86400,
            help="Give up on a file after this many seconds (its .part is kept; rerun to resume).",
        ),
    ] = 6 * 3600.0,
    min_rate: Annotated[
        float,
        typer.Option(
            min=0,
            max=1e10,
            help="Give up on a file arriving slower than this many bytes/s over a minute (0: never).",
        ),
    ] = 1024.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download, verify (size, sha256, lock file) and unpack datasets into OUT/<dataset>/."""
    from anatomy.datasets import ops
    from anatomy.datasets.fetch import Limits, check_base_url
    from anatomy.datasets.registry import DataError, select

    check_out_dir(out_dir)
    if base_url is not None:
        check_base_url(base_url)  # OptionError: a usage error (exit 2), before any work
    limits = Limits(deadline, min_rate).check()
    try:
        select(names)  # unknown names fail before any work, as a usage error
    except DataError as error:
        raise typer.BadParameter(f"{error.message} ({error.hint})", param_hint="NAMES") from None
    if out_dir.is_dir():
        from anatomy.datasets.lock import Lock

        Lock(out_dir)  # a lock file that cannot be used fails here, before the progress bar starts
    bar, on_bytes = _progress_bar(quiet)
    if bar is None:
        outcomes = ops.fetch(names, out_dir, base_url, None, limits)
    else:
        with bar:
            outcomes = ops.fetch(names, out_dir, base_url, on_bytes, limits)
    for o in outcomes:
        if o.ok:
            out.print(o.message)
        else:
            fail(o.message, o.hint)
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        err.print(
            f"{len(failed)} of {len(outcomes)} dataset(s) not fetched: {', '.join(failed)}", highlight=False
        )
        raise typer.Exit(1)


@app.command("list")
@_command
def list_cmd(
    out_dir: OutOpt = Path("data/raw"),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
) -> None:
    """Each dataset: present / partial / missing / failed verification, size, licence, access needed."""
    from anatomy.datasets.ops import list_sources

    check_out_dir(out_dir)
    states = list_sources(out_dir)
    if as_json:
        print_json(states)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"datasets in {out_dir}", title_justify="left")
    for column in ("dataset", "state", "files", "size", "licence", "access"):
        table.add_column(column, justify="right" if column in ("files", "size") else "left")
    for s in states:
        colour = {"present": "green", "missing": "yellow", "partial": "yellow"}.get(s.state, "red")
        table.add_row(
            s.name,
            Text.assemble((s.state, colour), (f"\n{s.detail}" if s.detail else "", "dim")),
            str(s.files),
            f"{s.bytes / 1e6:,.1f} MB" if s.bytes else "",
            s.terms,
            "login + accepted terms" if "Hugging Face" in s.needs else ("API key" if s.needs else "open"),
        )
    print_table(table)


@app.command("inputs")
@_command
def inputs_cmd(
    data: DataOpt = Path("data/raw"),
    deps: Annotated[
        bool,
        typer.Option("--deps", help="Print make-safe prerequisite paths (folders for odd names) instead."),
    ] = False,
) -> None:
    """Print `READER<TAB>PATH` for every input present in a data folder (what `data ingest` reads)."""
    from anatomy.datasets.ops import inputs

    check_out_dir(data, "--data")
    found = inputs(data)
    if deps:
        safe = sorted({str(p) if _make_safe(str(p)) else str(p.parent) for _, p in found})
        echo(" ".join(safe))
        return
    for reader, path in found:
        echo(f"{reader}\t{path}")


def _make_safe(path: str) -> bool:
    return not any(c in path for c in " ()#$%:;*?[]\\'\"")


@app.command("ingest")
@_command
def ingest_cmd(
    corpus: Annotated[
        Path, typer.Option("--out", "-o", help="Corpus Parquet file (created, or merged into).")
    ],
    data: DataOpt = Path("data/raw"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the final line.")] = False,
) -> None:
    """Ingest every input present in a data folder with its reader (one `anatomy ingest` per reader)."""
    from anatomy.datasets.ops import ingest_found

    reports = ingest_found(data, corpus)
    for reader, report in reports:
        for f in report.files:
            for warning in f.warnings:
                err.print(f"warning: {f.input}: {warning}")
            if not quiet:
                out.print(f"{reader} {f.input}: read {f.read:,}, kept {f.kept:,}")
    report = reports[-1][1]
    out.print(f"{corpus}: {report.n_rows:,} rows, {report.n_distinct_prompts:,} distinct prompts")
