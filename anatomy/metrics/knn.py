"""Exact k nearest neighbours of every row, fast (used by the intrinsic dimension and the kNN overlaps).

Candidates come from low-precision Gram blocks: bfloat16 where the CPU has AMX (MKL's bf16 x bf16 -> float32
GEMM, about 4x float32's speed per core on the study's machine), float32 elsewhere, and every value carries a
rigorous error bound per row (anatomy.metrics.knn_operand). Up to 8 blocks of 1,024 points, slices of rows
are multiplied against every point and each row keeps its smallest values; beyond, each pair of blocks is
multiplied once and survivors are merged into per-row lists. Distances are recomputed in float64 by direct
differences, cheapest candidates first, and every row is verified: no point left unmeasured can be nearer
than its k-th neighbour. A row that cannot be verified is searched again against every point with the same
bound (float64 values where the bound is too loose). Large inputs are searched in a locality order (rows
grouped by nearest random pivot), which tightens the per-row thresholds early; the permutation is undone, so
the result is the same.

Alternatives measured and not taken: torch's bfloat16 matmul (oneDNN) is faster still but rounds its output
to bfloat16 inside the library, so its error is not bounded by anything we control; int8 (exact integer sums)
quantises too coarsely (about 4x the candidates); skipping blocks by cluster-ball bounds pruned nothing on real
MiniLM embeddings (their kNN radius is close to their distance to any centre), and even with ideal thresholds
left a quarter of the pairs on the clustered benchmark data.

Work runs in one thread per torch thread, each single-threaded (see `_workers`). Memory: the points as given
(float32 stays float32), the search operand (a quarter of float32 points' bytes in bfloat16, a half in
float32) and the candidate lists with 4-byte indices.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from anatomy.metrics.knn_candidates import Candidates, index_dtype, write_smallest_per_row
from anatomy.metrics.knn_operand import SearchOperand, build_operand, search_dtype

log = logging.getLogger(__name__)

_CHUNK = 4096  # rows per slice in the row-wise passes (bounded temporaries; a task for a worker)

# ------------------------------------------------------------------------------------------ exact kNN


def exact_knn(points: np.ndarray, k: int, block: int = 1024, fast: bool | None = None):
    """Exact k nearest neighbours of every row (self excluded): (distances [n, k] float64 ascending, indices).

    float32 points are used as they are (no float64 copy); other dtypes are converted to float64.
    `fast` picks the low-precision candidate search with verification (default: when n * n * d is large);
    off, candidates come from float64 Gram blocks. Either way the result is exact.
    """
    from anatomy.metrics.points import check_array

    x = np.ascontiguousarray(check_array(points, "kNN points"))  # finite: NaN would leave lists short
    if x.dtype not in (np.float32, np.float64):  # float32 stays float32: differences are taken in float64
        x = x.astype(np.float64)
    n, d = x.shape
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n points, got k={k}, n={n}")
    if fast is None:  # tiny inputs are not worth the verification step
        fast = n * n * d > 1e9
    dtype = search_dtype(fast)
    n_cand, m = _candidate_counts(n, k, dtype)
    mean = x.mean(axis=0, dtype=np.float64)
    small = n <= 8 * block  # whole rows per task (see _row_slice_candidates); pairs of blocks beyond
    with _workers() as (pool, threads):
        # Search in an order where nearby points share a block (the result does not depend on the order): the
        # diagonal blocks then give tight first thresholds, and far fewer off-diagonal entries survive.
        order = _locality_order(x, mean, block, pool) if fast and not small else None
        operand = build_operand(x, mean, order, dtype, pool)
        if small:
            cand_i, cand_val = _row_slice_candidates(operand, n_cand, pool)
        else:
            cand_i, cand_val = _gram_candidates(operand, n_cand, block, pool)
        bound = operand.bound
        if order is not None:  # back to the caller's row order and indices
            order = order.astype(cand_i.dtype)
            unordered_i, unordered_val = np.empty_like(cand_i), np.empty_like(cand_val)
            unordered_i[order], unordered_val[order] = order[cand_i], cand_val
            cand_i, cand_val = unordered_i, unordered_val
            bound = bound[np.argsort(order)]
        complete = n_cand == n - 1  # every other point was a candidate: nothing can be missing
        # Small inputs (up to 64 MB in float64): a float64 copy saves casting every gathered row (a tenth of
        # the exact pass at 5,000 points)
        near = x.astype(np.float64, copy=False) if small and x.size <= 1 << 23 else x
        dist, idx, unverified = _exact_from_candidates(
            near, cand_i, cand_val, k, m, bound, operand.unit, complete, pool, threads
        )
    if unverified.size:
        log.info("kNN: %d of %d rows searched again against every point", unverified.size, n)
        dist[unverified], idx[unverified] = _search_again(x, operand, order, unverified, k)
    return dist, idx


def _candidate_counts(n: int, k: int, dtype: str) -> tuple[int, int]:
    """Candidates kept per row, and how many are measured first. bfloat16's ordering errors (about 1e-3 of
    the norms) need spare candidates, more as the k-th distance shrinks with n; the k + 5 cheapest verify
    over 99% of rows at 5,000 to 20,000 points. Any count gives the exact result; these are the fast ones."""
    if dtype == "bfloat16":
        return min(n - 1, k + 12 if n <= 32768 else 2 * k + 8), k + max(4, k // 4)
    return min(n - 1, k + max(8, k // 2)), k + max(2, k // 8)


@contextmanager
def _workers():
    """One worker thread per torch thread, each running torch (and MKL) single-threaded: the work comes in
    tasks of a few milliseconds, where OpenMP's fork and join per call (and its spinning threads on a busy
    machine) cost more than they give; numpy releases the GIL, so its work runs in parallel too. The setting
    is made in every worker: OpenMP keeps it per thread, and a new thread starts at all cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool, threads
    finally:
        torch.set_num_threads(threads)


def _locality_order(x: np.ndarray, mean: np.ndarray, block: int, pool, seed: int = 0) -> np.ndarray:
    """A permutation grouping nearby points: rows sorted by their nearest of some random pivot points.

    The nearest pivot minimises |p|^2 - 2 x.p (float32; any order gives the same result, only faster or
    slower), in small chunks with reused buffers: big temporaries freed in worker threads would stay in
    malloc's arenas (measured: +1.5 GB of resident memory at 400,000 points with torch.cdist)."""
    import torch

    n = len(x)
    pick = np.random.default_rng(seed).choice(n, max(2, 4 * n // block), replace=False)
    pivots = torch.from_numpy((x[np.sort(pick)] - mean).astype(np.float32))
    pivot_sq = (pivots**2).sum(1)
    nearest = np.empty(n, dtype=np.int64)
    local = threading.local()

    def rows_from(s: int) -> None:
        if not hasattr(local, "out"):
            local.out = torch.empty((_SMALL_CHUNK, len(pivots)))
        rows = torch.from_numpy((x[s : s + _SMALL_CHUNK] - mean).astype(np.float32))
        out = torch.addmm(pivot_sq, rows, pivots.T, alpha=-2, out=local.out[: len(rows)])
        nearest[s : s + len(rows)] = out.argmin(1).numpy()

    list(pool.map(rows_from, range(0, n, _SMALL_CHUNK)))
    return np.argsort(nearest, kind="stable")


_SMALL_CHUNK = 1024  # rows per task where each row makes a wide temporary


def _gram_candidates(op: SearchOperand, n_cand: int, block: int, pool) -> tuple[np.ndarray, np.ndarray]:
    """The n_cand smallest squared-distance values per row (the operand's), without self.

    Each unordered pair of row blocks is multiplied once, and one GEMM gives a block of squared distances
    (the norms ride in augmented columns). The diagonal blocks seed every row's list by top-k; after that a
    per-row threshold (the current n_cand-th value) filters most entries with one comparison, and survivors
    are merged in batches. Blocks of about 1,000 rows keep each product in cache for the comparisons (4,096
    halved the bfloat16 GEMM's speed); numpy's comparison and flatnonzero are several times faster than
    torch's lt and nonzero, and top-k costs ten comparisons per entry, so it only seeds.
    """

    n = len(op.bound)
    block = max(block, n_cand + 1)
    block = -(-n // -(-n // block))  # equal blocks (5,000 rows: 5 x 1,000, not 4 x 1,024 + 904)
    starts = list(range(0, n, block))
    cand = Candidates(n, n_cand, op.value_dtype)
    thr = cand.threshold  # flushes update it in place
    locks = [threading.Lock() for _ in starts]
    local = threading.local()

    def buffers():
        """This worker's output and mask buffers: reused (allocating and page-faulting a fresh block per
        product costs as much as the comparisons themselves)."""
        if not hasattr(local, "buf"):
            local.buf = np.empty(block * block, dtype=op.value_dtype)
            local.mask = np.empty(block * block, dtype=bool)
        return local.buf, local.mask

    def diagonal_block(bi: int) -> None:
        """A first threshold for the rows of block bi: the n_cand smallest values within the block."""
        s, e = starts[bi], min(starts[bi] + block, n)
        d2 = op.gram(op.left(s, e), s, e, buffers()[0][: (e - s) ** 2].reshape(e - s, e - s))
        np.fill_diagonal(d2, np.inf)
        if e - s - 1 < n_cand:  # a short last block: let the off-diagonal pairs fill it
            cand.add(s, np.repeat(np.arange(s, e), e - s), np.tile(np.arange(s, e), e - s), d2.ravel().copy())
            return
        # numpy's partition: a third of torch.topk's time for 48 of 1,000 (one thread each).
        top = np.argpartition(d2, n_cand - 1, axis=1)[:, :n_cand]
        cand.set_rows(s, top + s, d2[np.arange(e - s)[:, None], top])

    def row_of_blocks(bi: int) -> None:
        """Block bi against every later block: survivors go to the buffers of the rows they belong to."""
        s, e = starts[bi], min(starts[bi] + block, n)
        buf, mask_buf = buffers()
        with locks[bi]:
            cand.flush(s, e)  # survivors from earlier pairs tighten this block's thresholds first
        left = op.left(s, e)
        for bj in range(bi + 1, len(starts)):
            t, f = starts[bj], min(starts[bj] + block, n)
            d2 = op.gram(left, t, f, buf[: (e - s) * (f - t)].reshape(e - s, f - t))
            mask = mask_buf[: d2.size].reshape(d2.shape)
            # Thresholds read while another worker tightens them are old or new, both valid upper bounds.
            r, c = np.divmod(np.flatnonzero(np.less(d2, thr[s:e, None], out=mask)), f - t)
            with locks[bi]:
                cand.add(s, r + s, c + t, d2[r, c])
                cand.flush_if_full(s, e)
            r, c = np.divmod(np.flatnonzero(np.less(d2, thr[None, t:f], out=mask)), f - t)
            with locks[bj]:
                cand.add(t, c + t, r + s, d2[r, c])
                cand.flush_if_full(t, f)

    list(pool.map(diagonal_block, range(len(starts))))  # every row seeded before any pair
    list(pool.map(row_of_blocks, range(len(starts))))  # one single-threaded GEMM per worker
    for s in starts:  # survivors that arrived after their block's own pass
        cand.flush(s, min(s + block, n))
    return cand.index, cand.value


def _row_slice_candidates(op: SearchOperand, n_cand: int, pool, rows: int = 512):
    """The n_cand smallest values per row (self excluded) for up to 8 blocks of points: each task multiplies a
    slice of rows against every point and keeps its rows' lists itself (nothing merged across tasks).

    Each row's threshold comes from its own values: split the columns into at least n_cand disjoint groups
    (column j in group j mod `groups`); the n_cand-th smallest of the groups' minima is at least the row's
    n_cand-th smallest value (there are n_cand values at or below it) and close above it (about n_cand + 3
    values pass at 5,000 points, n_cand = 32), so one comparison leaves a short list to sort. Measured on
    1,000 rows x 5,000 points: the strided minima 1.3 ms, torch.topk 15 ms, numpy's partition 126 ms; the
    whole kNN 1.4x faster than pairing blocks once, whose merges of survivors cost more than the second GEMM
    saves at this size (at 20,000 points pairing is 1.3x faster)."""
    n = len(op.bound)
    groups = min(n, 6 * n_cand)
    per_group = n // groups  # the first per_group * groups columns; the rest join the first groups
    spill = n - per_group * groups
    index = np.full((n, n_cand), -1, dtype=index_dtype(n))
    value = np.empty((n, n_cand), dtype=op.value_dtype)
    local = threading.local()

    def rows_from(s: int) -> None:
        e = min(s + rows, n)
        if not hasattr(local, "buf"):  # this worker's buffers, reused
            local.buf = np.empty(rows * n, dtype=op.value_dtype)
            local.mask = np.empty(rows * n, dtype=bool)
        vals = op.gram(op.left(s, e), 0, n, local.buf[: (e - s) * n].reshape(e - s, n))
        vals[np.arange(e - s), np.arange(s, e)] = np.inf  # self
        minima = np.min(vals[:, : per_group * groups].reshape(e - s, per_group, groups), axis=1)
        np.minimum(minima[:, :spill], vals[:, per_group * groups :], out=minima[:, :spill])
        threshold = np.partition(minima, n_cand - 1, axis=1)[:, n_cand - 1]
        mask = np.less_equal(vals, threshold[:, None], out=local.mask[: vals.size].reshape(vals.shape))
        kept = np.flatnonzero(mask)
        r, c = np.divmod(kept, n)
        write_smallest_per_row(r, c, vals.ravel()[kept], index[s:e], value[s:e])

    list(pool.map(rows_from, range(0, n, rows)))
    return index, value


def _exact_from_candidates(x, cand_i, cand_val, k, m, bound, unit, complete, pool, threads: int):
    """Float64 distances by direct differences for each row's cheapest candidates (by value); the k smallest
    (ascending) and the rows that cannot be verified. Ranges of rows go to the pool's threads (the rows
    written are disjoint): a few big ones, as numpy holds the GIL between its calls (19 tasks instead of 2 at
    5,000 points took 1.25x as long)."""
    n = len(cand_i)
    if cand_i.min() < 0:  # every row sees every other point, so its list is always full
        raise RuntimeError("kNN: a candidate list was left short (a bug)")
    dist = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    args = (x, cand_i, cand_val, k, m, bound, unit, complete, dist, idx)
    cuts = np.linspace(0, n, max(threads, -(-n // 8192)) + 1).astype(int)
    parts = pool.map(lambda r: _measure_rows(r[0], r[1], *args), zip(cuts[:-1], cuts[1:], strict=True))
    return dist, idx, np.concatenate(list(parts))


def _measure_rows(start, stop, x, cand_i, cand_val, k, m, bound, unit, complete, dist, idx, chunk=16):
    """Rows start:stop of `_exact_from_candidates`. Every point outside a row's m cheapest candidates has a
    value >= the (m+1)-th smallest (points never kept had values >= the largest kept one), hence an exact
    squared distance >= that minus the row's bound: the row is verified when its k-th exact squared distance
    is not above this. Rows that fail (a few in a thousand) go on one by one (`_measure_row`). The bookkeeping
    runs once over all the rows (numpy holds the GIL for it), the distances in small chunks (in cache)."""
    n_cand = cand_i.shape[1]
    m = n_cand if complete else min(m, n_cand - 1)
    cols = cand_i[start:stop]
    if not complete:
        part = np.argpartition(cand_val[start:stop], m, axis=1)
        beyond = np.take_along_axis(cand_val[start:stop], part[:, m : m + 1], axis=1)[:, 0].astype(np.float64)
        cols = np.take_along_axis(cols, part[:, :m], axis=1)
    dd = np.empty(cols.shape)
    for s in range(0, stop - start, chunk):
        dd[s : s + chunk] = _distances(x, x[start + s : min(start + s + chunk, stop)], cols[s : s + chunk])
    order = np.argsort(dd, axis=1, kind="stable")[:, :k]
    dist[start:stop] = np.take_along_axis(dd, order, axis=1)
    idx[start:stop] = np.take_along_axis(cols, order, axis=1)
    unverified = []
    if not complete:
        far = dist[start:stop, -1] ** 2 * unit > beyond - bound[start:stop]  # in values' units
        for row in start + np.flatnonzero(far):
            if not _measure_row(row, x, cand_i[row], cand_val[row], k, m, bound[row], unit, dist, idx):
                unverified.append(row)
    return np.array(unverified, dtype=np.int64)


def _measure_row(row, x, cols, vals, k, m, bound, unit, dist, idx, step=8) -> bool:
    """One row's candidates measured 8 more at a time, cheapest first, until verified (or all measured,
    against the largest kept value)."""
    by_value = np.argsort(vals, kind="stable")
    cols, vals = cols[by_value], vals[by_value].astype(np.float64)
    dd = _distances(x, x[row : row + 1], cols[None, :m])[0]
    while True:
        order = np.argsort(dd, kind="stable")[:k]
        beyond = vals[dd.size] if dd.size < cols.size else vals[-1]
        verified = dd[order[-1]] ** 2 * unit <= beyond - bound
        if verified or dd.size == cols.size:
            dist[row], idx[row] = dd[order], cols[order]
            return bool(verified)
        more = cols[dd.size : dd.size + step]
        dd = np.concatenate([dd, _distances(x, x[row : row + 1], more[None, :])[0]])


def _distances(x: np.ndarray, queries: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """|queries[i] - x[cols[i, j]]| by direct differences in float64 (exact differences of float32 points
    too: float32 -> float64 is exact)."""
    diff = np.take(x, cols, axis=0).astype(np.float64, copy=False)  # a cast, then float64 arithmetic:
    diff -= queries[:, None, :].astype(np.float64, copy=False)  # 1.5x a mixed-dtype subtract's speed
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def _search_again(x, op: SearchOperand, order, rows: np.ndarray, k: int, chunk: int = 16):
    """Exact neighbours of selected rows against all points, from the operand's values, rigorously.

    T_i, the k-th smallest (value + bound), is at least the k-th exact squared distance, so every point whose
    value minus the bound exceeds T_i is farther and is skipped; the rest are measured by direct differences.
    Where the bound admits too many points (a far outlier inflates it), float64 values decide instead.
    """
    import torch

    n = len(x)
    position = np.argsort(order) if order is not None else None  # original row -> operand row
    dist = np.empty((rows.size, k))
    idx = np.empty((rows.size, k), dtype=np.int64)
    out = np.empty(min(chunk, rows.size) * n, dtype=op.value_dtype)
    crowded = []
    for s in range(0, rows.size, chunk):
        r = rows[s : s + chunk]
        pos = position[r] if position is not None else r
        values = op.gram(op.left_rows(pos), 0, n, out[: r.size * n].reshape(r.size, n)).astype(np.float64)
        values[np.arange(r.size), pos] = np.inf
        bound = op.bound[pos]
        top = torch.kthvalue(torch.from_numpy(values), k, dim=1).values.numpy() + bound
        for j, keep in enumerate(values - bound[:, None] <= top[:, None]):
            cols = np.flatnonzero(keep)
            if cols.size > _CROWDED:
                crowded.append(s + j)
                continue
            cols = order[cols] if order is not None else cols
            dd = _distances(x, x[r[j] : r[j] + 1], cols[None, :])[0]
            best = np.argsort(dd, kind="stable")[:k]
            dist[s + j], idx[s + j] = dd[best], cols[best]
    if crowded:
        at = np.array(crowded)
        dist[at], idx[at] = _rows_float64(x, x.mean(axis=0, dtype=np.float64), rows[at], k, op.norm_max)
    return dist, idx


_CROWDED = 4096  # more points than this within a row's bound: float64 values instead


def _rows_float64(
    x: np.ndarray, mean: np.ndarray, rows: np.ndarray, k: int, norm_max: float, chunk: int = 32
):
    """Exact neighbours of selected rows against all points, from float64 Gram values (rarely needed).

    Rigorous like the main search: T_i, the k-th smallest (value + bound), is at least the k-th exact squared
    distance, so every point whose value minus the bound exceeds T_i is farther and can be skipped; the
    rest are measured by direct differences.
    """
    import torch

    n, d = x.shape
    dist = np.empty((rows.size, k))
    idx = np.empty((rows.size, k), dtype=np.int64)
    for s in range(0, rows.size, chunk):
        r = rows[s : s + chunk]
        cr = torch.from_numpy(x[r] - mean)
        sq_r = (cr**2).sum(1)
        values = torch.empty((r.size, n), dtype=torch.float64)
        for t in range(0, n, _CHUNK):
            cc = torch.from_numpy(x[t : t + _CHUNK] - mean)
            values[:, t : t + len(cc)] = sq_r[:, None] + (cc**2).sum(1)[None, :] - 2 * cr @ cc.T
        values[torch.arange(r.size), torch.from_numpy(r)] = torch.inf
        norm = sq_r.sqrt().numpy()
        bound = torch.from_numpy((10 * d + 16) * 2.0**-53 * (norm + norm_max) ** 2 * (1 + 1e-6))
        top = torch.kthvalue(values, k, dim=1).values + bound
        for j, (row, keep) in enumerate(
            zip(r, (values - bound[:, None] <= top[:, None]).numpy(), strict=True)
        ):
            cols = np.flatnonzero(keep)
            dd = _distances(x, x[row : row + 1], cols[None, :])[0]
            order = np.argsort(dd, kind="stable")[:k]
            dist[s + j], idx[s + j] = dd[order], cols[order]
    return dist, idx
