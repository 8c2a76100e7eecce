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
