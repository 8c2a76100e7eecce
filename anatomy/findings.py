"""Findings: the audit's verdicts, one line each, in the style of spaCy's `debug data`.

Each finding has a mark (ok / warn / fail / info), the number behind it, and what to do. Each analysis
computes its own findings from its typed result (Analysis.findings, with its thresholds as named constants in
its module); this module holds the Finding type and the findings that belong to no analysis: the corpus and
stages that failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# Share of all corpus records skipped at ingest above which the corpus itself is suspect (below: info).
SKIPPED_WARN = 0.01

MARKS = ("ok", "warn", "fail", "info")
MARK_SYMBOLS = {"ok": "✔", "warn": "⚠", "fail": "✘", "info": "ℹ"}


@dataclass(frozen=True)
class Finding:
    mark: str  # ok | warn | fail | info
    section: str  # "corpus", "tokens", "encoder:<slug>", "pair"
    key: str  # stable identifier, e.g. "tokens.context"
    message: str  # what we measured, with the number in it
    value: float | int | str | None = None  # the number behind it
    action: str = ""  # what to do; empty when nothing is needed

    def line(self) -> str:
        return f"{self.message}: {self.action}" if self.action else self.message


def as_data(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    totals = dict.fromkeys(MARKS, 0)
    for f in findings:
        totals[f.mark] += 1
    return totals


def pct(x: float | None) -> str:
    """A share as a percentage, with one decimal below 10%."""
    if x is None:
        return "–"
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


def corpus_findings(corpus: Mapping[str, Any]) -> list[Finding]:
    """From the audit's corpus record: {"distinct_prompts", "sources", "files": [...], "failed": [...]}."""
    found = []
    for failure in corpus.get("failed", []):
        found.append(Finding(
            "fail", "corpus", "corpus.unreadable", f"{failure['input']} could not be read ({failure['error']})",
            failure["input"], failure.get("hint") or "fix or remove this input; the audit continued without it",
        ))  # fmt: skip
    read = sum(f.get("read", 0) for f in corpus.get("files", []))
    skipped = sum(f.get("skipped", 0) for f in corpus.get("files", []))
    for f in corpus.get("files", []):
        if not f.get("skipped"):
            continue
        reasons = ", ".join(f"{r} ({e['count']:,})" for r, e in sorted(f.get("skips", {}).items()))
        share = f["skipped"] / max(f.get("read", 0), 1)
        found.append(Finding(
            "warn" if share > SKIPPED_WARN else "info", "corpus", "corpus.skipped",
            f"{f['skipped']:,} of {f['read']:,} records in {f['input']} skipped: {reasons}", f["skipped"],
            "see corpus.manifest.json for examples of each reason",
        ))  # fmt: skip
    n_sources = len(corpus.get("sources", {}))
    if corpus.get("distinct_prompts"):
        kept = f" ({read - skipped:,} of {read:,} records kept)" if read else ""
        found.append(Finding(
            "ok", "corpus", "corpus.size",
            f"{corpus['distinct_prompts']:,} distinct prompts from {n_sources} source{'s' * (n_sources != 1)}{kept}",
            corpus["distinct_prompts"],
        ))  # fmt: skip
    return found


def stage_failed(section: str, what: str, stage: str, error: str, hint: str | None = None,
                 command: str | None = None) -> Finding:  # fmt: skip
    """A stage that failed (an encoder that would not load, an analysis that raised); the rest went on.

    command: the `anatomy` command that runs the stage on its own, where there is one (an analysis, `check`);
    without it the action names no command (a stage such as "pair" has none)."""
    if stage == "load":
        message = f"encoder {what} could not be loaded ({error}); its sections were skipped"
        action = hint or "check the encoder spec and its weights (`anatomy encoders` lists the kinds)"
    else:
        message = f"{stage} failed for {what} ({error}); its section was skipped"
        detail = f"run `anatomy -v {command}` on it for details" if command else "rerun with -v for details"
        action = hint or f"{detail}; the other sections completed"
    return Finding(
        "fail", section, f"{stage}.failed" if stage != "load" else "encoder.load", message, what, action
    )
