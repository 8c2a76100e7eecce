"""Effective-rank family: the known answers of spec/metrics.md, and the matrix spectra around them."""

from __future__ import annotations

import numpy as np
import pytest

from anatomy.metrics.spectra import (
    explained_variance,
    linear_erank,
    matrix_spectrum,
    n_for_share,
    singular_values,
    spectrum_stats,
)


def test_power_law_spectrum_known_answers():
    # l_i = i^-0.5 for i = 1..1024, where l = s^2
    stats = spectrum_stats(np.sqrt(np.arange(1, 1025) ** -0.5))
    assert stats.erank == pytest.approx(981.8413, abs=5e-5)
    assert stats.erank_sq == pytest.approx(805.0886, abs=5e-5)
    assert stats.participation_ratio == pytest.approx(521.1173, abs=5e-5)
    assert stats.stable_rank == pytest.approx(62.5553, abs=5e-5)
    assert stats.n90 == 834
    assert stats.n_values == 1024


def test_geometric_spectrum_known_answers():
    stats = spectrum_stats(np.sqrt(0.7 ** np.arange(1, 33)))
    assert (stats.erank, stats.erank_sq, stats.participation_ratio, stats.stable_rank) == pytest.approx(
        (14.9251, 7.6605, 5.6665, 3.3333), abs=5e-5
    )
    assert stats.n90 == 7


def test_identity_matrix_known_answers():
    spec = matrix_spectrum(np.eye(256))
    assert spec.uncentred.erank == pytest.approx(256, rel=1e-12)
    assert spec.uncentred.n90 == 231
    assert spec.uncentred.stable_rank == pytest.approx(256, rel=1e-12)


def test_order_and_zeros_do_not_matter():
    s = np.array([3.0, 1.0, 2.0, 0.0])
    a, b = spectrum_stats(s), spectrum_stats(np.array([3.0, 2.0, 1.0]))
    assert a.erank == pytest.approx(b.erank, rel=1e-15)
    assert a.n_values == 4 and b.n_values == 3


def test_rank_one_matrix_has_erank_one():
    x = np.outer(np.arange(1, 6, dtype=float), np.array([1.0, -2.0, 0.5]))
    spec = matrix_spectrum(x)
    assert spec.uncentred.erank == pytest.approx(1.0, abs=1e-6)
    assert spec.uncentred.n90 == 1


def test_gram_path_equals_full_svd_on_a_tall_matrix():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 12)) * np.linspace(3, 0.1, 12)  # tall: the Gram path is taken
    for centred in (False, True):
        ref = np.linalg.svd(x - x.mean(0) if centred else x, compute_uv=False)
        np.testing.assert_allclose(singular_values(x, centred), ref, rtol=1e-10)


def test_centring_removes_a_common_offset():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 8)) + 100.0  # a big mean dominates the uncentred spectrum
    spec = matrix_spectrum(x)
    assert spec.uncentred.stable_rank < 1.01
    assert spec.centred.erank > 6


def test_explained_variance_and_n_for_share_agree():
    s = np.sqrt(np.array([5.0, 3.0, 1.0, 1.0]))
    curve = explained_variance(s)
    np.testing.assert_allclose(curve, [0.5, 0.8, 0.9, 1.0])
    assert n_for_share(s**2, 0.9) == 3
    assert n_for_share(s**2, 0.5) == 1


def test_linear_erank_of_isotropic_points_is_close_to_dimension():
    rng = np.random.default_rng(2)
    assert linear_erank(rng.standard_normal((20000, 16))) == pytest.approx(16, rel=0.01)


def test_empty_spectrum_is_refused():
    with pytest.raises(ValueError, match="all zero"):
        spectrum_stats(np.zeros(4))
    with pytest.raises(ValueError, match="2-D"):
        matrix_spectrum(np.ones(5))


def test_a_short_used_subset_is_judged_against_its_own_rank_bound():
    """46 used ids of a 384-wide table can have rank 46 at most: an effective rank of ~43 is nearly full, not a
    compressible table (the warning fired on every small corpus); the text says what the rank is out of."""
    from anatomy.analysis.spectrum import MatrixEntry, Spectrum, SpectrumResult

    rng = np.random.default_rng(0)
    full = MatrixEntry.of(rng.standard_normal((1000, 384)))
    used = MatrixEntry.of(rng.standard_normal((46, 384)), n_ids=46, rule="ids the corpus uses")
    result = SpectrumResult(encoder="x", vocab_size=1000, full=full, used=used)
    found = {f.key: f for f in Spectrum().findings(result, "encoder:x")}
    assert found["spectrum.used"].mark == "info"
    assert "of 46 (its rows; width 384)" in found["spectrum.used"].message
    low_rank = MatrixEntry.of(rng.standard_normal((1000, 8)) @ rng.standard_normal((8, 384)))
    result = SpectrumResult(encoder="x", vocab_size=1000, full=low_rank)
    assert Spectrum().findings(result, "encoder:x")[0].mark == "warn"  # 8 of 384: compressible
