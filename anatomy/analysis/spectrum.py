"""`spectrum`: SVD of the token-embedding matrix, over the full vocabulary and over the ids the corpus uses.

The math (the effective-rank family, matrix spectra) lives in anatomy.metrics.spectra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result
from anatomy.findings import Finding
from anatomy.metrics.spectra import MatrixSpectrum, SpectrumStats, matrix_spectrum

# Token effective rank / width below which the token-embedding space is called compressible.
LOW_ERANK_RATIO = 0.5


@dataclass
class SpectrumPair:
    centred: SpectrumStats
    uncentred: SpectrumStats

    @classmethod
    def of(cls, spec: MatrixSpectrum) -> SpectrumPair:
        return cls(spec.centred, spec.uncentred)


@dataclass
class SingularValues:
    centred: list[float]
    uncentred: list[float]


@dataclass
class MatrixEntry:
    rows: int
    dim: int
    centred: SpectrumStats
    uncentred: SpectrumStats
    singular_values: SingularValues
    n_ids: int | None = None  # the used subset: how many ids, and the rule that chose them
    rule: str | None = None

    @classmethod
    def of(cls, matrix: np.ndarray, **extra) -> MatrixEntry:
        spec = matrix_spectrum(matrix)
        values = SingularValues(
            spec.singular_values_centred.tolist(), spec.singular_values_uncentred.tolist()
        )
        return cls(spec.shape[0], spec.shape[1], spec.centred, spec.uncentred, values, **extra)


@dataclass
class SpectrumResult(Result):
    encoder: str
    vocab_size: int
    full: MatrixEntry
    used: MatrixEntry | None = None


def _rank_bound(entry: MatrixEntry) -> int:
    """The largest rank the matrix can have: its width, or its row count when it has fewer rows."""
    return min(entry.rows, entry.dim)


def _of(entry: MatrixEntry) -> str:
    """What an effective rank is out of: '384', or '46 (its rows; width 384)' for a short matrix."""
    bound = _rank_bound(entry)
    return f"{bound}" if bound == entry.dim else f"{bound} (its rows; width {entry.dim})"


@dataclass(frozen=True)
class SpectrumParams:
    pass


class Spectrum(Analysis[SpectrumParams, SpectrumResult]):
    name = "spectrum"
    title = "Token-embedding spectrum"
    description = (
        "SVD of the token-embedding matrix (full vocabulary, and the ids the corpus uses): effective ranks."
    )
    needs = frozenset({Need.ENCODER})
    optional = frozenset({Need.CORPUS})  # with a corpus: also the ids it uses
    Params = SpectrumParams
    Result = SpectrumResult

    def compute(self, inputs: Inputs, params: SpectrumParams) -> SpectrumResult:
        encoder = inputs.encoder
        table = encoder.token_embedding()
        matrix = table.detach().float().cpu().numpy() if hasattr(table, "detach") else np.asarray(table)
        result = SpectrumResult(encoder.name, int(matrix.shape[0]), MatrixEntry.of(matrix))
        if inputs.corpus is not None:
            from anatomy.corpus.stream import used_ids

            used = used_ids(
                inputs.corpus, encoder.tokenizer, matrix.shape[0]
            )  # batch by batch, plus start/end
            rule = "ids in the corpus plus start and end"
            result.used = MatrixEntry.of(matrix[used], n_ids=int(used.size), rule=rule)
        return result

    def figures(self, result: SpectrumResult) -> dict[str, Any]:
        from anatomy.figures import representation as fig

        return {"spectrum": fig.draw_spectrum(fig.prepare_spectrum(result))}

    def findings(self, result: SpectrumResult, section: str) -> list[Finding]:
        found = []
        for subset, label, entry in (("full", "all tokens", result.full), ("used", "tokens the corpus uses", result.used)):  # fmt: skip
            if entry is None:
                continue
            erank, n90 = entry.uncentred.erank, entry.uncentred.n90
            low = erank / _rank_bound(entry) < LOW_ERANK_RATIO  # 43 of 46 rows is full rank, not compressible
            found.append(
                Finding(
                    "warn" if low else "info",
                    section,
                    f"spectrum.{subset}",
                    f"token embeddings ({label}) have effective rank {erank:.0f} of {_of(entry)}; "
                    f"90% of energy in {n90} dimensions",
                    erank,
                    "the embedding table is compressible: a narrower width loses little" if low else "",
                )
            )
        return found

    def paper_rows(self, result: SpectrumResult) -> list[PaperRow]:
        from anatomy import paper

        rows = [
            PaperRow.of(
                "token embeddings effective rank (full)",
                f"{result.full.uncentred.erank:.1f} of {_of(result.full)}",
                paper.EMBED_ERANK_FULL,
            )
        ]
        if result.used is not None:
            rows.append(
                PaperRow.of(
                    "token embeddings effective rank (used)",
                    f"{result.used.uncentred.erank:.1f} of {_of(result.used)}",
                    paper.EMBED_ERANK_USED,
                )
            )
        rows.append(
            PaperRow.of(
                "token embeddings dims for 90%",
                f"{result.full.uncentred.n90} of {result.full.dim}",
                paper.EMBED_N90,
            )
        )
        return rows

    def summary(self, result: SpectrumResult) -> list[str]:
        lines = rank_family_lines(f"full vocabulary ({result.vocab_size:,} ids)", result.full)
        if result.used is not None:
            lines += rank_family_lines(f"used subset ({result.used.n_ids:,} ids)", result.used)
        return lines


def rank_family_lines(title: str, entry) -> list[str]:
    """One line per centring with the effective-rank family (entry has .centred and .uncentred stats)."""
    lines = []
    for centring in ("centred", "uncentred"):
        s = getattr(entry, centring)
        lines.append(
            f"{title} ({centring}): erank {s.erank:.1f} of {s.n_values}, erank(s^2) {s.erank_sq:.1f}, "
            f"participation {s.participation_ratio:.1f}, stable {s.stable_rank:.2f}, n90 {s.n90}"
        )
    return lines
