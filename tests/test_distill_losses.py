"""Known answers for the distillation losses (shared/spec/encoders.md, 'Distillation recipe')."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anatomy.distill.losses import (
    LossWeights,
    consistency_loss,
    distill_loss,
    masked_cosine_loss,
    masked_mse,
    shuffle_word_ids,
)


def _pair():
    """Two prompts, D = 2: 2 valid tokens (error 1 everywhere) and 3 valid (one error of 3). Pads are junk."""
    teacher = torch.zeros(2, 4, 2)
    student = torch.zeros(2, 4, 2)
    student[0, :2] = 1.0
    student[1, 1, 0] = 3.0
    student[0, 2:] = 1e6  # padding: must not count
    student[1, 3:] = -1e6
    mask = torch.tensor([[True, True, False, False], [True, True, True, False]])
    return student, teacher, mask


def test_masked_mse_known_answer():
    student, teacher, mask = _pair()
    # sample 0: 4 / (2 * 2) = 1; sample 1: 9 / (3 * 2) = 1.5; mean 1.25
    assert masked_mse(student, teacher, mask).item() == pytest.approx(1.25)


def test_masked_mse_matches_loop():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, 3, generator=gen), torch.randn(5, 7, 3, generator=gen)
    n = torch.tensor([1, 7, 3, 2, 5])
    mask = torch.arange(7)[None] < n[:, None]
    expected = np.mean(
        [((s[i, : n[i]] - t[i, : n[i]]) ** 2).sum().item() / (n[i].item() * 3) for i in range(5)]
    )
    assert masked_mse(s, t, mask).item() == pytest.approx(expected, rel=1e-6)


def test_masked_cosine_known_answer():
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    teacher = torch.stack([torch.stack([e0, e0, e0]), torch.stack([e0, e0, e0])])
    # sample 0: same direction (0), orthogonal (1), pad opposite (ignored) -> 0.5
    # sample 1: opposite (2), scaled same (0), valid -> 1.0 ; batch mean 0.75
    student = torch.stack([torch.stack([2 * e0, e1, -e0]), torch.stack([-e0, 5 * e0, e1])])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert masked_cosine_loss(student, teacher, mask).item() == pytest.approx((0.5 + 1.0) / 2)


def test_consistency_known_answer_and_both_branches_get_gradient():
    a = torch.tensor(
        [[[1.0, 1.0], [1.0, 1.0], [9.0, 9.0]]], requires_grad=True
    )  # pooled [1, 1] (pad ignored)
    b = torch.tensor(
        [[[0.0, 2.0], [0.0, -2.0], [0.0, 0.0]]], requires_grad=True
    )  # pooled [0, 0] over 2 valid
    mask_a = torch.tensor([[True, True, False]])
    mask_b = torch.tensor([[True, True, False]])
    loss = consistency_loss(a, mask_a, b, mask_b)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert a.grad is not None and b.grad is not None
    assert a.grad[0, :2].abs().sum() > 0 and b.grad[0, :2].abs().sum() > 0
    torch.testing.assert_close(a.grad[0, :2].sum(0), -b.grad[0, :2].sum(0))
    assert a.grad[0, 2].abs().sum() == 0  # padding gets no gradient


def test_distill_loss_combines_weights():
    student, teacher, mask = _pair()
    teacher = teacher + torch.tensor([1.0, 0.0])  # nonzero teacher so cosine is defined
    shuffled = (student.flip(1), mask.flip(1))
    total, parts = distill_loss(student, teacher, mask, LossWeights(w_cos=2.0, w_cons=0.1), shuffled)
    expected = (
        masked_mse(student, teacher, mask)
        + 2.0 * masked_cosine_loss(student, teacher, mask)
        + 0.1 * consistency_loss(student, mask, *shuffled)
    )
    assert total.item() == pytest.approx(expected.item())
    assert set(parts) == {"mse", "cos", "cons"}
    only_mse, parts = distill_loss(student, teacher, mask, LossWeights())
    assert set(parts) == {"mse"} and only_mse.item() == pytest.approx(parts["mse"])
    with pytest.raises(ValueError, match="shuffled"):
        distill_loss(student, teacher, mask, LossWeights(w_cons=0.1))


def test_shuffled_word_ids_equal_tokenizing_the_shuffled_text():
    from anatomy.tokenizer import clip_tokenizer

    tok = clip_tokenizer()
    prompt = "the small red car, left of a dog's bowl"
    words = prompt.split()
    per_word = tok.encode(words)
    rng = np.random.default_rng(3)
    order = np.random.default_rng(3).permutation(len(words))
    assert shuffle_word_ids(per_word, rng) == tok.encode([" ".join(words[k] for k in order)])[0]
    assert shuffle_word_ids(tok.encode(["umbrella"]), rng) == tok.encode(["umbrella"])[0]
