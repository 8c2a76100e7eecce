"""Anatomy of a learned positional table [L, D]: how alike the positions are, and how many directions they use.

Block means (spec/metrics.md): positions are cut into consecutive blocks of `block` rows; the within-block
mean is over off-diagonal pairs (i != j) of the block, the between-block mean over all pairs of two blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anatomy.metrics.spectra import MatrixSpectrum, explained_variance, matrix_spectrum, n_for_share


@dataclass(frozen=True)
class PositionalAnatomy:
    n_positions: int
    dim: int
    block: int
    cosine: np.ndarray  # [L, L]
    block_means: np.ndarray  # [B, B]: diagonal = within-block off-diagonal mean, else between blocks
    within_block: list[float]  # the diagonal of block_means, one per block
    adjacent: np.ndarray  # [L - 1]: cos(p_i, p_{i+1})
    pca_curve: np.ndarray  # cumulative explained variance of the centred table, components 1..
    n90_pca: int  # components for 90% of the centred variance
    spectrum: MatrixSpectrum  # the effective-rank family, centred and uncentred


def cosine_matrix(table: np.ndarray) -> np.ndarray:
    x = np.asarray(table, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a positional row is all zeros: cosine similarity is undefined for it")
    unit = x / norms
    return unit @ unit.T


def block_means(cosine: np.ndarray, block: int) -> np.ndarray:
    """Mean similarity within each block (off-diagonal pairs) and between each pair of blocks."""
    n = cosine.shape[0]
    edges = list(range(0, n, block)) + [n]
    m = len(edges) - 1
    out = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            sub = cosine[edges[a] : edges[a + 1], edges[b] : edges[b + 1]]
            if a == b:
                size = sub.shape[0]
                out[a, b] = (sub.sum() - np.trace(sub)) / (size * (size - 1)) if size > 1 else np.nan
            else:
                out[a, b] = sub.mean()
    return out


def positional_anatomy(table: np.ndarray, block: int = 8) -> PositionalAnatomy:
    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a positional table [L >= 2, D], got shape {x.shape}")
    if block < 1:
        raise ValueError(f"block size must be at least 1, got {block}")
    cos = cosine_matrix(x)
    means = block_means(cos, block)
    spectrum = matrix_spectrum(x)
    curve = explained_variance(spectrum.singular_values_centred)
    return PositionalAnatomy(
        n_positions=int(x.shape[0]),
        dim=int(x.shape[1]),
        block=block,
        cosine=cos,
        block_means=means,
        within_block=[float(v) for v in np.diag(means)],
        adjacent=np.diag(cos, 1).copy(),
        pca_curve=curve,
        n90_pca=n_for_share(spectrum.singular_values_centred**2),
        spectrum=spectrum,
    )
