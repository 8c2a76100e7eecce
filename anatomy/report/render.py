"""Render an output folder's record into report.md and a self-contained index.html (figures as data URIs).

Both are built from the same list of sections, so they always say the same thing. Nothing here computes or
names an analysis: each registered analysis gives its section's rows (paper_rows, tables) from its typed
result, and every scalar of its results JSON goes into a collapsed "all numbers" table. Output is
deterministic (no timestamps), so a rerun on the same results gives the same bytes.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.analysis.base import Table
from anatomy.findings import MARK_SYMBOLS, Finding, counts
from anatomy.io import write_text
from anatomy.report.record import FolderRecord, GroupRecord

# Keys that are bulky or not numbers a reader compares; the "all numbers" tables leave them out.
_SKIP_KEYS = {"params", "provenance", "histogram", "top_tokens", "matrix", "similarity", "curve", "values",
              "cumulative", "singular_values", "block_means", "paper", "conventions", "method"}  # fmt: skip
_MAX_FLAT_ROWS = 120
# The corpus section lists at most this many subsets per source (the full table is in the results JSON).
MAX_SUBSETS_SHOWN = 12


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # paths relative to the output folder
    details: list[Table] = field(default_factory=list)  # collapsed in HTML ("all numbers")
    level: int = 2


def fmt(value: Any, kind: str = "") -> str:
    """One number format for both outputs: shares as percentages, large counts with separators."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if kind == "pct":
            return f"{100 * value:.1f}%"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of a results dict as (dotted key, formatted value), bulky keys left out."""
    rows: list[tuple[str, str]] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key in _SKIP_KEYS:
                continue
            rows += flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, (list, tuple)):
        if len(data) <= 8 and all(isinstance(v, (int, float, str)) for v in data):
            rows.append((prefix, ", ".join(fmt(v) for v in data)))
    elif data is not None:
        rows.append((prefix, fmt(data)))
    return rows[:_MAX_FLAT_ROWS]


# ------------------------------------------------------------------------------------------------ sections


def findings_section(findings: Sequence[Finding]) -> Section:
    total = counts(findings)
    summary = ", ".join(f"{n} {mark}" for mark, n in total.items() if n)
    rows = [[f"{MARK_SYMBOLS[f.mark]} {f.mark}", f.message, f.action] for f in findings]
    return Section("Findings", [summary or "no findings"], [Table(["mark", "finding", "what to do"], rows)])


def corpus_section(corpus: Mapping[str, Any]) -> Section:
    sec = Section("Corpus")
    if corpus.get("distinct_prompts") is not None:
        sec.text.append(
            f"{fmt(corpus.get('rows'))} rows, {fmt(corpus['distinct_prompts'])} distinct prompts, "
            f"{fmt(corpus.get('occurrences'))} occurrences (corpus file {corpus.get('path', '?')})."
        )
    per_source = []
    subsets = []
    for source, entry in corpus.get("sources", {}).items():
        items = list(entry.get("subsets", {}).items())
        per_source.append([source, fmt(len(items)), fmt(entry.get("rows"))])
        ranked = sorted(items, key=lambda kv: (-kv[1], kv[0]))
        subsets += [[source, subset, fmt(n)] for subset, n in ranked[:MAX_SUBSETS_SHOWN]]
        if len(items) > MAX_SUBSETS_SHOWN:
            rest = sum(n for _, n in ranked[MAX_SUBSETS_SHOWN:])
            subsets.append([source, f"… {len(items) - MAX_SUBSETS_SHOWN} more subsets", fmt(rest)])
    if per_source:
        sec.tables.append(Table(["source", "subsets", "rows"], per_source))
        sec.tables.append(Table(["source", "subset", "rows"], subsets,
                                f"the largest {MAX_SUBSETS_SHOWN} subsets per source; `anatomy corpus` lists all"))  # fmt: skip
    files = [
        [f["input"], fmt(f.get("read")), fmt(f.get("kept")), fmt(f.get("merged")), fmt(f.get("skipped"))]
        for f in corpus.get("files", [])
    ]
    files += [[f["input"], "unreadable: " + f["error"], "", "", ""] for f in corpus.get("failed", [])]
    if files:
        sec.tables.append(Table(["input", "read", "kept", "merged", "skipped"], files, "records per input"))
    return sec


def analysis_section(name: str, result: Any, figures: Sequence[str], level: int) -> Section:
    """One analysis's section: our numbers beside the study's, its own tables, its figures, all numbers."""
    from anatomy.analysis import ANALYSES

    analysis = ANALYSES[name]
    sec = Section(analysis.title, figures=list(figures), level=level)
    rows = analysis.paper_rows(result)
    if rows:
        sec.tables.append(Table(["measure", "ours", "paper", "paper: where"],
                                [[r.measure, r.ours, r.paper, r.source] for r in rows]))  # fmt: skip
    sec.tables += analysis.tables(result)
    flat = flatten(result.to_json())
    if flat:
        sec.details.append(Table(["key", "value"], [list(r) for r in flat], f"all numbers: {name}.json"))
    return sec


def _error_lines(group: GroupRecord) -> list[str]:
    lines = [f"✘ {stage} failed: {e.error}" + (f" (hint: {e.hint})" if e.hint else "")
             for stage, e in group.errors.items()]  # fmt: skip
    return lines + [f"{name}: not applicable ({why})" for name, why in group.not_applicable.items()]


def group_sections(title: str, group: GroupRecord) -> list[Section]:
    """An encoder or the teacher-student pair: a heading, its failures, then one sub-section per analysis."""
    head = Section(title, _error_lines(group))
    subs = [analysis_section(n, r, group.figures.get(n, []), 3) for n, r in group.results.items()]
    return [head, *subs]


def build_sections(record: FolderRecord, findings: Sequence[Finding]) -> list[Section]:
    sections = [findings_section(findings), corpus_section(record.corpus)]
    corpus_lines = _error_lines(record.analyses)
    if corpus_lines:
        sections.append(Section("Corpus analyses", corpus_lines))
    for name, result in record.analyses.results.items():
        sections.append(analysis_section(name, result, record.analyses.figures.get(name, []), 2))
    for enc in record.encoders:
        sections += group_sections(f"Encoder {enc.spec}", enc)
    if record.pair is not None:
        sections += group_sections(f"Student vs teacher: {record.pair.spec}", record.pair)
    if record.versions:
        sections.append(Section("Provenance",
                                tables=[Table(["package", "version"], [[k, v] for k, v in sorted(record.versions.items())])]))  # fmt: skip
    return sections


# ---------------------------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return lines + [""]


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    lines = [f"# {title}", ""]
    for sec in sections:
        lines += ["#" * sec.level + f" {sec.title}", ""]
        for para in sec.text:
            lines += [para, ""]
        for table in sec.tables:
            lines += _md_table(table)
        for fig in sec.figures:
            lines += [f"![{Path(fig).stem}]({fig})", ""]
        for table in sec.details:
            lines += ["<details><summary>" + html.escape(table.caption) + "</summary>", ""]
            lines += _md_table(Table(table.columns, table.rows)) + ["</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


# -------------------------------------------------------------------------------------------------- html

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1080px;margin:2em auto;padding:0 1em;color:#1d2430}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #dde2ea;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}th,td{border:1px solid #dde2ea;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f8}caption{caption-side:top;text-align:left;color:#5a6474;font-style:italic;padding:.2em 0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.mark-ok{color:#1a7f37}.mark-warn{color:#9a6700}.mark-fail{color:#cf222e}.mark-info{color:#0969da}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eef0f4}figcaption{color:#5a6474;font-size:.9em}
details{margin:.5em 0}summary{cursor:pointer;color:#5a6474}nav a{margin-right:1em}
""".strip()


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    # right-align a column only where every cell in it is a number (mixed columns read better left-aligned)
    numeric = [
        i > 0 and bool(table.rows) and all(_looks_numeric(str(r[i])) for r in table.rows if i < len(r))
        for i in range(len(table.columns))
    ]
    body = []
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            text = html.escape(str(cell))
            if table.columns[0] == "mark" and i == 0:
                mark = str(cell).split()[-1]
                cells.append(f'<td class="mark-{html.escape(mark)}">{text}</td>')
            elif i < len(numeric) and numeric[i]:
                cells.append(f'<td class="num">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("%", "").replace(".", "").replace("-", "").replace("–", "")
    return stripped.isdigit()


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def to_html(title: str, sections: Sequence[Section], root: Path) -> str:
    anchors: list[str] = []
    seen: dict[str, int] = {}
    for sec in sections:  # unique ids: several encoders have sections of the same title
        base = _anchor(sec.title)
        seen[base] = seen.get(base, 0) + 1
        anchors.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    nav = " ".join(
        f'<a href="#{a}">{html.escape(s.title)}</a>'
        for s, a in zip(sections, anchors, strict=True)
        if s.level == 2
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<nav>{nav}</nav>",
    ]
    for sec, anchor in zip(sections, anchors, strict=True):
        parts.append(f'<h{sec.level} id="{anchor}">{html.escape(sec.title)}</h{sec.level}>')
        parts += [f"<p>{html.escape(p)}</p>" for p in sec.text]
        parts += [_html_table(t) for t in sec.tables]
        for fig in sec.figures:
            path = root / fig
            if not path.exists():  # a figure the analysis did not write: say so rather than a broken image
                parts.append(f"<p>(figure {html.escape(fig)} is missing)</p>")
                continue
            parts.append(
                f'<figure><img src="{_data_uri(path)}" alt="{html.escape(Path(fig).stem)}">'
                f"<figcaption>{html.escape(fig)}</figcaption></figure>"
            )
        for table in sec.details:
            parts.append(
                f"<details><summary>{html.escape(table.caption)}</summary>{_html_table(table)}</details>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(
    out_dir: str | Path, record: FolderRecord, findings: Sequence[Finding], title: str | None = None
) -> dict[str, Path]:
    """Write OUT/report.md and OUT/index.html; return their paths."""
    out_dir = Path(out_dir)
    title = title or record.title or "Prompt anatomy audit"
    sections = build_sections(record, findings)
    md = write_text(out_dir / "report.md", to_markdown(title, sections))
    page = write_text(out_dir / "index.html", to_html(title, sections, out_dir))
    return {"markdown": md, "html": page}
