"""Exact k nearest neighbours of every row, fast (used by the intrinsic dimension and the kNN overlaps).

Candidates come from float32 Gram blocks (each pair of row blocks once, using symmetry), their distances are
recomputed in float64 by direct differences, and each row is verified against a rigorous float32 error bound;
a row that cannot be verified is searched again in float64. Large inputs are searched in a locality order (rows
grouped by nearest random pivot), which tightens the per-row thresholds early; the permutation is undone, so
the result is the same. Memory: the float64 points, one working copy in the search dtype and the candidate lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

F32_UNIT_ROUNDOFF = 2.0**-24
_CHUNK = 8192  # rows per slice in the row-wise passes (bounded temporaries)

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
