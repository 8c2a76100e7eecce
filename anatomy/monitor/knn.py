"""Exact nearest neighbours by cosine, never a full quadratic matrix in memory.

`nearest(queries, base)` gives each query its most similar base row; `leave_one_out(base)` each base row its
most similar *other* row. Rows are L2-normalised, so cosine = dot product and distance = 1 - cosine. The
default backend is a blocked numpy search (a [block, N] slab of similarities at a time: memory bounded by
`block * N * 4` bytes, time O(Q N D) as BLAS matrix products); with faiss-cpu installed (the `monitor`
extra) `backend="faiss"` uses its exact inner-product index (IndexFlatIP), the same answers, faster on many
cores. benchmarks/bench_monitor.py measures both against a brute-force matrix on a sample.
"""

from __future__ import annotations

import numpy as np

BLOCK = 2048  # query rows per slab
BACKENDS = ("auto", "numpy", "faiss")


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _pick(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "auto":
        return "faiss" if _faiss_available() else "numpy"
    return backend


def nearest(queries: np.ndarray, base: np.ndarray, *, backend: str = "auto", block: int = BLOCK,
            exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(cosine distance [Q], index into base [Q]) of each query's nearest base row.

    exclude_self: queries ARE base (same order); a row never matches itself (leave-one-out)."""
    q, b = normalise(queries), normalise(base)
    if len(b) < (2 if exclude_self else 1):
        raise ValueError("the base needs at least one row (two for leave-one-out)")
    if _pick(backend) == "faiss":
        return _faiss(q, b, exclude_self)
    best = np.empty(len(q), dtype=np.float32)
    where = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), block):
        sim = q[start : start + block] @ b.T
        if exclude_self:
            rows = np.arange(sim.shape[0])
            sim[rows, start + rows] = -np.inf
        at = np.argmax(sim, axis=1)
        where[start : start + len(at)] = at
        best[start : start + len(at)] = sim[np.arange(len(at)), at]
    return np.clip(1.0 - best, 0.0, 2.0), where


def _faiss(q: np.ndarray, b: np.ndarray, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(b.shape[1])
    index.add(np.ascontiguousarray(b))
    k = 2 if exclude_self else 1
    sim, at = index.search(np.ascontiguousarray(q), k)
    if exclude_self:  # the first hit is the row itself unless a duplicate ties with it: take the other
        own = at[:, 0] == np.arange(len(q))
        sim = np.where(own, sim[:, 1], sim[:, 0])
        at = np.where(own, at[:, 1], at[:, 0])
    else:
        sim, at = sim[:, 0], at[:, 0]
    return np.clip(1.0 - sim, 0.0, 2.0).astype(np.float32), at.astype(np.int64)


def leave_one_out(base: np.ndarray, *, backend: str = "auto", block: int = BLOCK) -> np.ndarray:
    """Each base row's cosine distance to its nearest other row."""
    return nearest(base, base, backend=backend, block=block, exclude_self=True)[0]
