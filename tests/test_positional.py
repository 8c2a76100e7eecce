"""Positional-table anatomy: exact answers on constructed tables, and block means against a direct loop."""

from __future__ import annotations

import numpy as np
import pytest

from anatomy.metrics.positional import block_means, cosine_matrix, positional_anatomy


def test_orthogonal_positions():
    got = positional_anatomy(np.eye(32) * 3.0, block=8)
    np.testing.assert_allclose(got.cosine, np.eye(32), atol=1e-15)
    assert got.within_block == pytest.approx([0.0] * 4, abs=1e-15)
    np.testing.assert_allclose(got.adjacent, 0.0, atol=1e-15)
    assert got.spectrum.uncentred.erank == pytest.approx(32, rel=1e-12)
    assert got.block_means.shape == (4, 4)


def test_rotating_positions_have_known_similarities():
    # p_i = (cos w i, sin w i): cos(p_i, p_j) = cos(w (i - j)), so neighbours are cos(w) alike.
    w, n = 0.1, 24
    angles = w * np.arange(n)
    table = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    got = positional_anatomy(table, block=8)
    np.testing.assert_allclose(
        got.cosine, np.cos(w * (np.arange(n)[:, None] - np.arange(n)[None, :])), atol=1e-13
    )
    np.testing.assert_allclose(got.adjacent, np.cos(w), atol=1e-13)
    offsets = [i - j for i in range(8) for j in range(8) if i != j]
    assert got.within_block[0] == pytest.approx(np.mean(np.cos(w * np.array(offsets))), abs=1e-13)


def test_block_means_equal_a_direct_loop_with_a_short_last_block():
    rng = np.random.default_rng(0)
    cos = cosine_matrix(rng.standard_normal((20, 6)))
    got = block_means(cos, 8)  # blocks [0,8), [8,16), [16,20)
    edges = [(0, 8), (8, 16), (16, 20)]
    for a, (s, e) in enumerate(edges):
        for b, (t, f) in enumerate(edges):
            pairs = [cos[i, j] for i in range(s, e) for j in range(t, f) if i != j]
            assert got[a, b] == pytest.approx(np.mean(pairs), abs=1e-14)


def test_pca_components_for_90_percent():
    # A centred table whose centred spectrum is l_i = 0.7^i: 7 components carry 90% (metrics.md).
    rng = np.random.default_rng(1)
    n, d = 32, 31
    basis, _ = np.linalg.qr(np.hstack([np.ones((n, 1)), rng.standard_normal((n, d))]))
    u = basis[:, 1:]  # orthonormal columns orthogonal to the constant vector: already centred
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    table = u @ np.diag(np.sqrt(0.7 ** np.arange(1, d + 1))) @ v.T
    got = positional_anatomy(table)
    assert got.n90_pca == 7
    assert got.pca_curve[5] < 0.9 <= got.pca_curve[6]
    assert got.spectrum.centred.n90 == 7


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="L >= 2"):
        positional_anatomy(np.ones((1, 4)))
    with pytest.raises(ValueError, match="all zeros"):
        positional_anatomy(np.vstack([np.ones(4), np.zeros(4)]))
