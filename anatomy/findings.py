"""Findings: the audit's verdicts, one line each, in the style of spaCy's `debug data`.

Each finding has a mark (ok / warn / fail / info), the number behind it, and what to do. They are computed
from the results JSON the analyses write (never from live objects), so the same findings can be rebuilt
from any results folder. Thresholds are the named constants below; change them here, not in the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# The context SAM3's text encoder runs at; padding and truncation are judged against it.
CURRENT_CONTEXT = 32
# Padding share at the current context above which a shorter context is recommended.
PADDING_WARN = 0.5
# Share of prompts cut by the current context above which truncation is a problem.
TRUNCATION_WARN = 0.01
# A recommended context must keep token loss and truncation at or below these (as `anatomy tokens` does).
MAX_TOKEN_LOSS = 0.01
MAX_TRUNCATION = 0.05
# Share of the vocabulary never used above which the token-embedding table is called mostly idle.
VOCAB_UNUSED_WARN = 0.5
# Share of all corpus records skipped at ingest above which the corpus itself is suspect (below: info).
SKIPPED_WARN = 0.01
# Intrinsic dimension / output width below which a much narrower student is worth trying.
LOW_INTRINSIC_RATIO = 0.1
# Token effective rank / width below which the token-embedding space is called compressible.
LOW_ERANK_RATIO = 0.5
# Mean per-token student-teacher cosine at or above which a student is a faithful replacement.
AGREEMENT_OK = 0.9
# Positional similarity at or above which positions are hard to tell apart (the far tail of the table).
POSITION_SIMILAR = 0.7

MARKS = ("ok", "warn", "fail", "info")
MARK_SYMBOLS = {"ok": "✔", "warn": "⚠", "fail": "✘", "info": "ℹ"}


@dataclass(frozen=True)
class Finding:
    mark: str  # ok | warn | fail | info
    section: str  # "corpus", "tokens", "encoder:<slug>", "agreement"
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


# ------------------------------------------------------------------------------------------------ helpers


def dig(data: Any, *path: str, default: Any = None) -> Any:
    """data[path[0]][path[1]]... or `default` where any step is missing."""
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return default
        data = data[key]
    return data


def first(data: Any, *paths: tuple[str, ...]) -> Any:
    """The first value found among several key paths (result schemas name a few things differently)."""
    for path in paths:
        value = dig(data, *path)
        if value is not None:
            return value
    return None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


# ------------------------------------------------------------------------------------------------- corpus


def corpus_findings(corpus: Mapping[str, Any]) -> list[Finding]:
    """From the audit's corpus record: {"rows", "distinct_prompts", "sources", "files": [...], "failed": [...]}."""
    found = []
    for failure in corpus.get("failed", []):
        found.append(
            Finding(
                "fail",
                "corpus",
                "corpus.unreadable",
                f"{failure['input']} could not be read ({failure['error']})",
                failure["input"],
                failure.get("hint") or "fix or remove this input; the audit continued without it",
            )
        )
    read = sum(f.get("read", 0) for f in corpus.get("files", []))
    skipped = sum(f.get("skipped", 0) for f in corpus.get("files", []))
    for f in corpus.get("files", []):
        if not f.get("skipped"):
            continue
        reasons = ", ".join(f"{r} ({e['count']:,})" for r, e in sorted(f.get("skips", {}).items()))
        share = f["skipped"] / max(f.get("read", 0), 1)
        found.append(
            Finding(
                "warn" if share > SKIPPED_WARN else "info",
                "corpus",
                "corpus.skipped",
                f"{f['skipped']:,} of {f['read']:,} records in {f['input']} skipped: {reasons}",
                f["skipped"],
                "see corpus.manifest.json for examples of each reason",
            )
        )
    n_sources = len(corpus.get("sources", {}))
    if corpus.get("distinct_prompts"):
        found.append(
            Finding(
                "ok",
                "corpus",
                "corpus.size",
                f"{corpus['distinct_prompts']:,} distinct prompts from {n_sources} source{'s' * (n_sources != 1)}"
                + (f" ({read - skipped:,} of {read:,} records kept)" if read else ""),
                corpus["distinct_prompts"],
            )
        )
    return found


# ------------------------------------------------------------------------------------------------- tokens


def recommended_context(tokens: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recommended context from tokens.json, as {"context", "padding", "token_loss", "truncation", ...}.

    Uses `recommended_context` where tokens.json gives it with its numbers; otherwise picks the smallest
    context in the overall table meeting MAX_TOKEN_LOSS and MAX_TRUNCATION.
    """
    rec = tokens.get("recommended_context")
    if isinstance(rec, Mapping):
        # Either the numbers themselves, or one entry per criterion: take the one meeting both limits.
        candidates = [rec] + [v for v in rec.values() if isinstance(v, Mapping)]
        for cand in candidates:
            context = first(cand, ("context",), ("L",), ("length",))
            if isinstance(context, int) and not isinstance(context, bool):
                row = dict(dig(tokens, "overall", "context", str(context), default={}) or {})
                row.update({k: v for k, v in cand.items() if isinstance(v, (int, float))})
                row["context"] = context
                return row
    table = dig(tokens, "overall", "context", default={}) or {}
    for key in sorted(table, key=int):
        row = table[key]
        if row.get("token_loss", 1) <= MAX_TOKEN_LOSS and row.get("truncation", 1) <= MAX_TRUNCATION:
            return {"context": int(key), **row}
    return None


def token_findings(tokens: Mapping[str, Any], current: int = CURRENT_CONTEXT) -> list[Finding]:
    found = []
    overall = tokens.get("overall", {})
    table = overall.get("context", {})
    now = table.get(str(current))
    rec = recommended_context(tokens)
    if rec is not None and now is not None and "padding" in rec:
        ctx = rec["context"]
        kept = 1 - rec.get("token_loss", 0.0)
        if ctx < current and now["padding"] > PADDING_WARN:
            found.append(
                Finding(
                    "warn",
                    "tokens",
                    "tokens.context",
                    f"context {ctx} keeps {100 * kept:.1f}% of tokens and cuts padding from "
                    f"{_pct(now['padding'])} to {_pct(rec['padding'])}",
                    ctx,
                    f"use {ctx}",
                )
            )
        else:
            found.append(
                Finding(
                    "ok",
                    "tokens",
                    "tokens.context",
                    f"context {current} is well used: padding {_pct(now['padding'])}, "
                    f"smallest context keeping {100 * (1 - MAX_TOKEN_LOSS):.0f}% of tokens is {ctx}",
                    ctx,
                )
            )
    if now is not None:
        trunc = now.get("truncation", 0.0)
        found.append(
            Finding(
                "warn" if trunc > TRUNCATION_WARN else "ok",
                "tokens",
                "tokens.truncation",
                f"{_pct(trunc)} of prompts are longer than {current} tokens and get cut",
                trunc,
                "raise the context or shorten those prompts" if trunc > TRUNCATION_WARN else "",
            )
        )
    vocab = overall.get("vocab", {})
    if "unused_share" in vocab:
        unused = vocab["unused_share"]
        size = dig(tokens, "params", "vocab_size") or _vocab_size(vocab)
        found.append(
            Finding(
                "warn" if unused >= VOCAB_UNUSED_WARN else "ok",
                "tokens",
                "tokens.vocab_unused",
                f"{_pct(unused)} of the {size:,}-token vocabulary never occurs"
                + (f" ({vocab['used']:,} used)" if "used" in vocab else ""),
                unused,
                "most token-embedding rows are idle: a student can prune or share them"
                if unused >= VOCAB_UNUSED_WARN
                else "",
            )
        )
    top100 = dig(vocab, "top_k_coverage", "100")
    if top100 is not None:
        found.append(
            Finding(
                "info",
                "tokens",
                "tokens.top100",
                f"the 100 most frequent tokens cover {_pct(top100)} of all tokens",
                top100,
            )
        )
    special = vocab.get("special_share")
    if special is not None:
        found.append(
            Finding(
                "info",
                "tokens",
                "tokens.special",
                f"start/end tokens are {_pct(special)} of all tokens",
                special,
            )
        )
    means = {s: dig(b, "length", "mean") for s, b in sorted(tokens.get("sources", {}).items())}
    means = {s: m for s, m in means.items() if m is not None}
    mean = dig(overall, "length", "mean")
    if mean is not None:
        per_source = ", ".join(f"{s} {m:.1f}" for s, m in means.items()) if len(means) > 1 else ""
        found.append(
            Finding(
                "info",
                "tokens",
                "tokens.length",
                f"prompts average {mean:.1f} tokens including start/end"
                + (f" ({per_source})" if per_source else ""),
                mean,
            )
        )
    return found


def _vocab_size(vocab: Mapping[str, Any]) -> int:
    """The vocabulary size where the results give it; CLIP's otherwise (the tokenizer tokens.json defaults to)."""
    return int(first(vocab, ("vocab_size",), ("size",)) or 49_408)


# ----------------------------------------------------------------------------------------------- encoders


def encoder_error_finding(slug: str, spec: str, stage: str, error: str, hint: str | None = None) -> Finding:
    what = "could not be loaded" if stage == "load" else f"failed in {stage}"
    skipped = "its sections were skipped" if stage == "load" else f"its {stage} section was skipped"
    return Finding(
        "fail",
        f"encoder:{slug}",
        f"encoder.{stage}",
        f"encoder {spec} {what} ({error}); {skipped}",
        spec,
        hint
        or (
            "check the encoder spec and its weights (`anatomy encoders` lists the kinds)"
            if stage == "load"
            else f"run `anatomy {stage}` on this encoder with -v for details; the other sections completed"
        ),
    )


def block_labels(n_positions: int, block: int) -> list[str]:
    """'0-7', '8-15', ... for blocks of `block` positions (the last one may be shorter)."""
    return [f"{a}-{min(a + block, n_positions) - 1}" for a in range(0, n_positions, block)]


def positions_findings(slug: str, res: Mapping[str, Any]) -> list[Finding]:
    """From positions.json: rows_analysed, pca.n90, within_block (mean off-diagonal similarity per block)."""
    found = []
    sec = f"encoder:{slug}"
    length = res.get("rows_analysed")
    n90 = dig(res, "pca", "n90")
    if n90 is not None:
        of = f" of {length}" if length else ""
        found.append(
            Finding(
                "info", sec, "positions.n90", f"90% of positional variance lies in {n90}{of} components", n90
            )
        )
    within = res.get("within_block") or []
    if within and length:
        labels = block_labels(length, res.get("block", 8))
        shown = ", ".join(f"{lab} {v:.2f}" for lab, v in list(zip(labels, within, strict=False))[:4])
        more = f" (… {len(within)} blocks)" if len(within) > 4 else ""
        tail = [v for v in within[1:] if v is not None]
        similar = bool(tail) and min(tail) >= POSITION_SIMILAR
        found.append(
            Finding(
                "warn" if similar else "info",
                sec,
                "positions.blocks",
                f"mean positional similarity within blocks: {shown}{more}",
                within[0],
                "later positions are nearly alike: a shorter context loses little position information"
                if similar
                else "",
            )
        )
    return found


def _num(v: Any) -> float | None:
    if isinstance(v, Mapping):
        v = first(v, ("mean",), ("value",))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def spectrum_findings(slug: str, res: Mapping[str, Any]) -> list[Finding]:
    """From spectrum.json: full / used, each with dim and the uncentred effective-rank family."""
    found = []
    sec = f"encoder:{slug}"
    for subset, label in (("full", "all tokens"), ("used", "tokens the corpus uses")):
        block = res.get(subset)
        erank = dig(block, "uncentred", "erank")
        if erank is None:
            continue
        dim, n90 = block.get("dim"), dig(block, "uncentred", "n90")
        of = f" of {dim}" if dim else ""
        low = bool(dim) and erank / dim < LOW_ERANK_RATIO
        found.append(
            Finding(
                "warn" if low else "info",
                sec,
                f"spectrum.{subset}",
                f"token embeddings ({label}) have effective rank {erank:.0f}{of}"
                + (f"; 90% of energy in {n90} dimensions" if n90 is not None else ""),
                erank,
                "the embedding table is compressible: a narrower width loses little" if low else "",
            )
        )
    return found


def robustness_findings(slug: str, res: Mapping[str, Any]) -> list[Finding]:
    """From robustness.json: levels[i] with noise, input/logit/output errors and reduction_factor."""
    found = []
    for level in res.get("levels", []):
        factor = level.get("reduction_factor")
        if factor is None:
            continue
        found.append(
            Finding(
                "info",
                f"encoder:{slug}",
                "robustness.factor",
                f"noise {level['noise']:g}: attention shrinks the logit error {level['logit_error']:.3g} to "
                f"{level['output_error']:.3g} at the output, a factor of {factor:,.0f} (paper 282)",
                factor,
            )
        )
    return found


def dims_findings(slug: str, res: Mapping[str, Any]) -> list[Finding]:
    overall = res.get("overall", {})
    d = dig(overall, "twonn", "linear")
    ambient = overall.get("ambient_dim")
    if d is None:
        return []
    spread = first(overall, ("spread", "twonn", "linear"), ("spread", "twonn_linear"), ("spread", "twonn"))
    spread = (
        _num(spread) if not isinstance(spread, Mapping) else first(spread, ("std",), ("sd",), ("stderr",))
    )
    mle = dig(overall, "mle", "harmonic")
    pm = f" ± {spread:.0f}" if isinstance(spread, (int, float)) else ""
    low = bool(ambient) and d / ambient < LOW_INTRINSIC_RATIO
    return [
        Finding(
            "info",
            f"encoder:{slug}",
            "dims.intrinsic",
            f"outputs have intrinsic dimension {d:.0f}{pm} of {ambient} (TwoNN"
            + (f"; MLE {mle:.0f}" if mle is not None else "")
            + (f", {overall['n_points']:,} prompts)" if overall.get("n_points") else ")"),
            d,
            f"the outputs lie on a ~{d:.0f}-dimensional manifold: a much smaller student can represent them"
            if low
            else "",
        )
    ]


def agreement_findings(res: Mapping[str, Any]) -> list[Finding]:
    """From agreement.json: token_cosine (a distribution, or null across tokenizers), pooled_cosine, kNN."""
    token = _num(res.get("token_cosine"))
    pooled = _num(res.get("pooled_cosine"))
    cos, what = (token, "per-token") if token is not None else (pooled, "pooled")
    if cos is None:
        return []
    good = cos >= AGREEMENT_OK
    teacher, student = res.get("teacher", "teacher"), res.get("student", "student")
    knn = _num(first(res, ("knn_overlap@10",), ("knn_overlap",)))
    return [
        Finding(
            "ok" if good else "warn",
            "agreement",
            "agreement.token_cosine" if token is not None else "agreement.pooled_cosine",
            f"student {student} agrees with teacher {teacher} at mean {what} cosine {cos:.3f} (paper 0.938)"
            + (f", kNN overlap@10 {knn:.2f}" if knn is not None else ""),
            cos,
            "" if good else f"below {AGREEMENT_OK}: train the student longer or make it wider",
        )
    ]


ANALYSIS_FINDINGS = {
    "positions": positions_findings,
    "spectrum": spectrum_findings,
    "dims": dims_findings,
    "robustness": robustness_findings,
}


def collect(audit: Mapping[str, Any]) -> list[Finding]:
    """All findings for an audit record (see anatomy.audit): corpus, tokens, each encoder, agreement."""
    found = corpus_findings(audit.get("corpus", {}))
    if audit.get("tokens"):
        found += token_findings(audit["tokens"])
    if audit.get("tokens_error"):
        found.append(
            Finding(
                "fail",
                "tokens",
                "tokens.failed",
                f"token analysis failed ({audit['tokens_error']}); its section was skipped",
                None,
                "run `anatomy tokens CORPUS --out DIR -v` for details; the encoder sections completed",
            )
        )
    for enc in audit.get("encoders", []):
        for stage, error in enc.get("errors", {}).items():
            found.append(
                encoder_error_finding(enc["slug"], enc["spec"], stage, error["error"], error.get("hint"))
            )
        for name, res in enc.get("results", {}).items():
            if name in ANALYSIS_FINDINGS:
                found += ANALYSIS_FINDINGS[name](enc["slug"], res)
    agreement = audit.get("agreement")
    if agreement:
        for stage, error in agreement.get("errors", {}).items():
            found.append(
                encoder_error_finding(
                    "agreement", agreement["spec"], stage, error["error"], error.get("hint")
                )
            )
        if agreement.get("result"):
            found += agreement_findings(agreement["result"])
    return found
