"""`anatomy check LOG... --against DIR --out OUT`: a live prompt log against what DIR deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from anatomy.cli.common import JsonOpt, QuietOpt, check_device, check_out_dir, print_json, say
from anatomy.cli.corpus import CountColumnOpt, CountFieldOpt, TimeColumnOpt, TimeFieldOpt, read_options


def check_cmd(
    logs: Annotated[list[str], typer.Argument(help="Prompt logs (txt, csv, tsv, jsonl; '-' for stdin) or one corpus .parquet.")],
    against: Annotated[Path, typer.Option("--against", help="What is deployed: a student run (`anatomy distill --out`) or an audit folder.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (results/check.json, add_to_training.csv).")],
    column: Annotated[str | None, typer.Option(help="csv/tsv: the column holding prompts.")] = None,
    field: Annotated[str | None, typer.Option(help="jsonl: the field holding prompts.")] = None,
    count_column: CountColumnOpt = None,
    count_field: CountFieldOpt = None,
    time_column: TimeColumnOpt = None,
    time_field: TimeFieldOpt = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the logs.")] = "utf-8",
    period: Annotated[Literal["day", "week"], typer.Option(help="Period of the per-period figures (timestamped logs).")] = "week",
    sample: Annotated[int | None, typer.Option(min=30, max=1_000_000, help="Log prompts in the quality sample (default: the run's held-out size; a cosine verdict needs 30, kNN@10 21).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the quality sample.")] = 0,
    top: Annotated[int, typer.Option(min=0, max=10_000_000, help="Uncovered prompts written to add_to_training.csv.")] = 1000,
    backend: Annotated[Literal["auto", "numpy", "faiss"], typer.Option(help="Nearest-neighbour search (auto: faiss when installed).")] = "auto",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:  # fmt: skip
    """Check a prompt log against a deployed student: tokenization, coverage, quality, drift; a verdict per check.

    Exits 1, after writing everything, when a check fails.
    """
    from anatomy.cli.audit import _print_findings_only
    from anatomy.monitor.check import ADD_FILE, CheckConfig, run_check

    check_out_dir(out_dir)
    options = read_options(False, column, field, encoding, count_column, count_field, time_column, time_field)
    cfg = CheckConfig(
        sample=sample, seed=seed, period=period, backend=backend, top=top, device=check_device(device)
    )
    result = run_check(logs, against, out_dir, options, cfg, progress=say(quiet))
    if as_json:
        from anatomy.findings import as_data, counts

        print_json({"out": str(out_dir), "counts": counts(result.findings), "findings": as_data(result.findings),
                    "add_to_training": str(out_dir / ADD_FILE), "added": result.added})  # fmt: skip
    else:
        _print_findings_only(result.findings)
        from anatomy.cli.common import out

        out.print(
            f"results: {out_dir / 'results' / 'check.json'}; {result.added:,} prompts to add: {out_dir / ADD_FILE}"
        )
    if result.failed:
        raise typer.Exit(1)
