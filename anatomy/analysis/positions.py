"""`positions`: how alike the rows of an encoder's learned positional table are, and how many directions
they use (cosine matrix, block means, adjacent similarity, PCA curve, effective ranks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from anatomy import paper
from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, param, transient
from anatomy.analysis.spectrum import SpectrumPair, rank_family_lines
from anatomy.errors import EncoderError
from anatomy.findings import Finding

# Mean similarity within every block after the first at or above which later positions are "nearly alike".
POSITION_SIMILAR = 0.7


@dataclass(frozen=True)
class PositionsParams:
    block: int = param(8, "Block size for the block means.", min=1, max=4096)
    rows: str = param(
        "context", "context: the first context-length rows; all: the whole table.", choices=("context", "all")
    )


@dataclass
class Adjacent:
    mean: float
    values: list[float]


@dataclass
class Pca:
    n90: int
    cumulative: list[float]


@dataclass
class PositionsResult(Result):
    encoder: str
    table_rows: int
    rows_analysed: int
    rows_rule: str
    dim: int
    block: int
    within_block: list[float | None]
    block_means: list[list[float | None]]
    adjacent: Adjacent
    pca: Pca
    spectrum: SpectrumPair
    cosine: np.ndarray | None = transient()

    def block_labels(self) -> list[str]:
        """'0-7', '8-15', ... for the blocks (the last one may be shorter)."""
        n, b = self.rows_analysed, self.block
        return [f"{a}-{min(a + b, n) - 1}" for a in range(0, n, b)]


class Positions(Analysis[PositionsParams, PositionsResult]):
    name = "positions"
    title = "Positional embeddings"
    description = "How alike the rows of the learned positional table are: cosine matrix, block means, PCA, effective ranks."
    needs = frozenset({Need.ENCODER})
    Params = PositionsParams
    Result = PositionsResult

    def not_applicable(self, inputs: Inputs) -> str | None:
        """Applies to encoders with an absolute (learned) positional table; rotary or relative ones have none."""
        if inputs.encoder is not None and inputs.encoder.positional_embedding() is None:
            return f"{inputs.encoder.name} has no absolute positional table (rotary or relative positions)"
        return None

    def compute(self, inputs: Inputs, params: PositionsParams) -> PositionsResult:
        from anatomy.metrics.positional import positional_anatomy

        encoder = inputs.encoder
        table = encoder.positional_embedding()
        if table is None:
            raise EncoderError(
                f"{encoder.name} has no learned positional table (rotary or relative positions)",
                "positions applies to encoders with an absolute position table",
            )
        full = table.detach().float().cpu().numpy() if hasattr(table, "detach") else np.asarray(table)
        used = full if params.rows == "all" else full[: encoder.context_length]
        got = positional_anatomy(used, block=params.block)
        rule = (
            f"the first {got.n_positions} rows (the encoder's context length) of its {full.shape[0]}-row table"
            if params.rows == "context"
            else f"the whole {full.shape[0]}-row table"
        )
        return PositionsResult(
            encoder=encoder.name,
            table_rows=int(full.shape[0]),
            rows_analysed=got.n_positions,
            rows_rule=rule,
            dim=got.dim,
            block=params.block,
            within_block=_finite(got.within_block),
            block_means=[_finite(row) for row in got.block_means.tolist()],
            adjacent=Adjacent(float(got.adjacent.mean()), got.adjacent.tolist()),
            pca=Pca(got.n90_pca, got.pca_curve.tolist()),
            spectrum=SpectrumPair.of(got.spectrum),
            cosine=got.cosine,
        )

    def figures(self, result: PositionsResult) -> dict[str, Any]:
        from anatomy.figures import representation as fig

        drawn = {
            "positions_blocks": fig.draw_positions_blocks(fig.prepare_positions_blocks(result)),
            "positions_pca": fig.draw_positions_pca(fig.prepare_positions_pca(result)),
        }
        if result.cosine is not None:
            drawn["positions_heatmap"] = fig.draw_positions_heatmap(result.cosine)
        return drawn

    def findings(self, result: PositionsResult, section: str) -> list[Finding]:
        n = result.rows_analysed
        found = [
            Finding(
                "info",
                section,
                "positions.n90",
                f"90% of positional variance lies in {result.pca.n90} of {n} components",
                result.pca.n90,
            )
        ]
        within = result.within_block
        if within:
            shown = ", ".join(
                f"{lab} {_f2(v)}" for lab, v in list(zip(result.block_labels(), within, strict=False))[:4]
            )
            more = f" (… {len(within)} blocks)" if len(within) > 4 else ""
            tail = [v for v in within[1:] if v is not None]
            similar = bool(tail) and min(tail) >= POSITION_SIMILAR
            found.append(
                Finding(
                    "warn" if similar else "info",
                    section,
                    "positions.blocks",
                    f"mean positional similarity within blocks: {shown}{more}",
                    within[0],
                    "later positions are nearly alike: a shorter context loses little position information"
                    if similar
                    else "",
                )
            )
        return found

    def paper_rows(self, result: PositionsResult) -> list[PaperRow]:
        labels, within = result.block_labels(), result.within_block
        n = result.rows_analysed
        rows = [
            PaperRow.of("positional: PCA components for 90%", f"{result.pca.n90} of {n}", paper.POS_N90),
            PaperRow.of(
                "positional: effective rank (uncentred / centred)",
                f"{result.spectrum.uncentred.erank:.1f} / {result.spectrum.centred.erank:.1f}",
                paper.POS_ERANK,
            ),
        ]
        if within:
            rows.append(
                PaperRow.of(
                    f"positional similarity within {labels[0]}", _f2(within[0]), paper.POS_BLOCK_FIRST
                )
            )
        if len(within) > 1:
            later = ", ".join(f"{lab}: {_f2(v)}" for lab, v in list(zip(labels, within, strict=False))[1:4])
            rows.append(
                PaperRow.of("positional similarity within later blocks", later, paper.POS_BLOCK_LATER)
            )
        return rows

    def summary(self, result: PositionsResult) -> list[str]:
        within = ", ".join(_f2(v) for v in result.within_block[:8])
        more = " ..." if len(result.within_block) > 8 else ""
        return [
            f"{result.encoder}: {result.rows_rule}, {result.dim} dims",
            f"within-block mean cosine (block {result.block}): {within}{more}",
            f"adjacent positions: mean cosine {result.adjacent.mean:.3f}; "
            f"PCA: {result.pca.n90} components for 90%",
            *rank_family_lines("table", result.spectrum),
        ]


def _finite(values) -> list[float | None]:
    return [float(v) if v is not None and np.isfinite(v) else None for v in values]


def _f2(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"
