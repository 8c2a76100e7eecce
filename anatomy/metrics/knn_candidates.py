"""The kNN search's per-row candidate lists: the best n_cand (value, index) pairs of each row, with survivors
buffered per row block and merged in batches (one sort of (row, value) keys), so thresholds stay tight."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def index_dtype(n: int):
    return np.int32 if n < 2**31 else np.int64


@dataclass
class Candidates:
    """Per-row best n_cand (value, index) lists with buffered, batched merging per row block."""

    n: int
    n_cand: int
    dtype: np.dtype
    index: np.ndarray = field(init=False)
    value: np.ndarray = field(init=False)
    threshold: np.ndarray = field(init=False)
    buffers: dict = field(default_factory=dict)  # block start -> list of (rows, cols, values)

    def __post_init__(self):
        self.index = np.full((self.n, self.n_cand), -1, dtype=index_dtype(self.n))
        self.value = np.full((self.n, self.n_cand), np.inf, dtype=self.dtype)
        self.threshold = np.full(self.n, np.inf, dtype=self.dtype)

    def set_rows(self, start, index, value):
        stop = start + len(index)
        self.index[start:stop], self.value[start:stop] = index, value
        self.threshold[start:stop] = value.max(1)  # in place: a torch view shares this array

    def add(self, start, rows, cols, values):
        if rows.size:  # 4-byte indices: the buffers are the search's largest temporaries
            dtype = self.index.dtype
            self.buffers.setdefault(start, []).append((rows.astype(dtype), cols.astype(dtype), values))

    def flush_if_full(self, start, stop):
        # Merge once a block has gathered about two extra lists per row, so thresholds stay tight.
        if sum(b[0].size for b in self.buffers.get(start, ())) > 2 * self.n_cand * (stop - start):
            self.flush(start, stop)

    def flush(self, start, stop):
        """Merge rows start:stop's buffered survivors into their lists (one sort of (row, value) keys)."""
        parts = self.buffers.pop(start, [])
        if not parts:
            return
        rows = np.concatenate([p[0] for p in parts])
        touched = start + np.flatnonzero(np.bincount(rows - start, minlength=stop - start))
        rows = np.concatenate([np.repeat(touched, self.n_cand), rows])
        cols = np.concatenate([self.index[touched].ravel(), *(p[1] for p in parts)])
        vals = np.concatenate([self.value[touched].ravel(), *(p[2] for p in parts)])
        write_smallest_per_row(rows, cols, vals, self.index, self.value)
        self.threshold[touched] = self.value[touched, -1]


def write_smallest_per_row(rows, cols, vals, index, value) -> None:
    """For each row present in `rows`, its index.shape[1] smallest (value, col) entries, ascending, written
    into index[row] and value[row] (the row must have at least that many entries)."""
    order = np.argsort(row_value_keys(rows, vals)) if vals.dtype == np.float32 else np.lexsort((vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank = np.arange(rows.size) - np.repeat(first, np.diff(np.r_[first, rows.size]))
    keep = rank < index.shape[1]
    index[rows[keep], rank[keep]] = cols[keep]
    value[rows[keep], rank[keep]] = vals[keep]


def row_value_keys(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64 keys ordered as (row, float32 value): the value's bits made monotone (negatives flipped)."""
    bits = values.view(np.uint32)
    monotone = bits ^ ((bits >> 31) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000))
    return (rows.astype(np.int64) << 32) | monotone.astype(np.int64)
