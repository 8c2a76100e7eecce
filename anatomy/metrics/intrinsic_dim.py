"""Intrinsic dimension of a point cloud: TwoNN and MLE from one exact k-nearest-neighbour search.

Conventions (spec/metrics.md), chosen to equal scikit-dimension 0.5.0 on the same points:
- points are deduplicated first (a repeated point has r1 = 0, which breaks both estimators) and handled in
  float64 (the distances; float32 points are not copied);
- one exact kNN (k = 20, self excluded) is computed once; TwoNN reads r1, r2 from it, MLE all k distances;
- TwoNN linear: sort mu = r2/r1, keep the smallest floor(0.9 N), fit -log(1 - i/N) = d log mu through the
  origin; TwoNN closed form: d = (N - 1) / sum log mu over all N;
- MLE (Levina-Bickel): local d_i = (k - 1) / sum_j log(r_k / r_j); combined by the harmonic mean (scikit-
  dimension's default, MacKay-Ghahramani) and by the arithmetic mean;
- spread: a bootstrap over points of the per-point quantities (mu_i, d_i) with the neighbour graph fixed.

The exact kNN lives in anatomy.metrics.knn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anatomy.metrics.knn import exact_knn
from anatomy.metrics.points import PointsError

K_NEIGHBOURS = 20
DISCARD_FRACTION = 0.1


# --------------------------------------------------------------------------------------------- dedupe


def dedupe_rows(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows in first-occurrence order, and the indices they came from.

    Rows are equal when their values are: compared by their bytes with -0.0 read as 0.0 (NaN is refused
    before). Found by a 64-bit hash per row (sorting hashes, not rows), with every hash collision checked
    byte for byte. float32 and float64 points keep their dtype (the kNN takes differences in float64 either
    way, so every estimate is the same); other numbers become float64 first (integers past 2^53 that round
    to one float64 are one point); when no row repeats, the points themselves come back (no copy).
    """
    x = np.asarray(points)
    if x.ndim != 2:
        raise ValueError(f"points must be a 2-D array [n, d], got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    first = _first_of_each_distinct(x)
    return (x if first.size == len(x) else x[first]), first


_CHUNK = 8192  # rows per slice in the row-wise passes (bounded temporaries)


def _first_of_each_distinct(x: np.ndarray) -> np.ndarray:
    """Ascending indices of the first occurrence of each distinct row (by bytes)."""
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    hashes = _row_hashes(x)
    order = np.argsort(hashes, kind="stable")  # equal hashes keep ascending row order
    sorted_hashes = hashes[order]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    sizes = np.diff(np.r_[starts, n])
    keep = np.ones(n, dtype=bool)  # per position in `order`
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        rows = _row_words(x[order[start : start + size]])
        _, first = np.unique(
            rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))), return_index=True
        )
        keep[start : start + size] = False
        keep[start + first] = True
    return np.sort(order[keep])


def _row_hashes(x: np.ndarray) -> np.ndarray:
    """A 64-bit linear hash of each row's words (uint64 arithmetic wraps modulo 2**64), a chunk at a time."""
    hashes = np.empty(len(x), dtype=np.uint64)
    multipliers = None
    for s in range(0, len(x), _CHUNK):
        words = _row_words(x[s : s + _CHUNK])
        if multipliers is None:
            multipliers = np.random.default_rng(0x5EED).integers(1, 2**63, words.shape[1], dtype=np.uint64)
            multipliers |= np.uint64(1)
        hashes[s : s + _CHUNK] = (words.astype(np.uint64) * multipliers).sum(axis=1)
    return hashes


def _row_words(x: np.ndarray) -> np.ndarray:
    """The rows' bytes as a 2-D array of the widest unsigned words that divide a row; floats with -0.0 made
    0.0 first (equal values, different bytes: as two points they would sit at distance 0)."""
    x = np.ascontiguousarray(x + x.dtype.type(0) if x.dtype.kind == "f" else x)
    row_bytes = x.dtype.itemsize * x.shape[1]
    word = next(w for w in (8, 4, 2, 1) if row_bytes % w == 0)
    return x.reshape(len(x), -1).view(np.dtype(f"u{word}")).reshape(len(x), row_bytes // word)


# -------------------------------------------------------------------------------------------- estimators


def twonn_linear(mu: np.ndarray, discard_fraction: float = DISCARD_FRACTION) -> float:
    """Facco et al.: slope through the origin of -log(1 - i/N) against log mu_(i), largest ratios dropped."""
    mu = np.sort(np.asarray(mu, dtype=np.float64))
    n = mu.size
    n_keep = int(n * (1 - discard_fraction))
    if not 0 < discard_fraction < 1 or n_keep < 2:
        raise ValueError(
            f"need 0 < discard_fraction < 1 and >= 2 kept ratios (n={n}, discard={discard_fraction})"
        )
    x = np.log(mu[:n_keep])
    y = -np.log(1 - np.arange(1, n_keep + 1) / n)
    if not x.any():
        raise PointsError(
            f"TwoNN is undefined here: for all {n_keep:,} kept points the two nearest neighbours are at one "
            "distance (r2 = r1), as on a grid or with binary or quantised values",
            "intrinsic dimension needs points whose neighbour distances vary (add a little noise?)",
        )
    return float(_dot(x, y) / _dot(x, x))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product without BLAS: a multithreaded BLAS dot of 10^5 numbers takes 25 ms on a busy machine."""
    return float(np.einsum("i,i->", a, b))


def twonn_closed_form(mu: np.ndarray) -> float:
    """The unbiased Pareto-shape maximum likelihood estimate (N - 1) / sum log mu over all points."""
    log_mu = np.log(np.asarray(mu, dtype=np.float64))
    return float((log_mu.size - 1) / log_mu.sum())


def mle_local(knn_dist: np.ndarray) -> np.ndarray:
    """Levina-Bickel local estimates from each row's ascending k neighbour distances."""
    r = np.asarray(knn_dist, dtype=np.float64)
    k = r.shape[1]
    with np.errstate(divide="ignore"):  # k equidistant neighbours: inf (estimates_from_knn refuses it)
        return (k - 1) / np.log(r[:, -1:] / r).sum(1)


def harmonic_mean(values: np.ndarray) -> float:
    return float(1.0 / np.mean(1.0 / values))


@dataclass(frozen=True)
class IntrinsicDim:
    n_points: int  # after deduplication
    n_duplicates: int  # rows dropped as exact repeats
    ambient_dim: int
    k: int
    twonn_linear: float
    twonn_closed_form: float
    mle_harmonic: float
    mle_mean: float
    erank: float
    spread: dict  # estimate -> {"std", "low", "high"} (bootstrap percentiles)

    def as_result(self) -> dict:
        """The JSON shape of `anatomy dims` for one group of points."""
        return {
            "n_points": self.n_points,
            "n_duplicates": self.n_duplicates,
            "ambient_dim": self.ambient_dim,
            "twonn": {"linear": self.twonn_linear, "closed_form": self.twonn_closed_form},
            "mle": {"harmonic": self.mle_harmonic, "mean": self.mle_mean, "k": self.k},
            "erank": self.erank,
            "spread": self.spread,
        }


def estimates_from_knn(knn_dist: np.ndarray) -> dict[str, float]:
    """TwoNN (both forms) and MLE (both means) from one kNN distance table (of distinct points)."""
    _check_measurable(knn_dist)
    mu = knn_dist[:, 1] / knn_dist[:, 0]
    local = mle_local(knn_dist)
    tied = np.isinf(local)
    if tied.any():
        raise PointsError(
            f"the MLE is undefined here: the k = {knn_dist.shape[1]} nearest neighbours of {tied.sum():,} of "
            f"{tied.size:,} points are all at one distance (a grid, or binary or quantised values?)",
            "intrinsic dimension needs points whose neighbour distances vary (add a little noise?)",
        )
    return {
        "twonn_linear": twonn_linear(mu),
        "twonn_closed_form": twonn_closed_form(mu),
        "mle_harmonic": harmonic_mean(local),
        "mle_mean": float(np.mean(local)),
    }


def _check_measurable(knn_dist: np.ndarray) -> None:
    """Distinct points at distance 0: their difference squares to below float64's range."""
    zero = knn_dist[:, 0] == 0
    if zero.any():
        raise PointsError(
            f"{zero.sum():,} distinct point(s) lie closer to a neighbour than float64 can measure (their "
            "squared distance underflows to 0)",
            "round the points (e.g. to float32) or scale them up first",
        )


def bootstrap_spread(knn_dist: np.ndarray, n_boot: int = 200, seed: int = 0, level: float = 0.95) -> dict:
    """Resample points (with their fixed neighbour distances) and recompute each estimate.

    Each draw equals the estimators on `mu[pick]`, `local[pick]`, without sorting: the sorted sample is the
    once-sorted ratios repeated by how often each was drawn, and logs and reciprocals are taken once.
    """
    rng = np.random.default_rng(seed)
    mu = knn_dist[:, 1] / knn_dist[:, 0]
    local = mle_local(knn_dist)
    n = mu.size
    by_value = np.argsort(mu, kind="stable")
    place = np.empty(n, dtype=np.int64)
    place[by_value] = np.arange(n)  # position of each point in the sorted order
    log_sorted = np.log(mu[by_value])
    log_mu, inverse_local = np.log(mu), 1.0 / local
    n_keep = int(n * (1 - DISCARD_FRACTION))
    if n_keep < 2:
        raise ValueError(f"need >= 2 kept ratios for the linear TwoNN (n={n})")
    y = -np.log(1 - np.arange(1, n_keep + 1) / n)
    draws = np.empty((4, n_boot))
    for b in range(n_boot):
        pick = rng.integers(0, n, n)
        x = np.repeat(log_sorted, np.bincount(place[pick], minlength=n))[:n_keep]
        draws[:, b] = (
            _dot(x, y) / _dot(x, x) if x.any() else np.nan,  # a draw of only tied points: no slope
            (n - 1) / log_mu[pick].sum(),
            1.0 / np.mean(inverse_local[pick]),
            np.mean(local[pick]),
        )
    tail = (1 - level) / 2 * 100
    names = ("twonn_linear", "twonn_closed_form", "mle_harmonic", "mle_mean")
    return {
        name: {
            "std": float(np.std(v, ddof=1)),
            "low": float(np.percentile(v, tail)),
            "high": float(np.percentile(v, 100 - tail)),
        }
        for name, v in zip(names, draws, strict=True)
    }


def centred_erank(x: np.ndarray) -> float:
    """`spectrum.linear_erank` of the points (in float64) via their centred Gram matrix, built in row chunks (no
    centred copy of the data; torch's GEMM and eigvalsh, which do not contend with its kNN threads)."""
    import torch

    from anatomy.metrics.spectra import linear_erank, spectrum_stats

    n, d = x.shape
    if n <= 4 * d:  # not tall: the SVD path
        return linear_erank(np.asarray(x, dtype=np.float64))
    mean = torch.from_numpy(x.mean(axis=0, dtype=np.float64))
    gram = torch.zeros((d, d), dtype=torch.float64)
    for s in range(0, n, _CHUNK):
        c = torch.from_numpy(x[s : s + _CHUNK]) - mean
        gram.addmm_(c.T, c)
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # a small eigenproblem: threads only spin (500 ms instead of 20 on a busy machine)
    try:
        eig = torch.linalg.eigvalsh(gram).numpy()[::-1]
    finally:
        torch.set_num_threads(threads)
    return spectrum_stats(np.sqrt(np.clip(eig, 0.0, None))).erank


def _scaled_up(x: np.ndarray) -> np.ndarray:
    """Points spread over less than 2^-64 times a power of two that brings the spread near 1 (exact; every
    estimate is scale-free): tiny float64 points would otherwise square to below float64's range."""
    span = float(np.max(x.max(axis=0) - x.min(axis=0)))
    if not 0 < span < 2.0**-64:
        return x
    return x * x.dtype.type(2.0 ** -np.frexp(span)[1])


def intrinsic_dim(
    points: np.ndarray, k: int = K_NEIGHBOURS, n_boot: int = 200, seed: int = 0, fast: bool | None = None
) -> IntrinsicDim:
    """Deduplicate, compute one exact kNN, and derive every estimate (with its bootstrap spread)."""
    from anatomy.metrics.points import check_array, check_points

    raw = check_array(points)  # finite real [n, d]: InputError (a ValueError too) otherwise
    x, _ = dedupe_rows(raw)
    check_points(x, k)
    x = _scaled_up(x)
    k_used = min(k, len(x) - 1)
    dist, _ = exact_knn(x, k_used, fast=fast)
    values = estimates_from_knn(dist)
    return IntrinsicDim(
        n_points=len(x),
        n_duplicates=len(raw) - len(x),
        ambient_dim=int(x.shape[1]),
        k=k_used,
        erank=centred_erank(x),
        spread=bootstrap_spread(dist, n_boot, seed) if n_boot else {},
        **values,
    )
