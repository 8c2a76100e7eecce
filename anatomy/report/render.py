"""Render an audit record into report.md and a self-contained index.html (figures as data URIs).

Both are built from the same list of sections (title, tables, figures), so they always say the same thing.
Nothing here computes numbers: it reads the audit record (see anatomy.audit) and the results it points to.
Output is deterministic (no timestamps), so a rerun on the same results gives the same bytes.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.findings import MARK_SYMBOLS, Finding, block_labels, counts, dig, first, recommended_context
from anatomy.io import write_text
from anatomy.report import paper

# Keys that are bulky or not numbers a reader compares; the "all numbers" tables leave them out.
_SKIP_KEYS = {"params", "provenance", "histogram", "top_tokens", "matrix", "similarity", "curve", "values"}
_MAX_FLAT_ROWS = 120


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # paths relative to the audit directory
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
    rows = []
    for source, entry in corpus.get("sources", {}).items():
        for subset, n in entry.get("subsets", {}).items():
            rows.append([source, subset, fmt(n)])
    if rows:
        sec.tables.append(Table(["source", "subset", "rows"], rows))
    files = [
        [f["input"], fmt(f.get("read")), fmt(f.get("kept")), fmt(f.get("merged")), fmt(f.get("skipped"))]
        for f in corpus.get("files", [])
    ]
    files += [[f["input"], "unreadable: " + f["error"], "", "", ""] for f in corpus.get("failed", [])]
    if files:
        sec.tables.append(Table(["input", "read", "kept", "merged", "skipped"], files, "records per input"))
    return sec


def tokens_sections(tokens: Mapping[str, Any], figures: Sequence[str]) -> list[Section]:
    overall = tokens.get("overall", {})
    sec = Section("Token lengths and the context window", figures=list(figures))
    blocks = {"overall": overall, **tokens.get("sources", {})}
    length_rows = []
    for name, block in blocks.items():
        length = block.get("length", {})
        ref = f"{paper.LENGTH_MEAN}" if name == "overall" else paper.SOURCE_LENGTH_MEAN.get(name, "–")
        length_rows.append(
            [name, fmt(block.get("n_prompts"))]
            + [fmt(length.get(k)) for k in ("mean", "median", "p90", "p99", "max")]
            + [ref]
        )
    sec.tables.append(
        Table(
            ["block", "prompts", "mean", "median", "p90", "p99", "max", "paper mean"],
            length_rows,
            "tokens per prompt, start and end included",
        )
    )
    ctx_rows = []
    for key, row in sorted(overall.get("context", {}).items(), key=lambda kv: int(kv[0])):
        ref = paper.CONTEXT.get(key, {})
        ctx_rows.append(
            [
                key,
                fmt(row.get("density"), "pct"),
                fmt(row.get("padding"), "pct"),
                fmt(row.get("truncation"), "pct"),
                fmt(row.get("token_loss"), "pct"),
                " / ".join(fmt(ref.get(k), "pct") for k in ("padding", "truncation", "token_loss"))
                if ref
                else "–",
            ]
        )
    if ctx_rows:
        sec.tables.append(
            Table(
                [
                    "context",
                    "density",
                    "padding",
                    "truncation",
                    "token loss",
                    "paper: padding / trunc. / loss",
                ],
                ctx_rows,
                f"overall; paper: {paper.PAPER_CORPUS} ({paper.CONTEXT_NOTE})",
            )
        )
    rec = recommended_context(tokens)
    if rec is not None:
        sec.text.append(
            f"Recommended context: {rec['context']} (smallest with token loss and truncation within the limits; "
            f"padding {fmt(rec.get('padding'), 'pct')}, token loss {fmt(rec.get('token_loss'), 'pct')}, "
            f"truncation {fmt(rec.get('truncation'), 'pct')})."
        )
    vocab = overall.get("vocab", {})
    vsec = Section("Vocabulary")
    if vocab:
        vsec.tables.append(
            Table(
                ["measure", "ours", "paper"],
                [
                    ["distinct tokens used", fmt(vocab.get("used")), fmt(paper.VOCAB["used"])],
                    [
                        "vocabulary never used",
                        fmt(vocab.get("unused_share"), "pct"),
                        fmt(paper.VOCAB["unused_share"], "pct"),
                    ],
                    [
                        "top-100 coverage (content tokens / with start and end)",
                        fmt(dig(vocab, "top_k_coverage", "100"), "pct")
                        + " / "
                        + fmt(dig(vocab, "top_k_coverage_with_special", "100"), "pct"),
                        fmt(paper.VOCAB["top_100_coverage"], "pct"),
                    ],
                    [
                        "start/end share (pooled / mean over sources)",
                        fmt(vocab.get("special_share"), "pct")
                        + " / "
                        + fmt(vocab.get("special_share_mean_over_sources"), "pct"),
                        fmt(paper.VOCAB["special_share"], "pct"),
                    ],
                ],
            )
        )
        top = vocab.get("top_tokens") or []
        if top:
            vsec.tables.append(
                Table(["token", "count"], [[str(t), fmt(c)] for t, c in top[:15]], "most frequent tokens")
            )
    return [sec, vsec]


def encoder_section(enc: Mapping[str, Any]) -> Section:
    sec = Section(f"Encoder {enc['spec']}", figures=list(enc.get("figures", [])))
    for stage, error in enc.get("errors", {}).items():
        sec.text.append(
            f"✘ {stage} failed: {error['error']}" + (f" (hint: {error['hint']})" if error.get("hint") else "")
        )
    results = enc.get("results", {})
    rows = encoder_comparisons(results)
    if rows:
        sec.tables.append(
            Table(
                ["measure", "ours", "paper (SAM3 teacher)"],
                rows,
                "the paper's numbers are for SAM3's 1024-wide encoder",
            )
        )
    for name, res in results.items():
        flat = flatten(res)
        if flat:
            sec.details.append(Table(["key", "value"], [list(r) for r in flat], f"all numbers: {name}.json"))
    return sec


def encoder_comparisons(results: Mapping[str, Any]) -> list[list[str]]:
    """Rows of (measure, ours, paper) for the numbers the paper reports for its teacher."""
    rows = []
    pos = results.get("positions")
    if pos:
        n = pos.get("rows_analysed")
        rows.append(
            ["positional: PCA components for 90%", f"{fmt(dig(pos, 'pca', 'n90'))} of {fmt(n)}", "7 of 32"]
        )
        erank = [fmt(dig(pos, "spectrum", c, "erank")) for c in ("uncentred", "centred")]
        rows.append(["positional: effective rank (uncentred / centred)", " / ".join(erank), "20 of 32"])
        within = pos.get("within_block") or []
        labels = block_labels(n or 0, pos.get("block", 8))
        if within:
            rows.append(
                [
                    f"positional similarity within {labels[0]}",
                    fmt(within[0]),
                    str(paper.POSITIONAL["block_0_8"]),
                ]
            )
        if len(within) > 1:
            later = ", ".join(f"{lab}: {fmt(v)}" for lab, v in list(zip(labels, within, strict=False))[1:4])
            rows.append(
                ["positional similarity within later blocks", later, paper.POSITIONAL["block_beyond_8"]]
            )
    spec = results.get("spectrum")
    if spec:
        for subset, key in (("full", "erank_full"), ("used", "erank_used")):
            block = spec.get(subset) or {}
            erank = dig(block, "uncentred", "erank")
            if erank is not None:
                ours = f"{fmt(erank)} of {fmt(block.get('dim'))}"
                rows.append(
                    [
                        f"token embeddings effective rank ({subset})",
                        ours,
                        f"{paper.TOKEN_EMBEDDING[key]} of 1024",
                    ]
                )
        n90 = dig(spec, "full", "uncentred", "n90")
        if n90 is not None:
            rows.append(
                ["token embeddings dims for 90%", fmt(n90), f"{paper.TOKEN_EMBEDDING['n90']} of 1024"]
            )
    dims = results.get("dims")
    if dims:
        o = dims.get("overall", {})
        rows.append(
            ["output intrinsic dim (TwoNN)", fmt(dig(o, "twonn", "linear")), paper.OUTPUT["intrinsic_dim"]]
        )
        rows.append(
            ["output intrinsic dim (MLE k=20)", fmt(dig(o, "mle", "harmonic")), paper.OUTPUT["intrinsic_dim"]]
        )
        rows.append(
            ["output linear effective rank", fmt(o.get("erank")), f"{paper.OUTPUT['linear_erank']} of 256"]
        )
        rows.append(
            [
                "prompts / output width",
                f"{fmt(o.get('n_points'))} / {fmt(o.get('ambient_dim'))}",
                "5,000 / 256",
            ]
        )
    rob = results.get("robustness")
    for level in (rob or {}).get("levels", [])[:1]:
        errors = " / ".join(fmt(level.get(k)) for k in ("input_error", "logit_error", "output_error"))
        rows.append(
            [
                f"softmax errors input / logit / output (noise {level.get('noise')})",
                errors,
                "0.97 / 0.96 / 0.0034",
            ]
        )
        rows.append(["softmax error reduction factor", fmt(level.get("reduction_factor")), "282"])
    return rows


def _scalar(v: Any) -> Any:
    return first(v, ("mean",), ("value",)) if isinstance(v, Mapping) else v


def agreement_section(agreement: Mapping[str, Any]) -> Section:
    sec = Section(f"Student vs teacher: {agreement['spec']}", figures=list(agreement.get("figures", [])))
    for stage, error in agreement.get("errors", {}).items():
        sec.text.append(f"✘ {stage} failed: {error['error']}")
    res = agreement.get("result") or {}
    if res:
        dims = res.get("intrinsic_dim") or {}
        twonn = " / ".join(fmt(dig(dims, who, "twonn", "linear")) for who in ("teacher", "student"))
        rows = [
            [
                "mean per-token cosine",
                fmt(_scalar(res.get("token_cosine"))),
                fmt(paper.AGREEMENT["token_cosine"]),
            ],
            ["mean pooled cosine", fmt(_scalar(res.get("pooled_cosine"))), "–"],
            ["kNN overlap@10", fmt(_scalar(res.get("knn_overlap@10"))), "–"],
            ["intrinsic dim teacher / student (TwoNN)", twonn, "–"],
            ["prompts", fmt(res.get("n_prompts")), "–"],
        ]
        sec.tables.append(Table(["measure", "ours", "paper"], rows))
        sec.details.append(
            Table(["key", "value"], [list(r) for r in flatten(res)], "all numbers: agreement.json")
        )
    return sec


def build_sections(audit: Mapping[str, Any], findings: Sequence[Finding]) -> list[Section]:
    sections = [findings_section(findings), corpus_section(audit.get("corpus", {}))]
    if audit.get("tokens"):
        sections += tokens_sections(audit["tokens"], audit.get("figures", {}).get("tokens", []))
    elif audit.get("tokens_error"):
        sections.append(Section("Tokens", [f"✘ tokens failed: {audit['tokens_error']}"]))
    sections += [encoder_section(enc) for enc in audit.get("encoders", [])]
    if audit.get("agreement"):
        sections.append(agreement_section(audit["agreement"]))
    versions = audit.get("versions") or {}
    if versions:
        sections.append(
            Section(
                "Provenance",
                tables=[Table(["package", "version"], [[k, v] for k, v in sorted(versions.items())])],
            )
        )
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
    nav = " ".join(f'<a href="#{_anchor(s.title)}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<nav>{nav}</nav>",
    ]
    for sec in sections:
        parts.append(f'<h{sec.level} id="{_anchor(sec.title)}">{html.escape(sec.title)}</h{sec.level}>')
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
    out_dir: str | Path, audit: Mapping[str, Any], findings: Sequence[Finding], title: str | None = None
) -> dict:
    """Write OUT/report.md and OUT/index.html; return their paths."""
    out_dir = Path(out_dir)
    title = title or audit.get("title") or "Prompt anatomy audit"
    sections = build_sections(audit, findings)
    md = write_text(out_dir / "report.md", to_markdown(title, sections))
    page = write_text(out_dir / "index.html", to_html(title, sections, out_dir))
    return {"markdown": md, "html": page}
