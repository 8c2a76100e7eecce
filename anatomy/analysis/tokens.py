"""`tokens`: token lengths, the context-window table and vocabulary coverage of a corpus.

corpus.parquet -> OUT/tokens.parquet (a cache of token ids, anatomy.tokens) -> results/tokens.json (the shape
of issue 3) and figures/tokens_*.png. Blocks count distinct prompts: a prompt in two subsets of one source
counts once for that source, a prompt in two sources once overall.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anatomy import paper
from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, Table, _build, param, transient
from anatomy.corpus.traffic import WEIGHTS
from anatomy.findings import Finding, pct

# The context SAM3's text encoder runs at; padding and truncation are judged against it.
CURRENT_CONTEXT = 32
# Padding share at the current context above which a shorter context is recommended.
PADDING_WARN = 0.5
# Share of prompts cut by the current context above which truncation is a problem.
TRUNCATION_WARN = 0.01
# Share of the vocabulary never used above which the token-embedding table is called mostly idle.
VOCAB_UNUSED_WARN = 0.5
# The longest context the table may ask for (a bound on memory: the table is per length).
MAX_CONTEXT = 4096


@dataclass(frozen=True)
class TokensParams:
    contexts: tuple[int, ...] = param(
        (8, 16, 24, 32, 77), "Context lengths for the table (repeat, or comma-separated).",
        flag="context", min=1, max=MAX_CONTEXT,
    )  # fmt: skip
    tokenizer: str = param("clip", "clip (CLIP BPE) or an encoder spec whose own tokenizer to use.")
    max_token_loss: float = param(0.01, "Token loss a recommended context may lose at most.", min=0, max=1)
    max_truncation: float = param(0.05, "Share of prompts a recommended context may cut.", min=0, max=1)
    recommend_range: tuple[int, int] = param((4, 77), "", cli=False)
    top_k: tuple[int, ...] = param((10, 100, 1000), "", cli=False)
    n_top_tokens: int = param(20, "", cli=False)
    weight: str = param(
        "distinct", "Count each distinct prompt once, or by its requests (traffic).", choices=WEIGHTS
    )


@dataclass
class LengthStats:
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: int
    histogram: dict[str, int]


@dataclass
class ContextRow:
    density: float
    padding: float
    truncation: float
    token_loss: float
    token_loss_per_prompt: float


@dataclass
class VocabStats:
    used: int
    used_content: int
    unused_share: float
    top_k_coverage: dict[str, float]
    top_k_coverage_with_special: dict[str, float]
    special_share: float
    top_tokens: list[list[Any]]
    special_share_mean_over_sources: float | None = field(default=None, metadata={"omit_none": True})


@dataclass
class Block:
    n_prompts: int
    length: LengthStats
    context: dict[str, ContextRow]
    vocab: VocabStats
    n_requests: int | None = field(default=None, metadata={"omit_none": True})  # traffic-weighted blocks


@dataclass
class OtherWeight:
    """The overall block counted the other way (a corpus with repeated prompts shows both)."""

    weight: str
    block: Block


@dataclass
class Recommended:
    L: int | None
    reason: str | None = field(default=None, metadata={"omit_none": True})
    density: float | None = field(default=None, metadata={"omit_none": True})
    padding: float | None = field(default=None, metadata={"omit_none": True})
    truncation: float | None = field(default=None, metadata={"omit_none": True})
    token_loss: float | None = field(default=None, metadata={"omit_none": True})
    token_loss_per_prompt: float | None = field(default=None, metadata={"omit_none": True})


@dataclass
class Recommendation:
    rule: str
    max_token_loss: float
    max_truncation: float
    pooled: Recommended
    per_prompt: Recommended


@dataclass
class TokensResult(Result):
    overall: Block
    sources: dict[str, Block]
    recommended_context: Recommendation
    conventions: dict[str, str]
    paper: dict[str, Any]
    # what `overall` counts: "traffic" (requests) or None (distinct prompts; left out of the JSON)
    weight: str | None = field(default=None, metadata={"omit_none": True})
    other_weight: OtherWeight | None = field(default=None, metadata={"omit_none": True})
    tokenizer_fingerprint: str = transient("")
    lengths_by: dict = transient()  # block -> (lengths, prompts of each length), for the figures
    counts_by: dict = transient()
    contexts: tuple[int, ...] = transient(())

    @property
    def counted(self) -> str:
        return self.weight or "distinct"


def _column(batches, rows: int):
    """One int64 column of record batches as a numpy array of `rows` values (8 bytes a row)."""
    import numpy as np

    out, at = np.empty(rows, dtype=np.int64), 0
    for batch in batches:
        out[at : at + batch.num_rows] = batch.column(0).to_numpy()
        at += batch.num_rows
    return out[:at]


def _expanded(histograms: dict) -> dict:
    """{block: (lengths, counts)} as {block: one int32 length per prompt} (4 bytes a prompt, for figures)."""
    import numpy as np

    return {name: np.repeat(values.astype(np.int32), counts) for name, (values, counts) in histograms.items()}


def paper_block() -> dict[str, Any]:
    """The study's numbers in the shape tokens.json has always carried them."""
    return {
        "label": f"paper ({paper.STUDY}; {paper.N_PROMPTS} prompts; reported values, not recomputed here)",
        "n_prompts": paper.N_PROMPTS.value,
        "length": {"mean": paper.LENGTH_MEAN.value},
        "context": paper.CONTEXT,
        "context_note": paper.CONTEXT_NOTE,
        "vocab": {
            "used": paper.VOCAB_USED.value,
            "unused_share": paper.VOCAB_UNUSED_SHARE.value,
            "top_k_coverage": {"100": paper.TOP100_COVERAGE.value},
            "special_share": paper.SPECIAL_SHARE.value,
        },
        "source_mean_length": {"lvis": 3.3, "saco": [5.4, 5.9], "refcoco": 9.4},
    }


class Tokens(Analysis[TokensParams, TokensResult]):
    name = "tokens"
    title = "Token lengths and the context window"
    description = "Token lengths, the context-window table and vocabulary coverage of a corpus."
    needs = frozenset({Need.CORPUS})
    Params = TokensParams
    Result = TokensResult

    def compute(self, inputs: Inputs, params: TokensParams) -> TokensResult:
        import pyarrow.parquet as pq

        from anatomy.corpus.stream import corpus_batches
        from anatomy.tokens import analyse, resolve_tokenizer, tokenize_corpus

        tok, fingerprint = resolve_tokenizer(params.tokenizer)
        path, reused = tokenize_corpus(inputs.need_corpus(), inputs.out_dir or Path("."), tok, fingerprint)
        rows = pq.ParquetFile(path).metadata.num_rows
        inputs.progress("tokens.parquet reused" if reused else f"{rows:,} rows tokenized")
        contexts = tuple(sorted(set(params.contexts)))
        counts = _column(corpus_batches(inputs.need_corpus(), ["count"]), rows)
        data, lengths_by, counts_by = analyse(path, tok, params, contexts, counts)
        data["paper"] = paper_block()
        result = _build(TokensResult, data)
        result.tokenizer_fingerprint = fingerprint
        result.lengths_by, result.counts_by, result.contexts = lengths_by, counts_by, contexts
        return result

    def record_params(self, result: TokensResult, params: TokensParams) -> dict[str, Any]:
        return {
            **asdict(params),
            "contexts": list(result.contexts),
            "tokenizer_fingerprint": result.tokenizer_fingerprint,
        }

    def figures(self, result: TokensResult) -> dict[str, Any]:
        from anatomy.figures import tokens as figs

        if result.lengths_by is None:
            return {}
        lengths_by = _expanded(result.lengths_by)  # one length per prompt, what the figures' tables take
        tradeoff = figs.prepare_context_tradeoff(lengths_by, range(1, max(77, *result.contexts) + 1))
        recommended = asdict(result.recommended_context)
        return {
            "tokens_lengths": figs.draw_length_histogram(figs.prepare_length_histogram(lengths_by)),
            "tokens_context": figs.draw_context_tradeoff(
                tradeoff, marks=result.contexts, recommended=recommended
            ),
            "tokens_vocab": figs.draw_vocab_rank(figs.prepare_vocab_rank(result.counts_by)),
        }

    def findings(self, result: TokensResult, section: str) -> list[Finding]:
        both = result.other_weight is not None or result.counted == "traffic"
        tag = f" ({WEIGHT_LABEL[result.counted]})" if both else ""
        found = []
        table = result.overall.context
        now = table.get(str(CURRENT_CONTEXT))
        rec = result.recommended_context.pooled
        if rec.L is not None and now is not None and rec.token_loss is not None and rec.padding is not None:
            if rec.L < CURRENT_CONTEXT and now.padding > PADDING_WARN:
                found.append(Finding(
                    "warn", section, "tokens.context",
                    f"context {rec.L} keeps {100 * (1 - rec.token_loss):.1f}% of tokens and cuts padding from "
                    f"{pct(now.padding)} to {pct(rec.padding)}{tag}", rec.L, f"use {rec.L}",
                ))  # fmt: skip
            else:
                found.append(Finding(
                    "ok", section, "tokens.context",
                    f"context {CURRENT_CONTEXT} is well used: padding {pct(now.padding)}, smallest context "
                    f"keeping {100 * (1 - result.recommended_context.max_token_loss):.0f}% of tokens is {rec.L}"
                    f"{tag}", rec.L,
                ))  # fmt: skip
        if now is not None:
            found.append(_truncation(now.truncation, result.counted, section, "tokens.truncation", tag))
        if result.other_weight is not None:  # the same cut, counted the other way
            other = result.other_weight
            row = other.block.context.get(str(CURRENT_CONTEXT))
            if row is not None:
                found.append(_truncation(row.truncation, other.weight, section,
                                         f"tokens.truncation.{other.weight}", f" ({WEIGHT_LABEL[other.weight]})"))  # fmt: skip
        vocab = result.overall.vocab
        size = round(vocab.used / (1 - vocab.unused_share)) if vocab.unused_share < 1 else 0
        found.append(Finding(
            "warn" if vocab.unused_share >= VOCAB_UNUSED_WARN else "ok", section, "tokens.vocab_unused",
            f"{pct(vocab.unused_share)} of the {size:,}-token vocabulary never occurs ({vocab.used:,} used)",
            vocab.unused_share,
            "most token-embedding rows are idle: `anatomy vocab` measures what a specialised vocabulary saves"
            if vocab.unused_share >= VOCAB_UNUSED_WARN else "",
        ))  # fmt: skip
        top100 = vocab.top_k_coverage.get("100")
        if top100 is not None:
            found.append(Finding("info", section, "tokens.top100",
                                 f"the 100 most frequent tokens cover {pct(top100)} of all tokens{tag}", top100))  # fmt: skip
        found.append(Finding("info", section, "tokens.special",
                             f"start/end tokens are {pct(vocab.special_share)} of all tokens{tag}", vocab.special_share))  # fmt: skip
        means = {s: b.length.mean for s, b in sorted(result.sources.items())}
        per_source = ", ".join(f"{s} {m:.1f}" for s, m in means.items()) if len(means) > 1 else ""
        unit = "requests" if result.counted == "traffic" else "prompts"
        found.append(Finding(
            "info", section, "tokens.length",
            f"{unit} average {result.overall.length.mean:.1f} tokens including start/end"
            + (f" ({per_source})" if per_source else "") + tag, result.overall.length.mean,
        ))  # fmt: skip
        if result.other_weight is not None:
            other = result.other_weight
            other_unit = "requests" if other.weight == "traffic" else "distinct prompts"
            found.append(Finding(
                "info", section, f"tokens.length.{other.weight}",
                f"{other_unit} average {other.block.length.mean:.1f} tokens including start/end"
                f" ({WEIGHT_LABEL[other.weight]})", other.block.length.mean,
            ))  # fmt: skip
        return found

    def distinct_block(self, result: TokensResult) -> Block:
        """The block counted by distinct prompts (the one the study's numbers sit beside)."""
        if result.counted == "traffic" and result.other_weight is not None:
            return result.other_weight.block
        return result.overall

    def paper_rows(self, result: TokensResult) -> list[PaperRow]:
        overall = self.distinct_block(result)  # the study counted distinct prompts: compare like with like
        v = overall.vocab
        rows = [PaperRow.of("mean tokens per prompt (with start/end)", f"{overall.length.mean:.2f}",
                            paper.LENGTH_MEAN)]  # fmt: skip
        for source, cited in paper.SOURCE_LENGTH_MEAN.items():
            if source in result.sources and result.counted == "distinct":
                rows.append(PaperRow.of(f"mean tokens per prompt: {source}",
                                        f"{result.sources[source].length.mean:.2f}", cited))  # fmt: skip
        rows += [
            PaperRow.of("distinct tokens used", f"{v.used:,}", paper.VOCAB_USED),
            PaperRow.of("vocabulary never used", pct(v.unused_share), paper.VOCAB_UNUSED_SHARE),
            PaperRow.of("top-100 coverage (content tokens)", pct(v.top_k_coverage.get("100", 0.0)),
                        paper.TOP100_COVERAGE),
            PaperRow.of("start/end share (pooled / mean over sources)",
                        f"{pct(v.special_share)} / {pct(v.special_share_mean_over_sources or 0.0)}",
                        paper.SPECIAL_SHARE),
        ]  # fmt: skip
        return rows

    def tables(self, result: TokensResult) -> list[Table]:
        blocks = {"overall": result.overall, **result.sources}
        lengths = Table(
            ["block", "prompts", "mean", "median", "p90", "p99", "max"],
            [[name, f"{b.n_prompts:,}", f"{b.length.mean:.2f}", f"{b.length.median:g}", f"{b.length.p90:g}",
              f"{b.length.p99:g}", f"{b.length.max:,}"] for name, b in blocks.items()],
            "tokens per prompt, start and end included",
        )  # fmt: skip
        rows = []
        for key, row in sorted(self.distinct_block(result).context.items(), key=lambda kv: int(kv[0])):
            ref = paper.CONTEXT.get(key, {})
            theirs = " / ".join(
                paper.percent(ref[k]) if k in ref else "–" for k in ("padding", "truncation", "token_loss")
            )
            rows.append([key, pct(row.density), pct(row.padding), pct(row.truncation), pct(row.token_loss),
                         pct(row.token_loss_per_prompt), theirs if ref else "–"])  # fmt: skip
        context = Table(
            ["context", "density", "padding", "truncation", "token loss", "loss per prompt",
             "paper: padding / trunc. / loss"], rows,
            f"overall; paper: {paper.CORPUS_LABEL} ({paper.CONTEXT_WHERE}; {paper.CONTEXT_NOTE})",
        )  # fmt: skip
        traffic = result.overall if result.counted == "traffic" else None
        if traffic is None and result.other_weight is not None:
            traffic = result.other_weight.block
        by_traffic = []
        if traffic is not None:  # no study numbers here: the study counted distinct prompts
            by_traffic = [Table(
                ["context", "density", "padding", "truncation", "token loss", "loss per prompt"],
                [[key, pct(r.density), pct(r.padding), pct(r.truncation), pct(r.token_loss),
                  pct(r.token_loss_per_prompt)] for key, r in sorted(traffic.context.items(), key=lambda kv: int(kv[0]))],
                f"overall, by traffic ({traffic.n_requests or 0:,} requests)",
            )]  # fmt: skip
        shown = result.overall.vocab.top_tokens[:15]
        if any(str(t).endswith("</w>") for t, _ in shown):  # CLIP BPE marks word ends
            rows = [[token_as_text(str(t)), f"{c:,}"] for t, c in shown]
            caption = ("most frequent tokens; a token that ends a word is shown as plain text, a piece that "
                       "continues into the next token ends in '…'")  # fmt: skip
        else:  # WordPiece marks continuations itself (##)
            rows = [[str(t), f"{c:,}"] for t, c in shown]
            caption = "most frequent tokens ('##' marks a piece that continues a word)"
        if result.other_weight is not None or result.counted == "traffic":
            caption += f" ({WEIGHT_LABEL[result.counted]})"
        top = Table(["token", "count"], rows, caption)
        return [lengths, context, *by_traffic, top]

    def summary(self, result: TokensResult) -> list[str]:
        lines = []
        rec = result.recommended_context
        for convention in ("pooled", "per_prompt"):
            r = getattr(rec, convention)
            if r.L is None:
                lines.append(f"recommended context ({convention} loss): none in range - {r.reason}")
            else:
                lines.append(
                    f"recommended context ({convention} loss): L={r.L} (token loss {r.token_loss:.2%}, per prompt "
                    f"{r.token_loss_per_prompt:.2%}, truncation {r.truncation:.2%}, density {r.density:.3f})"
                )
        lines.append(f"rule: {rec.rule}")
        return lines


WEIGHT_LABEL = {"distinct": "distinct prompts", "traffic": "by traffic"}


def _truncation(share: float, weight: str, section: str, key: str, tag: str) -> Finding:
    unit = "requests" if weight == "traffic" else "prompts"
    return Finding(
        "warn" if share > TRUNCATION_WARN else "ok", section, key,
        f"{pct(share)} of {unit} are longer than {CURRENT_CONTEXT} tokens and get cut{tag}", share,
        "raise the context or shorten those prompts" if share > TRUNCATION_WARN else "",
    )  # fmt: skip


def token_as_text(token: str) -> str:
    """'photo</w>' -> 'photo' (ends a word), 'pho' -> 'pho…' (continues); WordPiece '##s' stays as it is."""
    if token.endswith("</w>"):
        return token[: -len("</w>")]
    if token.startswith("##") or token.startswith("[") or token.startswith("<|"):
        return token
    return token + "…"
