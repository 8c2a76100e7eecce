"""The exact kNN's search paths (bfloat16 where AMX is present, float32 elsewhere, float64) against brute force.

Every path must return the k smallest direct-difference distances, whatever the data: near-ties from a
rotated lattice, tight clusters, an outlier that makes the error bound useless, tiny and odd sizes. The error
bound itself is checked entry by entry, and the bfloat16 binding's self-test must refuse a wrong GEMM.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import anatomy.metrics.bf16_gemm as bf16_gemm
import anatomy.metrics.knn as knn
from anatomy.metrics.knn import exact_knn
from anatomy.metrics.knn_operand import build_operand, search_dtype

DTYPES = ["bfloat16", "float32", "float64"]


def _need(dtype):
    if dtype == "bfloat16" and not bf16_gemm.bf16_available():
        pytest.skip("no AMX bfloat16 GEMM on this CPU (the float32 path is tested instead)")


@pytest.fixture
def force_dtype(monkeypatch):
    def force(dtype):
        _need(dtype)
        monkeypatch.setattr(knn, "search_dtype", lambda fast: dtype)

    return force


def _check_exact(x, k, dist, idx):
    """dist equals brute force's k smallest distances; each index is another row at that distance."""
    full = cdist(np.asarray(x, dtype=np.float64), np.asarray(x, dtype=np.float64))
    np.fill_diagonal(full, np.inf)
    ref = np.sort(full, axis=1)[:, :k]
    np.testing.assert_allclose(dist, ref, rtol=1e-12, atol=1e-300)
    rows = np.arange(len(x))[:, None]
    assert np.all(idx != rows) and np.all(np.diff(dist, axis=1) >= 0)
    np.testing.assert_allclose(full[rows, idx], dist, rtol=1e-12, atol=1e-300)
    assert all(len(set(r)) == k for r in idx.tolist())  # no neighbour twice


def _clusters(n, d, seed, spread=0.3, offset=0.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, d)) * 3 + offset
    latent = rng.standard_normal((n, 5))
    return centres[rng.integers(0, 12, n)] + latent @ rng.standard_normal((5, d)) * spread


def _rotated_lattice(d=40, seed=0):
    """Integer points of a 3-D grid, rotated into d dimensions: many distances tie up to rounding."""
    grid = np.stack(np.meshgrid(*[np.arange(9)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return grid @ q[:3] * 0.7 + 5.0  # 729 points, offset from the origin


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [64, 128, 1024])  # 64: every input in pairs of blocks; 1024: in row slices
def test_every_search_path_is_exact_on_clusters_and_near_ties(force_dtype, dtype, block):
    force_dtype(dtype)
    for x, k in (
        (_clusters(1203, 48, seed=1), 20),
        (_rotated_lattice(), 26),
        (_clusters(900, 7, 2, 0.01, 50), 9),
    ):
        dist, idx = exact_knn(x, k, block=block, fast=True)
        _check_exact(x, k, dist, idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("n", "d", "k"), [(2, 3, 1), (3, 1, 2), (5, 4, 4), (50, 1, 7), (97, 33, 20), (300, 5, 60)]
)
def test_tiny_and_odd_sizes(force_dtype, dtype, n, d, k):
    force_dtype(dtype)
    x = np.random.default_rng(n + d).standard_normal((n, d))
    dist, idx = exact_knn(x, k, block=64, fast=True)
    _check_exact(x, k, dist, idx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_points_give_the_float64_result(force_dtype, dtype):
    force_dtype(dtype)
    x = _clusters(700, 24, seed=3).astype(np.float32)
    dist32, idx32 = exact_knn(x, 15, block=256, fast=True)
    dist64, idx64 = exact_knn(x.astype(np.float64), 15, block=256, fast=True)
    assert np.array_equal(dist32, dist64) and np.array_equal(idx32, idx64)
    _check_exact(x, 15, dist32, idx32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("crowded", [False, True])
@pytest.mark.parametrize("block", [64, 128])  # pairs of blocks, row slices
def test_unverified_rows_are_searched_again(force_dtype, monkeypatch, dtype, crowded, block):
    # A far outlier inflates every row's bound: verification fails, the rows are searched again against all
    # points (by the operand's values, or by float64 values where too many points fall within the bound).
    force_dtype(dtype)
    if crowded:
        monkeypatch.setattr(knn, "_CROWDED", 0)
    x = _clusters(600, 32, seed=5)
    x[0] = 1e5
    dist, idx = exact_knn(x, 10, block=block, fast=True)
    _check_exact(x, 10, dist, idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_the_error_bound_holds_for_every_pair(dtype, offset):
    _need(dtype)
    x = _clusters(500, 64, seed=7, offset=offset)
    x[3] = x[4] + 1e-7  # a near-duplicate: a squared distance of 1e-14 against values of 1e5
    mean = x.mean(axis=0)
    op = build_operand(x, mean, None, dtype)
    values = op.gram(op.left(0, len(x)), 0, len(x), np.empty((len(x), len(x)), dtype=op.value_dtype))
    exact = cdist(x, x, "sqeuclidean") * op.unit  # values are in the scaled points' units
    error = np.abs(values.astype(np.float64) - exact)
    assert np.all(error <= op.bound[:, None])
    assert np.all(error <= op.bound[None, :])  # a block's values also serve its columns' rows
    if dtype != "float64":  # and it is not vacuous: within 1% of the spread of the squared distances
        assert op.bound.max() < 0.01 * np.median(exact)


def test_the_fast_path_uses_bfloat16_exactly_where_available(monkeypatch):
    expected = "bfloat16" if bf16_gemm.bf16_available() else "float32"
    assert search_dtype(True) == expected and search_dtype(False) == "float64"
    bf16_gemm.bf16_available.cache_clear()
    monkeypatch.setattr(bf16_gemm, "cpu_flags", lambda: {"avx512f"})  # no AMX: float32
    try:
        assert search_dtype(True) == "float32"
        x = _clusters(400, 16, seed=9)
        _check_exact(x, 12, *exact_knn(x, 12, block=64, fast=True))
    finally:
        bf16_gemm.bf16_available.cache_clear()


def test_the_bfloat16_self_test_refuses_a_wrong_gemm(monkeypatch):
    if bf16_gemm._mkl_function() is None or "amx_bf16" not in bf16_gemm.cpu_flags():
        pytest.skip("no MKL bfloat16 GEMM with AMX here")

    def zeros(*args):  # a binding that writes zeros instead of the product
        m, out, ldc = args[3], args[12], args[13]
        ctypes.memset(out, 0, 4 * m * ldc)

    bf16_gemm.bf16_available.cache_clear()
    monkeypatch.setattr(bf16_gemm, "_mkl_function", lambda: zeros)
    try:
        assert not bf16_gemm.bf16_available()
    finally:
        bf16_gemm.bf16_available.cache_clear()


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_slices_keep_each_rows_smallest_values(force_dtype, dtype):
    """The small-input search's lists are each row's n_cand smallest values (self excluded), whatever the
    column count's remainder against the groups, with ties at the threshold (a lattice) and n_cand = n - 1."""
    force_dtype(dtype)
    for x, n_cand in (
        (_rotated_lattice(), 26),
        (_clusters(1201, 9, seed=4), 32),
        (_clusters(7, 3, seed=4), 6),
    ):
        op = build_operand(x, x.mean(axis=0), None, dtype)
        n = len(x)
        with knn._workers() as (pool, _):
            index, value = knn._row_slice_candidates(op, n_cand, pool, rows=100)
        full = op.gram(op.left(0, n), 0, n, np.empty((n, n), dtype=op.value_dtype)).astype(np.float64)
        np.fill_diagonal(full, np.inf)
        rows = np.arange(n)[:, None]
        assert np.all(index != rows) and all(len(set(r)) == n_cand for r in index.tolist())
        # the same products in another GEMM shape may differ by rounding: within each row's bound
        tol = 2 * op.bound[:, None]
        assert np.all(np.abs(full[rows, index] - value) <= tol)
        kth = np.sort(full, axis=1)[:, n_cand - 1 : n_cand]
        assert np.all(value <= kth + tol)  # nothing smaller was left out


def test_points_with_nan_are_refused_by_name():
    x = _clusters(50, 4, seed=1)
    x[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) hold NaN or inf \(first: row 17\)"):
        exact_knn(x, 5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [16, 1024])  # pairs of blocks, row slices
@pytest.mark.parametrize(
    ("scale", "points_dtype"), [(1e25, np.float64), (1e19, np.float32), (1e-30, np.float64)]
)
def test_points_far_outside_unit_scale(force_dtype, dtype, block, scale, points_dtype):
    # Squares of 1e19 overflow bfloat16 and float32 (the search returned wrong neighbours before the points
    # were scaled into range); tiny points must not sink into subnormals.
    force_dtype(dtype)
    x = (_clusters(300, 6, seed=11) * scale).astype(points_dtype)
    dist, idx = exact_knn(x, 8, block=block, fast=True)
    _check_exact(x, 8, dist, idx)


def test_points_whose_squared_distances_overflow_are_refused():
    with pytest.raises(ValueError, match="kNN points: the points spread over .*overflow float64"):
        exact_knn(_clusters(100, 4, seed=2) * 1e200, 5)
