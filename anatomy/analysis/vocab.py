"""Vocabulary specialisation: the tokens a workload uses, what dropping the rest saves, and what it risks.

compute() builds the specialised vocabulary of the corpus (exact on every corpus word, fallback elsewhere:
anatomy/vocab), counts the parameters and bytes it saves for each student body, and measures the long-tail
risk on prompts the vocabulary never saw: leave-one-source-out, a seeded k-fold by prompt, and held-out
prompt sets (by default open_clip's 1,000 ImageNet class names); plus the --min-count trade-off curve.
`anatomy vocab` and the audit share `compute_vocab`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

import anatomy.analysis.base as base
from anatomy import paper
from anatomy.analysis.base import Need, PaperRow, Table, param, seed_param, transient
from anatomy.corpus.traffic import WEIGHTS
from anatomy.errors import InputError
from anatomy.findings import Finding
from anatomy.vocab import IMAGENET
from anatomy.vocab.build import (
    Risk,
    build,
    held_out_risk,
    index_texts,
    k_fold_risks,
    measure,
    summarise,
)
from anatomy.vocab.held_out import read_prompts
from anatomy.vocab.store import Vocabulary, base_tokenizer

log = logging.getLogger(__name__)

# The student bodies' parameters and token-embedding widths (the study's numbers, in anatomy.paper; building the
# modules here would import torch and open_clip for four numbers).
STUDENT_BODIES = paper.STUDENT_BODIES
# Share of unseen prompts whose tokens change above which specialising is called risky for that workload.
CHANGE_WARN = 0.05
# Share of the original vocabulary kept at or below which specialising is worth it (the table is mostly idle).
KEPT_WORTH = 0.5


@dataclass(frozen=True)
class VocabParams:
    tokenizer: str = param("clip", "clip (CLIP BPE) or an encoder spec with a WordPiece tokenizer (minilm).")
    min_count: int = param(1, "Keep the merges/pieces of words seen in at least this many prompts.", min=1)
    weight: str = param(
        "distinct", "Long-tail risk over distinct prompts, or over requests (traffic).", choices=WEIGHTS
    )
    folds: int = param(5, "Folds of the k-fold by prompt.", min=2, max=100)
    seed: int = seed_param("Seed of the k-fold split.")
    width: int = param(256, "A custom student width to report savings for.", min=1)
    held_out: tuple[str, ...] = param(
        (IMAGENET,),
        "Held-out prompt files (text source: .txt one per line, .csv, .tsv, .jsonl, .json; UTF-8) or builtin:NAME;"
        " each counts its distinct prompts after the corpus's normalisation, blank lines dropped.",
    )
    curve: tuple[int, ...] = param((1, 2, 3, 5, 10), "Min-count values of the trade-off curve.", min=1)


Params = VocabParams  # the name the CLI and tests use


@dataclass
class Saving:
    body: str  # litetext-s0 | litetext-s1 | litetext-l | custom
    width: int  # token-embedding width
    parameters: int | None  # the body's parameters with the full vocabulary (None for a custom width)
    saved_parameters: int
    saved_share: float | None  # of `parameters`
    saved_bytes_fp32: int
    saved_bytes_bf16: int


@dataclass
class CurvePoint:
    min_count: int
    kept: int  # vocabulary size built from the whole corpus at this min-count
    changed_share: float  # k-fold: share of unseen prompts whose tokens change
    fallback_token_share: float
    inflation_mean: float


@dataclass
class VocabResult(base.Result):
    tokenizer: str
    kind: str
    fingerprint: str  # the specialised tokenizer's
    original_size: int
    kept: int
    kept_share: float
    min_count: int
    corpus_prompts: int
    corpus_exact_share: (
        float  # share of corpus prompts whose ids equal the full tokenizer's (1 at min-count 1)
    )
    savings: list[Saving]
    leave_one_source_out: list[Risk]
    k_fold: Risk | None
    held_out: list[Risk]
    curve: list[CurvePoint]
    # what corpus_exact_share and the k-fold risk count: "traffic" (requests) or None (distinct prompts)
    weight: str | None = field(default=None, metadata={"omit_none": True})
    k_fold_other: Risk | None = field(
        default=None, metadata={"omit_none": True}
    )  # the other weight, on repeats
    # why there is no k-fold risk (fewer corpus prompts than folds); None when it was measured
    k_fold_skipped: str | None = field(default=None, metadata={"omit_none": True})
    vocabulary: Vocabulary | None = transient()


class ArrowTexts(Sequence[str]):
    """Arrow strings (then a few Python ones) as a read-only sequence: iterating makes one batch of Python
    strings at a time, indexing one string, so a corpus of millions of prompts is never a list of them."""

    BATCH = 8_192

    def __init__(self, strings, extra: Sequence[str] = ()) -> None:
        self.strings, self.extra = strings, list(extra)

    def __len__(self) -> int:
        return len(self.strings) + len(self.extra)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.strings[i].as_py() if i < len(self.strings) else self.extra[i - len(self.strings)]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.strings), self.BATCH):
            yield from self.strings.slice(start, self.BATCH).to_pylist()
        yield from self.extra


def resolve_tokenizer(spec: str):
    """The full tokenizer of --tokenizer; a spec that names no tokenizer is a usage error (OptionError)."""
    from anatomy.tokens import check_tokenizer_spec

    check_tokenizer_spec(spec)
    return base_tokenizer(spec)


def savings(original: int, kept: int, width: int) -> list[Saving]:
    """Parameters and bytes the dropped rows cost in each student body, and at a custom width."""
    from anatomy.tokenizer import CLIP_VOCAB_SIZE

    dropped = original - kept
    rows: list[Saving] = []
    for name, (parameters, w) in STUDENT_BODIES.items():
        total = parameters + (original - CLIP_VOCAB_SIZE) * w  # the body on this tokenizer's vocabulary
        rows.append(
            Saving(name, w, total, dropped * w, dropped * w / total, dropped * w * 4, dropped * w * 2)
        )
    rows.append(
        Saving("custom", width, None, dropped * width, None, dropped * width * 4, dropped * width * 2)
    )
    return rows


def compute_vocab(
    corpus: str | Path, params: VocabParams, progress: Callable[[str], None] = lambda _m: None
) -> VocabResult:
    import pyarrow as pa
    import pyarrow.compute as pc

    from anatomy.corpus.stream import corpus_batches, sorted_distinct
    from anatomy.io import file_sha256

    base_tok = resolve_tokenizer(params.tokenizer)  # the options and held-out files first: before any work
    held = [(spec, read_prompts(spec)) for spec in params.held_out]
    batches = corpus_batches(corpus, ["prompt", "source", "count"], 65_536)  # checked; only these columns
    table = pa.Table.from_batches(list(batches))  # Arrow: no Python strings
    prompt_col = table.column("prompt")
    distinct, position = sorted_distinct(prompt_col)  # code-point order, as sorted() gives; row -> its prompt
    counts = table.column("count").to_numpy().astype(np.float64)
    requests = np.bincount(position, weights=counts, minlength=len(distinct))  # aligned with texts
    repeats = bool(requests.size and requests.max() > 1)
    source = pc.dictionary_encode(table.column("source")).combine_chunks()
    codes, names = source.indices.to_numpy(), source.dictionary.to_pylist()
    by_source = {
        names[s]: np.unique(position[codes == s]) for s in sorted(range(len(names)), key=names.__getitem__)
    }
    del table, prompt_col, source, position, codes, counts  # the rows: only the distinct prompts stay
    texts = ArrowTexts(distinct)
    progress(f"indexing {len(texts):,} prompts")
    index = index_texts(base_tok, ArrowTexts(distinct, [t for _, ts in held for t in ts]))
    mine = np.arange(len(texts))
    info = {"name": Path(corpus).name, "sha256": file_sha256(corpus), "prompts": len(texts)}
    vocab, covered = build(base_tok, params.tokenizer, index, mine, params.min_count, info)
    own = measure(base_tok, vocab, covered, index, mine)
    tok = _specialised(vocab, base_tok)

    progress("leave-one-source-out")
    loso = []
    if len(by_source) > 1:
        for source, test in by_source.items():
            train = np.unique(np.concatenate([v for s, v in by_source.items() if s != source]))
            loso.append(held_out_risk(base_tok, params.tokenizer, index, train, test, str(source),
                                      "leave-one-source-out", params.min_count))  # fmt: skip
    progress("k-fold")
    k_fold, k_fold_other, k_fold_skipped = None, None, None
    traffic = np.concatenate([requests, np.ones(len(index.texts) - len(texts))])  # held-out texts count once
    main, other = (traffic, None) if params.weight == "traffic" else (None, traffic)
    if len(texts) >= params.folds:
        both = (main, other) if repeats else (main,)
        k_fold, *rest = k_fold_risks(
            base_tok, params.tokenizer, index, mine, params.folds, params.seed, params.min_count, both
        )
        k_fold_other = rest[0] if rest else None
    else:  # said in the result and its findings, never dropped silently
        n = len(texts)
        k_fold_skipped = f"the corpus has {n:,} prompt{'s' * (n != 1)}, fewer than --folds {params.folds}"
        log.info("no k-fold risk: %s", k_fold_skipped)
    held_risks, start = [], len(texts)
    for spec, ts in held:
        test = np.arange(start, start + len(ts))
        start += len(ts)
        label = spec if spec.startswith("builtin:") else Path(spec).name
        held_risks.append(summarise(label, "held-out", [measure(base_tok, vocab, covered, index, test)], index,
                                    [len(texts)], [vocab.size]))  # fmt: skip
    progress("min-count curve")
    curve = []
    for n in sorted(set(params.curve) | {params.min_count}):
        at_n, _ = build(base_tok, params.tokenizer, index, mine, n)
        risk = k_fold if n == params.min_count else None
        if k_fold and risk is None:
            risk = k_fold_risks(
                base_tok, params.tokenizer, index, mine, params.folds, params.seed, n, (main,)
            )[0]
        shares = (
            (risk.changed_share, risk.fallback_token_share, risk.inflation_mean) if risk else (0.0, 0.0, 1.0)
        )
        curve.append(CurvePoint(n, at_n.size, *shares))
    return VocabResult(
        tokenizer=params.tokenizer,
        kind=vocab.kind,
        fingerprint=tok.fingerprint,
        original_size=vocab.original_size,
        kept=vocab.size,
        kept_share=vocab.size / vocab.original_size,
        min_count=params.min_count,
        corpus_prompts=len(texts),
        corpus_exact_share=float(1.0 - np.average(own.changed, weights=None if main is None else main[mine])),
        savings=savings(vocab.original_size, vocab.size, params.width),
        leave_one_source_out=loso,
        k_fold=k_fold,
        held_out=held_risks,
        curve=curve,
        weight="traffic" if params.weight == "traffic" else None,
        k_fold_other=k_fold_other,
        k_fold_skipped=k_fold_skipped,
        vocabulary=vocab,
    )


def _specialised(vocab: Vocabulary, base_tok):
    from anatomy.vocab.store import specialise

    return specialise(vocab, base_tok)


def _m(n: int) -> str:
    return f"{n / 1e6:.1f}M"


class VocabAnalysis(base.Analysis[VocabParams, VocabResult]):
    name = "vocab"
    title = "Vocabulary specialisation"
    description = (
        "A vocabulary of only the tokens the corpus uses (exact on it, byte fallback elsewhere): what it saves "
        "per student body and what it risks on prompts it never saw; writes DIR/vocab.json."
    )
    needs = frozenset({Need.CORPUS})
    Params = VocabParams
    Result = VocabResult

    def compute(self, inputs: base.Inputs, params: VocabParams) -> VocabResult:
        if inputs.corpus is None:
            raise InputError("the vocab analysis needs a corpus")
        return compute_vocab(inputs.corpus, params, inputs.progress)

    def figures(self, result: VocabResult) -> dict[str, Any]:
        from anatomy.figures import vocab as fig

        return {
            "vocab_curve": fig.draw_curve(fig.prepare_curve(result)),
            "vocab_risk": fig.draw_risk(fig.prepare_risk(result)),
        }

    def findings(self, result: VocabResult, section: str) -> list[Finding]:
        found = []
        s0 = next((s for s in result.savings if s.body == "litetext-s0"), result.savings[0])
        body = "S0" if s0.body == "litetext-s0" else f"a width-{s0.width} student"
        of = f" of {body}'s {_m(s0.parameters)}" if s0.parameters else f" in {body}"
        exact = (
            "exactly" if result.corpus_exact_share == 1.0 else f"({result.corpus_exact_share:.1%} exactly)"
        )
        worth = result.kept_share <= KEPT_WORTH
        found.append(Finding(
            "info" if worth else "ok", section, "vocab.kept",
            f"a {result.kept:,}-token vocabulary ({result.kept_share:.0%} of {result.original_size:,}) covers "
            f"this corpus {exact} and saves {_m(s0.saved_parameters)}{of} parameters",
            result.kept, "a student can use the specialised vocabulary (`anatomy vocab`)" if worth else "",
        ))  # fmt: skip
        risks = ([result.k_fold] if result.k_fold else []) + (
            [result.k_fold_other] if result.k_fold_other else []
        )
        risks += result.held_out
        if result.k_fold_skipped:
            n = result.corpus_prompts
            found.append(Finding(
                "warn", section, "vocab.risk.k-fold.skipped",
                f"no k-fold risk on unseen prompts from the same sources ({result.k_fold_skipped})", n,
                f"give --folds {n} or fewer" if n >= 2 else "add prompts to the corpus (a k-fold needs 2)",
            ))  # fmt: skip
        worst = max(result.leave_one_source_out, key=lambda r: r.changed_share, default=None)
        for r in risks + ([worst] if worst else []):
            unseen = "requests of unseen prompts" if r.weight == "traffic" else "unseen prompts"
            what = {"k-fold": f"{unseen} from the same sources (k-fold)",
                    "held-out": r.label.removeprefix("builtin:") + " prompts",
                    "leave-one-source-out": f"{r.label} prompts when {r.label} is left out (the worst source)"}[r.kind]  # fmt: skip
            warn = r.changed_share > CHANGE_WARN
            found.append(Finding(
                "warn" if warn else "ok", section,
                f"vocab.risk.{r.kind}.{r.label}" + (".traffic" if r.weight == "traffic" else ""),
                f"{r.changed_share:.0%} of {what} would tokenize differently "
                f"(mean length x{r.inflation_mean:.2f}, p99 x{r.inflation_p99:.2f})",
                r.changed_share,
                "keep the full vocabulary for open-ended prompts, or add such prompts to the corpus" if warn else "",
            ))  # fmt: skip
        return found

    def paper_rows(self, result: VocabResult) -> list[PaperRow]:
        kept = f"{result.kept:,} of {result.original_size:,} ({result.kept_share:.0%})"
        return [PaperRow.of("vocabulary kept (the study kept CLIP's in full)", kept, paper.VOCAB_SIZE)]

    def input_files(self, params: VocabParams) -> dict[str, Path]:
        return {f"held_out:{Path(s).name}": Path(s) for s in params.held_out
                if not s.startswith("builtin:") and s != "-"}  # fmt: skip

    def write_artefacts(self, result: VocabResult, folder: Path) -> None:
        from anatomy.vocab.store import save

        if result.vocabulary is not None:  # in memory after compute (not in the results JSON)
            save(result.vocabulary, folder)  # DIR/vocab.json: what `anatomy distill --vocab DIR` reads

    def tables(self, result: VocabResult) -> list[Table]:
        risks = result.leave_one_source_out + ([result.k_fold] if result.k_fold else []) + result.held_out
        return [
            Table(["body", "width", "params", "saved", "share", "fp32 bytes", "bf16 bytes"],
                  [[s.body, str(s.width), f"{s.parameters:,}" if s.parameters else "–", f"{s.saved_parameters:,}",
                    f"{s.saved_share:.1%}" if s.saved_share is not None else "–", f"{s.saved_bytes_fp32:,}",
                    f"{s.saved_bytes_bf16:,}"] for s in result.savings], "Parameters saved per student body"),
            Table(["held out", "kind", "prompts", "kept", "changed", "mean x", "p99 x", "fallback tokens"],
                  [[r.label, r.kind, f"{r.prompts:,}", f"{r.kept:,}", f"{r.changed_share:.1%}",
                    f"{r.inflation_mean:.3f}", f"{r.inflation_p99:.2f}", f"{r.fallback_token_share:.1%}"]
                   for r in risks], "Long-tail risk: prompts the vocabulary never saw"),
            Table(["min count", "kept", "changed (k-fold)", "fallback tokens", "mean x"],
                  [[str(c.min_count), f"{c.kept:,}", *((f"{c.changed_share:.1%}", f"{c.fallback_token_share:.1%}",
                    f"{c.inflation_mean:.3f}") if result.k_fold else ("–",) * 3)] for c in result.curve],
                  "Min-count trade-off" + ("" if result.k_fold else " (no k-fold: risk not measured)")),
        ]  # fmt: skip

    def summary(self, result: VocabResult) -> list[str]:
        return [f.line() for f in self.findings(result, "vocab")]


ANALYSIS = VocabAnalysis()
