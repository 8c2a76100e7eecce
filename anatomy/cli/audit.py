"""`anatomy audit` and `anatomy report`: the whole study on a corpus, and its report rebuilt from results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.text import Text

from anatomy.cli.common import DeviceOpt, JsonOpt, QuietOpt, check_out_dir, out, print_json, say
from anatomy.corpus.sources import READERS

if TYPE_CHECKING:
    from anatomy.audit import AuditResult

_MARK_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "info": "cyan"}


def _print_findings(findings, out_dir: Path) -> None:
    """spaCy `debug data` style: a rule per section, one marked line per finding, then the counts."""
    _print_findings_only(findings)
    out.print(f"report: {out_dir / 'index.html'} and {out_dir / 'report.md'}")


def _print_findings_only(findings) -> None:
    from anatomy.findings import MARK_SYMBOLS, counts

    section = None
    for f in findings:
        if f.section != section:
            section = f.section
            out.rule(Text(section, style="bold"), align="left")
        out.print(Text.assemble((MARK_SYMBOLS[f.mark], _MARK_STYLE[f.mark]), " ", f.line()))
    total = counts(findings)
    out.rule()
    out.print(Text(", ").join(Text(f"{n} {m}", style=_MARK_STYLE[m]) for m, n in total.items()))


def _findings_json(result: AuditResult) -> dict[str, Any]:
    from anatomy.findings import as_data, counts

    return {
        "out": str(result.out_dir),
        "counts": counts(result.findings),
        "findings": as_data(result.findings),
        "report": {"html": str(result.out_dir / "index.html"), "markdown": str(result.out_dir / "report.md")},
    }


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
        Literal[tuple(READERS)] | None,  # type: ignore[valid-type]
        typer.Option(help="Reader for every input (" + "|".join(READERS) + "); default: detected."),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Sample size of every analysis that samples (its Params field marked 'sample'; "
            "each checks its own range). Default: each analysis's own.",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(min=0, max=2**32 - 1, help="Seed of every analysis (its Params field marked 'seed')."),
    ] = 0,
    analysis: Annotated[
        list[str] | None,
        typer.Option(
            "--analysis", "-a", help="Run only these analyses (repeatable; default: all of the audit's)."
        ),
    ] = None,
    device: DeviceOpt = None,
    against: Annotated[
        Path | None,
        typer.Option(help="Also check the inputs, as a live log, against this deployment (DIR/check)."),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole study on a corpus: ingest, tokens, per-encoder analyses, findings and an HTML report.

    Exits 1, after writing everything, when a finding is a failure (unreadable input, encoder not loaded).
    """
    from anatomy.audit import AuditConfig, run_audit
    from anatomy.errors import InputError

    check_out_dir(out_dir)
    overrides = {"seed": seed} | ({"sample": sample} if sample else {})
    cfg = AuditConfig(
        inputs=tuple(inputs or ()), source=source, encoders=tuple(encoders or ()), teacher=teacher,
        student=student, analyses=tuple(analysis or ()), overrides=overrides, device=device,
        against=str(against) if against else None,
    )  # fmt: skip
    cfg.check()  # --teacher without --student (or the reverse): a usage error (OptionError, exit 2)
    try:  # unknown analyses and values outside an analysis's ranges are usage errors, found before any work
        for selected in cfg.selected():
            cfg.params_for(selected)
    except InputError as error:
        raise typer.BadParameter(error.message + (f" ({error.hint})" if error.hint else "")) from None
    if against is not None:  # a folder that is no deployment fails here (exit 1), not after the audit's work
        from anatomy.monitor.record import read_deployment

        read_deployment(against)
    progress = say(quiet)
    result = run_audit(cfg, out_dir, progress=progress)
    if as_json:
        print_json(_findings_json(result))
    else:
        _print_findings(result.findings, out_dir)
    if result.failed:
        raise typer.Exit(1)


def report_cmd(
    audit_dir: Annotated[
        Path, typer.Argument(help="An audit directory (from `anatomy audit` or `make reports`).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Rebuild findings, report.md and index.html from the results in an audit directory."""
    from anatomy.audit import finish, refuse_other_output
    from anatomy.errors import InputError

    if not audit_dir.is_dir():
        raise InputError(f"{audit_dir}: not a directory", "give the --out folder of `anatomy audit`")
    refuse_other_output(audit_dir, "audit")  # a specialise bill is rebuilt by `anatomy specialise`
    result = finish(audit_dir)
    if as_json:
        print_json(_findings_json(result))
    else:
        _print_findings(result.findings, audit_dir)
