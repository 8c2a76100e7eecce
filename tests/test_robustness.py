"""Softmax error attenuation: parity with torch's attention, and the statistics of the input error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anatomy.analysis.robustness import CONSTRUCTION, softmax_robustness


def _reference(x: np.ndarray, noise: float, seed: int):
    """The same experiment through torch.nn.functional.scaled_dot_product_attention (float64)."""
    noisy = x + noise * np.random.default_rng(seed).standard_normal(x.shape)
    xt, nt = torch.from_numpy(x)[None], torch.from_numpy(noisy)[None]
    clean = torch.nn.functional.scaled_dot_product_attention(xt, xt, xt)
    perturbed = torch.nn.functional.scaled_dot_product_attention(nt, nt, xt)  # V stays clean
    both = torch.nn.functional.scaled_dot_product_attention(nt, nt, nt)
    d = x.shape[1]
    logits, logits_n = xt @ xt.transpose(1, 2) / d**0.5, nt @ nt.transpose(1, 2) / d**0.5
    rel = lambda a, b: float(torch.linalg.norm(a - b) / torch.linalg.norm(b))  # noqa: E731
    return rel(logits_n, logits), rel(perturbed, clean), rel(both, clean)


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_matches_torch_attention(scale):
    x = np.random.default_rng(0).standard_normal((300, 64)) * scale
    got = softmax_robustness(x, noise=0.1, seed=3)
    logit, output, output_both = _reference(x, 0.1, 3)
    assert got.logit_error == pytest.approx(logit, rel=1e-10)
    assert got.output_error == pytest.approx(output, rel=1e-8)
    assert got.output_error_noisy_values == pytest.approx(output_both, rel=1e-8)
    assert got.reduction_factor == pytest.approx(logit / output, rel=1e-8)


def test_input_error_is_noise_over_signal():
    x = np.random.default_rng(1).standard_normal((500, 128)) * 0.2  # per-coordinate scale 0.2
    got = softmax_robustness(x, noise=0.1, seed=0)
    assert got.input_error == pytest.approx(0.5, rel=0.02)  # 0.1 / 0.2 on average
    assert (got.n_items, got.dim, got.noise) == (500, 128, 0.1)


def test_small_logits_attenuate_strongly():
    # Nearly uniform attention: the weights barely move, so the output error collapses.
    x = np.random.default_rng(2).standard_normal((200, 32)) * 0.05
    got = softmax_robustness(x, noise=0.1, seed=0)
    assert got.input_error > 1 and got.reduction_factor > 20
    assert got.output_error < got.output_error_noisy_values


def test_seeded_and_stated():
    x = np.random.default_rng(3).standard_normal((50, 8))
    assert softmax_robustness(x, seed=5) == softmax_robustness(x, seed=5)
    assert softmax_robustness(x, seed=5) != softmax_robustness(x, seed=6)
    assert "Q = X" in CONSTRUCTION["queries"] and "unperturbed" in CONSTRUCTION["values"]
    with pytest.raises(ValueError, match="noise"):
        softmax_robustness(x, noise=0)


def test_noise_too_small_to_move_the_output_has_no_factor():
    """0 / 0 is undefined: the factor is None (the JSON's null, the summary's "undefined"), never inf."""
    x = np.random.default_rng(0).standard_normal((20, 8))
    got = softmax_robustness(x, noise=1e-320)
    assert got.output_error == 0 and got.reduction_factor is None
