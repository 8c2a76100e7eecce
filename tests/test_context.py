"""Context-window table, length statistics and vocabulary coverage: known answers from metrics.md."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy.context import (
    context_curve,
    context_table,
    id_counts,
    length_stats,
    lengths_from_histogram,
    recommend_context,
    vocab_stats,
)

TOY = [3, 3, 4, 5, 9, 17, 20]  # metrics.md: at L=16 density 0.5, truncation 2/7, token loss 5/61


def test_toy_context_answer():
    row = context_table(TOY, [16])["16"]
    assert row["density"] == pytest.approx(0.5, abs=1e-15)
    assert row["padding"] == pytest.approx(0.5, abs=1e-15)
    assert row["truncation"] == pytest.approx(2 / 7, abs=1e-15)
    assert row["token_loss"] == pytest.approx(5 / 61, abs=1e-15)
    assert row["token_loss_per_prompt"] == pytest.approx((1 / 17 + 4 / 20) / 7, abs=1e-15)


def test_toy_rows_by_hand():
    table = context_table(TOY, [4, 20, 77])
    assert table["4"]["density"] == pytest.approx((3 + 3 + 4 * 5) / 28)
    assert table["4"]["truncation"] == pytest.approx(4 / 7)
    assert table["4"]["token_loss"] == pytest.approx((1 + 5 + 13 + 16) / 61)
    assert table["20"]["truncation"] == 0 and table["20"]["token_loss"] == 0
    assert table["77"]["density"] == pytest.approx(61 / (7 * 77))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(2, 90), min_size=1, max_size=200), st.integers(1, 100))
def test_density_identity(n, L):
    """density(L) * L = mean(n) * (1 - token_loss(L)) for any lengths and any L."""
    row = context_table(n, [L])[str(L)]
    assert row["density"] * L == pytest.approx(np.mean(n) * (1 - row["token_loss"]), rel=1e-12)
    assert 0 <= row["truncation"] <= 1 and 0 <= row["token_loss_per_prompt"] <= row["truncation"]


def test_length_stats_and_histogram_round_trip():
    stats = length_stats(TOY)
    assert stats["mean"] == pytest.approx(61 / 7)
    assert stats["median"] == 5.0 and stats["max"] == 20
    assert stats["p90"] == pytest.approx(np.percentile(TOY, 90))
    assert stats["histogram"] == {"3": 2, "4": 1, "5": 1, "9": 1, "17": 1, "20": 1}
    back = lengths_from_histogram(stats["histogram"])
    assert sorted(back.tolist()) == TOY
    for key in ("density", "token_loss", "truncation"):
        np.testing.assert_array_equal(
            context_curve(back, range(1, 30))[key], context_curve(TOY, range(1, 30))[key]
        )


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError, match="no prompts"):
        length_stats([])
    with pytest.raises(ValueError, match=">= 1"):
        context_table([0, 3], [8])


def test_recommended_context_is_the_smallest_within_both_bounds():
    n = np.array([5] * 90 + [12] * 8 + [40] * 2)
    rec = recommend_context(n)
    curve = context_curve(n, range(4, 78))
    ok = (curve["token_loss"] <= 0.01) & (curve["truncation"] <= 0.05)
    assert rec["pooled"]["L"] == int(curve["L"][ok][0])
    # 626 tokens; two 40-token prompts lose 2 (40 - L), first <= 6.26 at L = 37; truncation 2% there
    assert rec["pooled"]["L"] == 37
    ok_pp = (curve["token_loss_per_prompt"] <= 0.01) & (curve["truncation"] <= 0.05)
    assert rec["per_prompt"]["L"] == int(curve["L"][ok_pp][0])
    assert rec["pooled"]["truncation"] <= 0.05 and rec["pooled"]["token_loss"] <= 0.01
    assert recommend_context([200, 200])["pooled"] == {
        "L": None,
        "reason": "no candidate length meets both bounds",
    }


def test_vocab_stats_known_answer():
    # 3 prompts; content ids: 7 x4, 9 x2, 11 x1, 13 x1 (8 content tokens, 6 specials, 14 in all)
    counts = id_counts(np.array([7, 7, 9, 11, 7, 9, 7, 13]), vocab_size=20)
    stats = vocab_stats(
        counts, n_prompts=3, special_ids=(18, 19), token_text=lambda i: f"t{i}", top_k=(1, 2, 100)
    )
    assert stats["used"] == 6 and stats["used_content"] == 4
    assert stats["unused_share"] == pytest.approx(14 / 20)
    assert stats["top_k_coverage"] == {"1": 4 / 8, "2": 6 / 8, "100": 1.0}
    assert stats["top_k_coverage_with_special"] == {"1": 4 / 14, "2": 7 / 14, "100": 1.0}
    assert stats["special_share"] == pytest.approx(6 / 14)
    assert stats["top_tokens"] == [["t7", 4], ["t9", 2], ["t11", 1], ["t13", 1]]  # ties in id order


def test_special_share_is_two_over_mean_length():
    n = np.array([3, 4, 9, 12])
    content = id_counts(np.arange(int((n - 2).sum())) % 50, 100)
    stats = vocab_stats(content, n_prompts=len(n), special_ids=(98, 99))
    assert stats["special_share"] == pytest.approx(2 / n.mean())


def test_id_counts_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside"):
        id_counts(np.array([1, 50]), vocab_size=10)
