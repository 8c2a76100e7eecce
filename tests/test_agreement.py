"""Student-teacher agreement: exact answers for copies, rotations and masked garbage."""

from __future__ import annotations

import numpy as np
import pytest

from anatomy.metrics.similarity import agreement, knn_overlap, pooled_cosines, token_cosines


def _tokens(seed, b=30, length=8, d=12):
    rng = np.random.default_rng(seed)
    tokens = rng.standard_normal((b, length, d))
    n_valid = rng.integers(2, length + 1, b)
    mask = np.arange(length)[None, :] < n_valid[:, None]
    return tokens, mask


def test_identical_encoders_agree_perfectly():
    tokens, mask = _tokens(0)
    pooled = tokens.mean(1)
    got = agreement(tokens, mask, pooled, tokens.copy(), mask, pooled.copy(), k=5)
    assert got.token_cosine.mean == pytest.approx(1.0, abs=1e-14)
    assert got.token_cosine.n == mask.sum()
    assert got.pooled_cosine.min == pytest.approx(1.0, abs=1e-14)
    assert got.knn_overlap.mean == 1.0 and got.notes == []


def test_padding_is_ignored_and_the_shorter_context_bounds_the_comparison():
    tokens, mask = _tokens(1)
    student = tokens.copy()
    student[~mask] *= -1  # garbage at padded positions must not count
    short = student[:, :5]  # a student with context 5
    cos = token_cosines(tokens, mask, short, mask[:, :5])
    assert cos.size == mask[:, :5].sum()
    np.testing.assert_allclose(cos, 1.0, atol=1e-14)


def test_rotation_keeps_neighbourhoods_but_not_cosines():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 16))
    rotation, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    assert knn_overlap(x, x @ rotation, k=10).mean() == 1.0
    assert pooled_cosines(x, x @ rotation).mean() < 0.9


def test_knn_overlap_against_sets():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
    got = knn_overlap(a, b, k=4)

    def neighbours(x, i):
        d = np.linalg.norm(x - x[i], axis=1)
        d[i] = np.inf
        return set(np.argsort(d)[:4])

    expected = [len(neighbours(a, i) & neighbours(b, i)) / 4 for i in range(60)]
    np.testing.assert_allclose(got, expected)


def test_different_widths_compare_neighbourhoods_only():
    tokens, mask = _tokens(4)
    student = tokens[..., :6]
    got = agreement(tokens, mask, tokens.mean(1), student, mask, student.mean(1), k=5)
    assert got.token_cosine is None and got.pooled_cosine is None
    assert "widths differ" in got.notes[0]
    assert 0 <= got.knn_overlap.mean <= 1
