"""The effective-rank family of a spectrum, and the spectra of embedding matrices (vocabulary SVD).

Conventions (spec/metrics.md): s are singular values, l = s^2 the variances they carry.
- erank (Roy & Vetterli 2007) = exp(H(p)), p_k = s_k / sum s: the definition that reproduces the paper's pairs;
- erank on l (exp entropy of l / sum l), participation ratio (sum l)^2 / sum l^2, stable rank sum l / l_1;
- n90 = the smallest k whose share of sum l reaches 0.9.
Every matrix is reported both centred (rows minus their mean: PCA) and uncentred (raw SVD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VARIANCE_TARGET = 0.9


@dataclass(frozen=True)
class SpectrumStats:
    n_values: int  # how many singular values (the ambient rank bound)
    erank: float  # Roy-Vetterli, on singular values
    erank_sq: float  # the same entropy formula on l = s^2
    participation_ratio: float
    stable_rank: float
    n90: int


@dataclass(frozen=True)
class MatrixSpectrum:
    shape: tuple[int, int]
    centred: SpectrumStats
    uncentred: SpectrumStats
    singular_values_centred: np.ndarray  # descending, float64
    singular_values_uncentred: np.ndarray


def _entropy_rank(weights: np.ndarray) -> float:
    p = weights / weights.sum()
    p = p[p > 0]  # 0 log 0 = 0
    return float(np.exp(-np.sum(p * np.log(p))))


def n_for_share(variances: np.ndarray, share: float = VARIANCE_TARGET) -> int:
    """Smallest k with sum(l[:k]) >= share * sum(l) (l sorted descending)."""
    cumulative = np.cumsum(np.sort(np.asarray(variances, dtype=np.float64))[::-1])
    # A relative tolerance so a share that reaches the target exactly is not missed through round-off.
    reached = cumulative >= share * cumulative[-1] * (1 - 1e-12)
    return int(np.argmax(reached)) + 1


def spectrum_stats(singular_values: np.ndarray) -> SpectrumStats:
    """The effective-rank family of one spectrum of singular values (any order, zeros allowed)."""
    s = np.sort(np.abs(np.asarray(singular_values, dtype=np.float64)))[::-1]
    if s.size == 0 or s[0] == 0:
        raise ValueError("spectrum is empty or all zero: no rank to measure")
    variances = s**2
    return SpectrumStats(
        n_values=int(s.size),
        erank=_entropy_rank(s),
        erank_sq=_entropy_rank(variances),
        participation_ratio=float(variances.sum() ** 2 / np.sum(variances**2)),
        stable_rank=float(variances.sum() / variances[0]),
        n90=n_for_share(variances),
    )


def singular_values(matrix: np.ndarray, centred: bool) -> np.ndarray:
    """Descending float64 singular values of `matrix` (rows are items), optionally after centring the rows."""
    x = np.asarray(matrix, dtype=np.float64)
    if centred:
        x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] > 4 * x.shape[1]:
        # Tall matrices (a vocabulary): the D x D Gram matrix is far cheaper than a full SVD and its
        # eigenvalues are s^2; clipping removes the tiny negative round-off of a rank-deficient Gram.
        eig = np.linalg.eigvalsh(x.T @ x)[::-1]
        return np.sqrt(np.clip(eig, 0.0, None))
    return np.linalg.svd(x, compute_uv=False)


def matrix_spectrum(matrix: np.ndarray) -> MatrixSpectrum:
    """Centred and uncentred spectra of an [items, dims] matrix, with their effective-rank families."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or min(matrix.shape) < 2:
        raise ValueError(f"need a 2-D matrix with at least 2 rows and columns, got shape {matrix.shape}")
    s_c = singular_values(matrix, centred=True)
    s_u = singular_values(matrix, centred=False)
    return MatrixSpectrum(
        shape=(int(matrix.shape[0]), int(matrix.shape[1])),
        centred=spectrum_stats(s_c),
        uncentred=spectrum_stats(s_u),
        singular_values_centred=s_c,
        singular_values_uncentred=s_u,
    )


def explained_variance(singular_values_desc: np.ndarray) -> np.ndarray:
    """Cumulative share of variance carried by the first 1..k components (the PCA curve)."""
    variances = np.asarray(singular_values_desc, dtype=np.float64) ** 2
    return np.cumsum(variances) / variances.sum()


def linear_erank(points: np.ndarray) -> float:
    """Roy-Vetterli effective rank of centred points: the 'linear' dimension next to intrinsic ones."""
    return spectrum_stats(singular_values(points, centred=True)).erank


# ------------------------------------------------------------------------------------- the analysis unit
# `spectrum`: SVD of the token-embedding matrix, over the full vocabulary and over the ids the corpus uses.

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result  # noqa: E402
from anatomy.findings import Finding  # noqa: E402

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


@dataclass(frozen=True)
class SpectrumParams:
    pass


class Spectrum(Analysis):
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

    def figures(self, result: SpectrumResult) -> dict:
        from anatomy.figures import representation as fig

        return {"spectrum": fig.draw_spectrum(fig.prepare_spectrum(result))}

    def findings(self, result: SpectrumResult, section: str) -> list[Finding]:
        found = []
        for subset, label, entry in (("full", "all tokens", result.full), ("used", "tokens the corpus uses", result.used)):  # fmt: skip
            if entry is None:
                continue
            erank, n90 = entry.uncentred.erank, entry.uncentred.n90
            low = erank / entry.dim < LOW_ERANK_RATIO
            found.append(
                Finding(
                    "warn" if low else "info",
                    section,
                    f"spectrum.{subset}",
                    f"token embeddings ({label}) have effective rank {erank:.0f} of {entry.dim}; "
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
                f"{result.full.uncentred.erank:.1f} of {result.full.dim}",
                paper.EMBED_ERANK_FULL,
            )
        ]
        if result.used is not None:
            rows.append(
                PaperRow.of(
                    "token embeddings effective rank (used)",
                    f"{result.used.uncentred.erank:.1f} of {result.used.dim}",
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
