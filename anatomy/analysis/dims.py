"""`dims`: intrinsic dimension (TwoNN, MLE) and linear effective rank of pooled outputs, overall and per source.

The points are an encoder's pooled outputs over a corpus's distinct token sequences (from the shared
embedding store), or a saved [N, D] .npy array. The math lives in anatomy/metrics/intrinsic_dim.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anatomy import paper
from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, param, sample_param, seed_param
from anatomy.analysis.sampling import MIN_SOURCE_POINTS, draw_sequences, require_distinct, sample
from anatomy.errors import InputError
from anatomy.findings import Finding
from anatomy.metrics.points import MIN_POINTS

# Intrinsic dimension / output width below which a much narrower student is worth trying.
LOW_INTRINSIC_RATIO = 0.1


@dataclass(frozen=True)
class DimsParams:
    sample: int = sample_param(5000, "Distinct points per group (the paper's 5,000).", min=3)
    all: bool = param(False, "Every distinct point (100k+ is fine), instead of --sample.", excludes="sample")
    seed: int = seed_param()
    n_boot: int = param(200, "Bootstrap draws for the spread (0: none; else at least 2).", min=0, max=100_000)

    def check(self) -> None:
        if self.n_boot == 1:  # one draw has no spread
            raise InputError(f"--n-boot: {self.n_boot} draw has no spread; give 0 (none) or at least 2")


@dataclass
class TwoNN:
    linear: float
    closed_form: float


@dataclass
class Mle:
    harmonic: float
    mean: float
    k: int


@dataclass
class Spread:
    std: float
    low: float
    high: float


@dataclass
class DimsEntry:
    n_points: int
    n_duplicates: int
    ambient_dim: int
    twonn: TwoNN
    mle: Mle
    erank: float
    spread: dict[str, Spread]

    @classmethod
    def of(cls, points: np.ndarray, seed: int, n_boot: int, duplicates: int = 0) -> DimsEntry:
        """The estimates of `points`; `duplicates`: identical rows already dropped from them."""
        from anatomy.metrics.intrinsic_dim import intrinsic_dim

        d = intrinsic_dim(points, n_boot=n_boot, seed=seed)
        spread = {name: Spread(**s) for name, s in d.spread.items()}
        return cls(
            d.n_points, d.n_duplicates + duplicates, d.ambient_dim, TwoNN(d.twonn_linear, d.twonn_closed_form),
            Mle(d.mle_harmonic, d.mle_mean, d.k), d.erank, spread,
        )  # fmt: skip

    def with_spread(self, value: float, key: str) -> str:
        """'11.0 ± 0.2': the estimate at the precision its bootstrap spread supports."""
        s = self.spread.get(key)
        return f"{value:.1f} ± {s.std:.1f}" if s is not None and s.std >= 0.05 else (
            f"{value:.2f} ± {s.std:.2f}" if s is not None else f"{value:.2f}"
        )  # fmt: skip


@dataclass
class DimsResult(Result):
    input: str
    overall: DimsEntry
    sources: dict[str, DimsEntry]
    method: dict[str, str | int]


METHOD = {
    "knn": "one exact kNN (k = 20, Euclidean, float64) shared by TwoNN and MLE",
    "twonn_linear": "fit -log(1 - i/N) = d log mu through the origin, largest 10% of mu discarded",
    "twonn_closed_form": "(N - 1) / sum log mu",
    "mle": "Levina-Bickel, k = 20; harmonic mean (scikit-dimension default) and arithmetic mean",
    "erank": "Roy-Vetterli effective rank of the centred points' singular values",
}


class Dims(Analysis[DimsParams, DimsResult]):
    name = "dims"
    title = "Intrinsic dimension of the outputs"
    description = "Intrinsic dimension (TwoNN, MLE) and linear effective rank of pooled outputs, overall and per source."
    needs = frozenset({Need.EMBEDDINGS})
    Params = DimsParams
    Result = DimsResult

    def compute(self, inputs: Inputs, params: DimsParams) -> DimsResult:
        n = None if params.all else params.sample
        sources: dict[str, np.ndarray] = {}
        method: dict[str, str | int] = dict(METHOD)
        if inputs.embeddings is not None:
            from anatomy.metrics.intrinsic_dim import dedupe_rows
            from anatomy.metrics.points import check_points, load_points

            # a finite real [n, d] array, or one InputError naming the file
            raw = load_points(inputs.embeddings)
            unique, _ = dedupe_rows(raw)
            check_points(unique, name=str(inputs.embeddings))
            overall = unique[sample(np.arange(len(unique)), n, params.seed)]
            name, rule, duplicates = Path(inputs.embeddings).name, "identical rows", len(raw) - len(unique)
            dropped = duplicates  # before sampling: the overall group is what remains of the file
            skipped: list[str] = []
        else:
            store = inputs.store
            drawn = draw_sequences(inputs.need_corpus(), store, n, params.seed, by_source=True)
            require_distinct(inputs.need_corpus(), len(drawn.prompts), MIN_POINTS, "intrinsic dimension")
            inputs.progress(f"dims: {len(drawn.prompts):,} distinct prompts")
            pooled = store.pooled(drawn.prompts)
            overall = pooled[drawn.groups["overall"]]
            sources = {s: pooled[idx] for s, idx in drawn.groups.items()
                       if s != "overall" and len(idx) >= MIN_SOURCE_POINTS}  # fmt: skip
            name, rule = store.encoder.name, "token-id sequences (truncated to the context)"
            duplicates, dropped = drawn.duplicates, 0
            skipped = sorted(set(drawn.groups) - set(sources) - {"overall"})
        method["deduplication"] = f"{rule}; then identical float64 rows"
        method["duplicates_removed_from_sample"] = (
            duplicates  # replaced by further draws while prompts remain
        )
        method["spread"] = (
            f"bootstrap over points ({params.n_boot} draws, neighbours fixed): std and 95% percentile interval"
        )
        if skipped:
            method["sources_skipped"] = (
                f"{', '.join(skipped)}: fewer than {MIN_SOURCE_POINTS} distinct points"
            )
        entry = DimsEntry.of
        return DimsResult(
            input=name,
            overall=entry(overall, params.seed, params.n_boot, dropped),
            sources={s: entry(x, params.seed, params.n_boot) for s, x in sources.items()},
            method=method,
        )

    def figures(self, result: DimsResult) -> dict[str, Any]:
        from anatomy.figures import representation as fig

        return {"dims": fig.draw_dims(fig.prepare_dims(result))}

    def findings(self, result: DimsResult, section: str) -> list[Finding]:
        o = result.overall
        d = o.twonn.linear
        low = d / o.ambient_dim < LOW_INTRINSIC_RATIO
        return [
            Finding(
                "info",
                section,
                "dims.intrinsic",
                f"outputs have intrinsic dimension {o.with_spread(d, 'twonn_linear')} of {o.ambient_dim} (TwoNN; "
                f"MLE {o.with_spread(o.mle.harmonic, 'mle_harmonic')}, {o.n_points:,} prompts)",
                d,
                f"the outputs lie on a ~{d:.0f}-dimensional manifold: a much smaller student can represent them"
                if low
                else "",
            )
        ]

    def paper_rows(self, result: DimsResult) -> list[PaperRow]:
        o = result.overall
        return [
            PaperRow.of("output intrinsic dim (TwoNN)", o.with_spread(o.twonn.linear, "twonn_linear"),
                        paper.OUTPUT_INTRINSIC_DIM),
            PaperRow.of("output intrinsic dim (MLE k=20)", o.with_spread(o.mle.harmonic, "mle_harmonic"),
                        paper.OUTPUT_INTRINSIC_DIM),
            PaperRow.of("output linear effective rank", f"{o.erank:.1f} of {o.ambient_dim}",
                        paper.OUTPUT_LINEAR_ERANK),
            PaperRow.of("prompts / output width", f"{o.n_points:,} / {o.ambient_dim}", paper.OUTPUT_SAMPLE),
        ]  # fmt: skip

    def tables(self, result: DimsResult):
        from anatomy.analysis.base import Table

        rows = []
        for group, e in [("overall", result.overall), *result.sources.items()]:
            rows.append([
                group, f"{e.n_points:,}", str(e.ambient_dim), e.with_spread(e.twonn.linear, "twonn_linear"),
                e.with_spread(e.twonn.closed_form, "twonn_closed_form"),
                e.with_spread(e.mle.harmonic, "mle_harmonic"), e.with_spread(e.mle.mean, "mle_mean"),
                f"{e.erank:.1f}",
            ])  # fmt: skip
        columns = [
            "group",
            "points",
            "dims",
            "TwoNN linear",
            "TwoNN closed",
            "MLE harmonic",
            "MLE mean",
            "erank",
        ]
        return [Table(columns, rows, f"intrinsic dimension: {result.input} (± bootstrap std)")]

    def summary(self, result: DimsResult) -> list[str]:
        return []  # the CLI prints tables()
