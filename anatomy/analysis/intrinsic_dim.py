"""Intrinsic dimension of a point cloud: TwoNN and MLE from one exact k-nearest-neighbour search.

Conventions (spec/metrics.md), chosen to equal scikit-dimension 0.5.0 on the same points:
- points are deduplicated first (a repeated point has r1 = 0, which breaks both estimators) and handled in
  float64;
- one exact kNN (k = 20, self excluded) is computed once; TwoNN reads r1, r2 from it, MLE all k distances;
- TwoNN linear: sort mu = r2/r1, keep the smallest floor(0.9 N), fit -log(1 - i/N) = d log mu through the
  origin; TwoNN closed form: d = (N - 1) / sum log mu over all N;
- MLE (Levina-Bickel): local d_i = (k - 1) / sum_j log(r_k / r_j); combined by the harmonic mean (scikit-
  dimension's default, MacKay-Ghahramani) and by the arithmetic mean;
- spread: a bootstrap over points of the per-point quantities (mu_i, d_i) with the neighbour graph fixed.

The kNN is exact but fast: candidates come from float32 Gram blocks (each pair of row blocks once, using
symmetry), their distances are recomputed in float64 by direct differences, and each row is verified against a
rigorous float32 error bound; a row that cannot be verified is searched again in float64. Large inputs are
searched in a locality order (rows grouped by nearest random pivot), which tightens the per-row thresholds
early; the permutation is undone, so the result is the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

K_NEIGHBOURS = 20
DISCARD_FRACTION = 0.1
F32_UNIT_ROUNDOFF = 2.0**-24


# --------------------------------------------------------------------------------------------- dedupe


def dedupe_rows(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (float64) in first-occurrence order, and the indices they came from.

    Rows are equal when their bytes are equal. Found by a 64-bit hash per row (sorting hashes, not rows),
    with every hash collision checked byte for byte, so memory stays near one copy of the output.
    """
    x = np.asarray(points)
    if x.ndim != 2:
        raise ValueError(f"points must be a 2-D array [n, d], got shape {x.shape}")
    first = _first_of_each_distinct(x)
    unique = np.empty((first.size, x.shape[1]), dtype=np.float64)
    for s in range(0, first.size, _CHUNK):
        unique[s : s + _CHUNK] = x[first[s : s + _CHUNK]]
    return unique, first


_CHUNK = 8192  # rows per slice in the row-wise passes (bounded temporaries)


def _first_of_each_distinct(x: np.ndarray) -> np.ndarray:
    """Ascending indices of the first occurrence of each distinct row (by bytes)."""
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    words = _row_words(np.ascontiguousarray(x))
    hashes = _row_hashes(words)
    order = np.argsort(hashes, kind="stable")  # equal hashes keep ascending row order
    sorted_hashes = hashes[order]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    sizes = np.diff(np.r_[starts, n])
    keep = np.ones(n, dtype=bool)  # per position in `order`
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        rows = np.ascontiguousarray(words[order[start : start + size]])
        _, first = np.unique(
            rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))), return_index=True
        )
        keep[start : start + size] = False
        keep[start + first] = True
    return np.sort(order[keep])


def _row_hashes(words: np.ndarray) -> np.ndarray:
    """A 64-bit linear hash of each row of words (uint64 arithmetic wraps modulo 2**64)."""
    multipliers = np.random.default_rng(0x5EED).integers(1, 2**63, words.shape[1], dtype=np.uint64)
    multipliers |= np.uint64(1)
    hashes = np.empty(len(words), dtype=np.uint64)
    for s in range(0, len(words), _CHUNK):
        hashes[s : s + _CHUNK] = (words[s : s + _CHUNK].astype(np.uint64) * multipliers).sum(axis=1)
    return hashes


def _row_words(x: np.ndarray) -> np.ndarray:
    """The rows' bytes as a 2-D array of the widest unsigned words that divide a row."""
    row_bytes = x.dtype.itemsize * x.shape[1]
    word = next(w for w in (8, 4, 2, 1) if row_bytes % w == 0)
    return x.reshape(len(x), -1).view(np.dtype(f"u{word}")).reshape(len(x), row_bytes // word)


# ------------------------------------------------------------------------------------------ exact kNN


def exact_knn(points: np.ndarray, k: int, block: int = 4096, fast: bool | None = None):
    """Exact k nearest neighbours of every row (self excluded): (distances [n, k] float64 ascending, indices).

    `fast` picks float32 candidate search with verification (default: when n * n * d is large). Memory: the
    float64 points, one working copy in the search dtype and the candidate lists; no other copy of the data.
    """
    x = np.ascontiguousarray(points, dtype=np.float64)
    n, d = x.shape
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n points, got k={k}, n={n}")
    n_cand = min(n - 1, k + max(8, k // 2))  # spare candidates absorb float32 ordering errors
    if fast is None:  # float32 GEMMs run twice as fast; tiny inputs are not worth the verification step
        fast = n * n * d > 1e9
    work_dtype = np.float32 if fast else np.float64
    # Centred (translation-invariant; smaller norms mean smaller rounding errors), in the search dtype.
    mean = x.mean(axis=0)
    work = np.empty((n, d), dtype=work_dtype)
    norms = np.empty(n)
    for s in range(0, n, _CHUNK):
        c = x[s : s + _CHUNK] - mean
        work[s : s + _CHUNK] = c
        norms[s : s + _CHUNK] = np.sqrt((c**2).sum(1))
    order = None
    if fast and n > 2 * block:
        # Search in an order where nearby points share a block (the result does not depend on the order):
        # the diagonal blocks then give tight first thresholds, and far fewer off-diagonal entries survive.
        order = _locality_order(work, block)
        work = work[order]
    cand_i, cand_val = _gram_candidates(work, n_cand, block)
    del work
    if order is not None:  # back to the caller's row order and indices
        unordered_i, unordered_val = np.empty_like(cand_i), np.empty_like(cand_val)
        unordered_i[order], unordered_val[order] = order[cand_i], cand_val
        cand_i, cand_val = unordered_i, unordered_val
    dist, idx = _exact_from_candidates(x, cand_i, k)
    # Rigorous bound on |float squared distance - exact| for row i against any j (see module docstring).
    unit = F32_UNIT_ROUNDOFF if fast else 2.0**-53
    bound = (d + 16) * unit * (norms + norms.max()) ** 2
    # Any point outside the candidates has float value >= the last candidate's; verified when the exact k-th
    # squared distance lies below that minus the bound.
    if n_cand == n - 1:  # every other point was a candidate: nothing can be missing
        return dist, idx
    unverified = np.flatnonzero(dist[:, -1] ** 2 > cand_val.max(axis=1) - bound)
    if unverified.size:
        log.info("kNN: %d of %d rows re-searched in float64", unverified.size, n)
        dist[unverified], idx[unverified] = _rows_float64(x, mean, unverified, k)
    return dist, idx


def _locality_order(x: np.ndarray, block: int, seed: int = 0) -> np.ndarray:
    """A permutation grouping nearby points: rows sorted by their nearest of some random pivot points."""
    import torch

    xf = torch.from_numpy(x)
    pivots = xf[np.random.default_rng(seed).choice(len(x), max(2, 4 * len(x) // block), replace=False)]
    nearest = np.concatenate(
        [torch.cdist(xf[s : s + _CHUNK], pivots).argmin(1).numpy() for s in range(0, len(x), _CHUNK)]
    )
    return np.argsort(nearest, kind="stable")


def _gram_candidates(x: np.ndarray, n_cand: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The n_cand smallest squared distances per row (by Gram blocks of x's dtype), without self.

    Each unordered block pair is multiplied once. The squared norms ride inside the product (augmented
    columns), so a block of squared distances costs one GEMM; a per-row threshold (the current n_cand-th
    value) filters most entries with one comparison, and survivors are merged in batches. torch runs the
    block work (its GEMM, comparisons and top-k use every core; numpy's elementwise work uses one).
    """
    import torch

    n = len(x)
    xt = torch.from_numpy(x)
    sq = torch.from_numpy(
        np.concatenate(
            [(x[s : s + _CHUNK].astype(np.float64) ** 2).sum(1) for s in range(0, n, _CHUNK)]
        ).astype(x.dtype)
    )
    if n <= 2 * block:  # small: row panels against every column, one top-k each (no thresholds, no merging)
        return _panel_candidates(xt, sq, n_cand, -(-n // -(-n // (block // 2 or 1))))
    block = max(block, n_cand + 1)
    block = -(-n // -(-n // block))  # equal blocks (5,000 rows: 2 x 2,500, not 4,096 + 904)
    starts = list(range(0, n, block))
    cand = _Candidates(n, n_cand, x.dtype)
    thr = cand.threshold  # flushes update it in place
    # Reused output buffers: allocating (and page-faulting) a fresh block per product costs as much as the
    # comparisons themselves.
    d2_buf = torch.empty((block, block), dtype=xt.dtype)
    mask_buf = np.empty((block, block), dtype=bool)

    def squared(s: int, e: int, t: int, f: int) -> torch.Tensor:
        """|x_i|^2 + |x_j|^2 - 2 x_i.x_j for rows s:e against t:f: one GEMM, one pass (into the buffer)."""
        out = d2_buf[: e - s, : f - t]
        torch.addmm(sq[None, t:f], xt[s:e], xt[t:f].T, alpha=-2, out=out)
        return out.add_(sq[s:e, None])

    for s in starts:  # diagonal blocks: a first threshold for every row
        e = min(s + block, n)
        d2 = squared(s, e, s, e)  # (the buffer: topk copies what it keeps)
        d2.fill_diagonal_(float("inf"))
        if e - s - 1 < n_cand:  # a short last block: let the off-diagonal pairs fill it
            cand.add(
                s,
                np.repeat(np.arange(s, e), e - s),
                np.tile(np.arange(s, e), e - s),
                d2.numpy().ravel().copy(),
            )
            continue
        value, top = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False)
        cand.set_rows(s, top.numpy() + s, value.numpy())
    for bi, s in enumerate(starts):
        e = min(s + block, n)
        cand.flush(s)  # survivors from earlier pairs tighten this block's thresholds first
        for t in starts[bi + 1 :]:
            f = min(t + block, n)
            d2 = squared(s, e, t, f)
            # numpy's comparison and flatnonzero are several times faster than torch's lt and nonzero here.
            d2n, mask = d2.numpy(), mask_buf[: e - s, : f - t]
            r, c = np.divmod(np.flatnonzero(np.less(d2n, thr[s:e, None], out=mask)), f - t)
            cand.add(s, r + s, c + t, d2n[r, c])
            r, c = np.divmod(np.flatnonzero(np.less(d2n, thr[None, t:f], out=mask)), f - t)
            cand.add(t, c + t, r + s, d2n[r, c])
            cand.flush_if_full(s, e - s)
            cand.flush_if_full(t, f - t)
        cand.flush(s)
    return cand.index, cand.value.astype(np.float64)


def _panel_candidates(xt, sq, n_cand: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The n_cand smallest squared distances per row, by panels of `rows` rows against all n (small n)."""
    import torch

    n = len(xt)
    index = np.empty((n, n_cand), dtype=np.int64)
    value = np.empty((n, n_cand))
    buf = torch.empty((min(rows, n), n), dtype=xt.dtype)
    for s in range(0, n, rows):
        e = min(s + rows, n)
        d2 = torch.addmm(sq[None, :], xt[s:e], xt.T, alpha=-2, out=buf[: e - s]).add_(sq[s:e, None])
        d2[torch.arange(e - s), torch.arange(s, e)] = float("inf")  # not its own neighbour
        v, i = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False)
        index[s:e], value[s:e] = i.numpy(), v.numpy()
    return index, value


@dataclass
class _Candidates:
    """Per-row best n_cand (value, index) lists with buffered, batched merging per row block."""

    n: int
    n_cand: int
    dtype: np.dtype
    index: np.ndarray = field(init=False)
    value: np.ndarray = field(init=False)
    threshold: np.ndarray = field(init=False)
    buffers: dict = field(default_factory=dict)  # block start -> list of (rows, cols, values)

    def __post_init__(self):
        self.index = np.full((self.n, self.n_cand), -1, dtype=np.int64)
        self.value = np.full((self.n, self.n_cand), np.inf, dtype=self.dtype)
        self.threshold = np.full(self.n, np.inf, dtype=self.dtype)

    def set_rows(self, start, index, value):
        stop = start + len(index)
        self.index[start:stop], self.value[start:stop] = index, value
        self.threshold[start:stop] = value.max(1)  # in place: a torch view shares this array

    def add(self, start, rows, cols, values):
        if rows.size:
            self.buffers.setdefault(start, []).append((rows, cols, values))

    def flush_if_full(self, start, n_rows):
        # Merge once a block has gathered about two extra lists per row, so thresholds stay tight.
        if sum(b[0].size for b in self.buffers.get(start, ())) > 2 * self.n_cand * n_rows:
            self.flush(start)

    def flush(self, start):
        parts = self.buffers.pop(start, [])
        if not parts:
            return
        rows = np.concatenate([p[0] for p in parts])
        touched = np.unique(rows)
        rows = np.concatenate([np.repeat(touched, self.n_cand), rows])
        cols = np.concatenate([self.index[touched].ravel(), *(p[1] for p in parts)])
        vals = np.concatenate([self.value[touched].ravel(), *(p[2] for p in parts)])
        order = np.lexsort((vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
        keep = rank < self.n_cand
        self.index[rows[keep], rank[keep]] = cols[keep]
        self.value[rows[keep], rank[keep]] = vals[keep]
        self.threshold[touched] = self.value[touched, -1]


def _exact_from_candidates(x: np.ndarray, cand_i: np.ndarray, k: int, chunk: int = 64):
    """Float64 distances by direct differences for each row's candidates; the k smallest, ascending.

    Small chunks keep the gathered candidate rows in cache (numpy's take and einsum beat torch's gather here).
    """
    n = len(x)
    dist = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, chunk):
        ci = cand_i[s : s + chunk]
        diff = np.take(x, np.maximum(ci, 0), axis=0)
        diff -= x[s : s + chunk, None, :]
        dd = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        dd[ci < 0] = np.inf
        order = np.argsort(dd, axis=1, kind="stable")[:, :k]
        dist[s : s + chunk] = np.take_along_axis(dd, order, 1)
        idx[s : s + chunk] = np.take_along_axis(ci, order, 1)
    return dist, idx


def _rows_float64(x: np.ndarray, mean: np.ndarray, rows: np.ndarray, k: int, chunk: int = 256):
    """Exact neighbours of selected rows against all points, searched in float64 (rarely needed)."""
    import torch

    ct = torch.from_numpy(x - mean)
    sq = (ct**2).sum(1)
    n_cand = min(len(x) - 1, k + 8)
    dist = np.empty((rows.size, k))
    idx = np.empty((rows.size, k), dtype=np.int64)
    for s in range(0, rows.size, chunk):
        r = torch.from_numpy(rows[s : s + chunk])
        d2 = sq[r, None] + sq[None, :] - 2 * ct[r] @ ct.T
        d2[torch.arange(r.numel()), r] = torch.inf
        cand = torch.topk(d2, n_cand, dim=1, largest=False).indices.numpy()
        diff = x[cand] - x[r.numpy(), None, :]
        dd = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        order = np.argsort(dd, axis=1, kind="stable")[:, :k]
        dist[s : s + chunk] = np.take_along_axis(dd, order, 1)
        idx[s : s + chunk] = np.take_along_axis(cand, order, 1)
    return dist, idx


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
    """TwoNN (both forms) and MLE (both means) from one kNN distance table."""
    mu = knn_dist[:, 1] / knn_dist[:, 0]
    local = mle_local(knn_dist)
    return {
        "twonn_linear": twonn_linear(mu),
        "twonn_closed_form": twonn_closed_form(mu),
        "mle_harmonic": harmonic_mean(local),
        "mle_mean": float(np.mean(local)),
    }


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
            _dot(x, y) / _dot(x, x),
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
    """`spectrum.linear_erank` of float64 points via their centred Gram matrix, built in row chunks (no
    centred copy of the data; torch's GEMM and eigvalsh, which do not contend with its kNN threads)."""
    import torch

    from anatomy.analysis.spectrum import linear_erank, spectrum_stats

    n, d = x.shape
    if n <= 4 * d:  # not tall: the SVD path
        return linear_erank(x)
    mean = torch.from_numpy(x.mean(axis=0))
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


def intrinsic_dim(
    points: np.ndarray, k: int = K_NEIGHBOURS, n_boot: int = 200, seed: int = 0, fast: bool | None = None
) -> IntrinsicDim:
    """Deduplicate, compute one exact kNN, and derive every estimate (with its bootstrap spread)."""
    from anatomy.analysis.points import check_array, check_points

    raw = check_array(points)  # finite real [n, d]: InputError (a ValueError too) otherwise
    x, _ = dedupe_rows(raw)
    check_points(x, k)
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
