"""Intrinsic dimension: metrics.md fixtures, parity with scikit-dimension, and the exact kNN behind both."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import skdim
from scipy.spatial.distance import cdist

from anatomy.metrics.intrinsic_dim import (
    bootstrap_spread,
    centred_erank,
    dedupe_rows,
    harmonic_mean,
    intrinsic_dim,
    mle_local,
    twonn_closed_form,
    twonn_linear,
)
from anatomy.metrics.knn import exact_knn
from anatomy.metrics.spectra import linear_erank

# scikit-dimension 0.5.0 reference fixtures (spec/metrics.md). The last digits of the linear TwoNN fixture
# depend on the least-squares routine (lstsq vs the closed slope): they agree to ~1e-11, hence rel 1e-9.
FIXTURE_TOL = 1e-9


def _ball():
    x = skdim.datasets.hyperBall(300, 5, random_state=0)
    return np.hstack([x, np.zeros_like(x)])


def _sphere():
    return skdim.datasets.hyperSphere(300, 4, random_state=1)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_ball, (4.362176532655348, 4.113138917297787, 4.43582345694338, 4.67110085488116)),
        (_sphere, (3.2212051304386806, 3.3280716110069095, 3.77125056454698, 4.01317929537005)),
    ],
)
def test_metrics_md_fixtures(make, expected):
    got = intrinsic_dim(make(), n_boot=0)
    values = (got.twonn_linear, got.twonn_closed_form, got.mle_harmonic, got.mle_mean)
    assert values == pytest.approx(expected, rel=FIXTURE_TOL)
    assert got.n_points == 300 and got.k == 20


def test_exact_pareto_ratios_give_d_exactly():
    # r1 = 1 and mu_(i) = (1 - i/N)^(-1/d) for i < N, plus one huge ratio: the linear fit is exact.
    n, d = 1000, 7.3
    mu = np.concatenate([(1 - np.arange(1, n) / n) ** (-1 / d), [1e12]])
    assert twonn_linear(np.random.default_rng(0).permutation(mu)) == pytest.approx(d, abs=1e-12)


def test_closed_form_is_the_pareto_mle():
    mu = np.exp(np.array([0.5, 0.25, 0.25]))
    assert twonn_closed_form(mu) == pytest.approx(2 / 1.0, rel=1e-15)


def _clustered(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((25, d)) * 3
    latent = rng.standard_normal((n, 6))
    x = centres[rng.integers(0, 25, n)] + latent @ rng.standard_normal((6, d)) * 0.3
    return x + 0.01 * rng.standard_normal((n, d))


@pytest.mark.parametrize("fast", [False, True])
def test_equals_scikit_dimension_on_the_same_points(fast):
    x = _clustered(1500, 40, seed=3)  # > 25 features: skdim's TwoNN takes its pairwise-matrix path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = (
            skdim.id.TwoNN().fit(x).dimension_,
            skdim.id.TwoNN(method="mle", discard_fraction=0).fit(x).dimension_,
            skdim.id.MLE().fit(x).dimension_,
            skdim.id.MLE().fit(x, comb="mean").dimension_,
        )
    got = intrinsic_dim(x, n_boot=0, fast=fast)
    assert (got.twonn_linear, got.twonn_closed_form, got.mle_harmonic, got.mle_mean) == pytest.approx(
        ref, rel=1e-9
    )


def _brute(x, k):
    """Reference neighbours from the full matrix of direct-difference distances (scipy's cdist)."""
    full = cdist(x, x)
    np.fill_diagonal(full, np.inf)
    idx = np.argsort(full, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(full, idx, 1), idx


@pytest.mark.parametrize("block", [97, 256, 5000])
def test_fast_knn_is_exact(block):
    x = _clustered(1203, 48, seed=4)  # 1203 rows: the last block is short for every block size
    x[7] = x[8] + 1e-9  # a near-duplicate pair (sklearn's dot-product distances would call it 0)
    dist, idx = exact_knn(x, 20, block=block, fast=True)
    ref_d, ref_i = _brute(x, 20)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-9, atol=1e-12)
    assert np.mean(idx == ref_i) > 0.999  # indices may swap only between exactly tied distances
    assert idx[7, 0] == 8 and idx[8, 0] == 7


def test_unverifiable_rows_are_searched_again_in_float64():
    # A far outlier inflates the float32 error bound for every row: all rows fall back to float64.
    x = _clustered(600, 32, seed=5)
    x[0] = 1e5
    dist, _ = exact_knn(x, 10, block=128, fast=True)
    ref_d, _ = _brute(x, 10)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-9)


def test_duplicates_are_removed_before_estimating():
    x = _clustered(400, 10, seed=6)
    doubled = np.vstack([x, x[:50]])
    unique, first = dedupe_rows(doubled)
    assert len(unique) == 400 and np.array_equal(first, np.arange(400))
    a, b = intrinsic_dim(x, n_boot=0), intrinsic_dim(doubled, n_boot=0)
    assert b.n_duplicates == 50 and b.n_points == 400
    assert (a.twonn_linear, a.mle_harmonic) == (b.twonn_linear, b.mle_harmonic)
    assert b.mle_harmonic > 0  # scikit-dimension's MLE returns 0.0 on this input


def test_bootstrap_spread_is_seeded_and_brackets_the_estimate():
    x = _clustered(800, 16, seed=7)
    dist, _ = exact_knn(x, 20)
    one, two = bootstrap_spread(dist, 50, seed=1), bootstrap_spread(dist, 50, seed=1)
    assert one == two
    got = intrinsic_dim(x, n_boot=100, seed=1)
    for name in ("twonn_linear", "twonn_closed_form", "mle_harmonic", "mle_mean"):
        entry = got.spread[name]
        assert entry["low"] < getattr(got, name) < entry["high"] and entry["std"] > 0


def test_bootstrap_draws_equal_the_estimators_on_each_resample():
    # The vectorised bootstrap (sorted sample from draw counts) against the plain definition, draw by draw.
    dist, _ = exact_knn(_clustered(700, 12, seed=4), 20)
    mu, local = dist[:, 1] / dist[:, 0], mle_local(dist)
    rng = np.random.default_rng(3)
    draws = {"twonn_linear": [], "twonn_closed_form": [], "mle_harmonic": [], "mle_mean": []}
    for _ in range(40):
        pick = rng.integers(0, mu.size, mu.size)
        draws["twonn_linear"].append(twonn_linear(mu[pick]))
        draws["twonn_closed_form"].append(twonn_closed_form(mu[pick]))
        draws["mle_harmonic"].append(harmonic_mean(local[pick]))
        draws["mle_mean"].append(float(np.mean(local[pick])))
    got = bootstrap_spread(dist, 40, seed=3)
    for name, values in draws.items():
        assert got[name]["std"] == float(np.std(values, ddof=1))
        assert (got[name]["low"], got[name]["high"]) == tuple(
            float(v) for v in np.percentile(values, [2.5, 97.5])
        )


def test_chunked_erank_equals_the_spectrum_erank():
    x = _clustered(3000, 24, seed=5) + 100.0  # far from the origin: centring matters
    assert centred_erank(x) == pytest.approx(linear_erank(x), rel=1e-12)
    small = _clustered(50, 24, seed=6)  # not tall: the SVD path
    assert centred_erank(small) == linear_erank(small)


def test_small_inputs():
    with pytest.raises(ValueError, match="3 distinct"):
        intrinsic_dim(np.ones((5, 3)))
    got = intrinsic_dim(_clustered(12, 4, seed=8), n_boot=0)  # fewer than k + 1 points: k shrinks
    assert got.k == 11


@pytest.mark.parametrize("dtype,width", [(np.float32, 384), (np.float64, 7), (np.float16, 3)])
def test_dedupe_by_hash_equals_sorting_rows(dtype, width, monkeypatch):
    """First occurrences equal the row-sorting reference, also when every hash collides (all checked)."""
    import anatomy.metrics.intrinsic_dim as module

    rng = np.random.default_rng(11)
    base = rng.standard_normal((300, width)).astype(dtype)
    x = base[rng.integers(0, 300, 1000)]
    x[5] = -0.0 * x[5]  # zeros of both signs
    x[6], x[7] = x[5], 0.0  # equal values (-0.0 == 0.0), different bytes: one point
    rows = np.ascontiguousarray(x + 0).view(np.dtype((np.void, x.dtype.itemsize * width))).ravel()
    expected = np.sort(np.unique(rows, return_index=True)[1])
    _, first = dedupe_rows(x)
    assert np.array_equal(first, expected)
    assert 5 in first and 6 not in first and 7 not in first
    monkeypatch.setattr(module, "_row_hashes", lambda points: np.zeros(len(points), dtype=np.uint64))
    unique, colliding = dedupe_rows(x)
    kept = dtype if dtype in (np.float32, np.float64) else np.float64  # float16 becomes float64
    assert np.array_equal(colliding, expected) and unique.dtype == kept
    np.testing.assert_array_equal(unique, x[expected].astype(kept))
    if kept == dtype:  # nothing repeats: the points themselves, no copy
        assert dedupe_rows(base)[0] is base


def test_a_repeat_with_negative_zeros_is_a_duplicate():
    """ReLU outputs hold -0.0: a row that repeats another up to the sign of its zeros is the same point (kept
    apart, it sat at distance 0 and every estimate came out 0)."""
    x = np.maximum(np.random.default_rng(0).normal(size=(1000, 16)), 0).astype(np.float32)
    x[1] = x[0]
    x[1][x[1] == 0] = -0.0
    got, plain = intrinsic_dim(x, n_boot=0), intrinsic_dim(np.delete(x, 1, axis=0), n_boot=0)
    assert (got.n_points, got.n_duplicates) == (999, 1)
    assert got.twonn_linear == plain.twonn_linear and got.mle_harmonic == plain.mle_harmonic > 5


def test_tiny_points_are_scaled_not_underflowed():
    """Squared differences of float64 points near 1e-170 underflow; a power-of-two scaling is exact and every
    estimate is scale-free, so the results equal those of the unscaled points."""
    y = _clustered(500, 10, seed=3)
    ref = intrinsic_dim(y, n_boot=0)
    for scale in (1e-160, 1e-170, 1e-300):
        got = intrinsic_dim(y * scale, n_boot=0)
        assert got.twonn_linear == pytest.approx(ref.twonn_linear, rel=1e-12)
        assert got.mle_harmonic == pytest.approx(ref.mle_harmonic, rel=1e-12)
        assert got.erank == pytest.approx(ref.erank, rel=1e-12)


def test_tied_neighbour_distances_are_refused_by_name():
    """A grid or binary points: every ratio r2/r1 is 1 (TwoNN has no slope), or k equidistant neighbours (the
    MLE divides by 0): an error that says so, not a ZeroDivisionError or an infinite mean."""
    from anatomy.metrics.points import PointsError

    binary = np.random.default_rng(0).integers(0, 2, (2000, 8)).astype(np.float32)
    with pytest.raises(PointsError, match="TwoNN is undefined.*one distance"):
        intrinsic_dim(binary, n_boot=0)
    corners = np.vstack([np.eye(25), 10 + np.random.default_rng(1).normal(size=(200, 25))])
    with pytest.raises(PointsError, match="MLE is undefined.*25 of 225 points"):
        intrinsic_dim(corners, n_boot=0)


def test_integers_that_round_to_one_float64_are_one_point():
    x = np.random.default_rng(2).integers(0, 1000, (300, 6)) + 2**60  # near 2^60: float64 steps of 256
    x[1] = x[0] + 1  # another integer, the same float64
    got = intrinsic_dim(x, n_boot=0)
    assert got.n_points == len(np.unique(x.astype(np.float64), axis=0)) and np.isfinite(got.twonn_linear)
