"""Softmax error attenuation (spec/metrics.md): how much of an input perturbation survives attention.

The construction, stated in every result: the N embeddings are one attention set; queries and keys are the
embeddings themselves (identity projections, Q = K = X), logits are Q K^T / sqrt(d), and the values are the
clean embeddings (V = X), so the perturbation reaches the output only through the attention weights. The
same output with perturbed values (V = X + noise) is reported beside it for contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONSTRUCTION = {
    "set": "the N embeddings form one attention set (every embedding attends to all N)",
    "queries": "Q = X (identity projection of the embeddings)",
    "keys": "K = X (identity projection of the embeddings)",
    "logits": "Q K^T / sqrt(d)",
    "values": "V = X, unperturbed: the noise reaches the output only through the attention weights",
    "perturbation": "X' = X + noise * N(0, I); Q' = K' = X'",
    "errors": "relative Frobenius norm ||A' - A|| / ||A||",
    "reduction_factor": "logit error / output error",
}


@dataclass(frozen=True)
class Robustness:
    noise: float
    n_items: int
    dim: int
    input_error: float
    logit_error: float
    output_error: float
    reduction_factor: float
    output_error_noisy_values: float  # for contrast: V = X' as well


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


def _relative(new: np.ndarray, old: np.ndarray) -> float:
    return float(np.linalg.norm(new - old) / np.linalg.norm(old))


def softmax_robustness(points: np.ndarray, noise: float = 0.1, seed: int = 0) -> Robustness:
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need embeddings [N >= 2, d], got shape {x.shape}")
    if noise <= 0:
        raise ValueError(f"noise must be positive, got {noise}")
    n, d = x.shape
    noisy = x + noise * np.random.default_rng(seed).standard_normal(x.shape)
    scale = 1.0 / np.sqrt(d)
    logits, logits_noisy = (x @ x.T) * scale, (noisy @ noisy.T) * scale
    weights, weights_noisy = _softmax_rows(logits), _softmax_rows(logits_noisy)
    output = weights @ x
    logit_error = _relative(logits_noisy, logits)
    output_error = _relative(weights_noisy @ x, output)
    return Robustness(
        noise=float(noise),
        n_items=n,
        dim=d,
        input_error=_relative(noisy, x),
        logit_error=logit_error,
        output_error=output_error,
        reduction_factor=logit_error / output_error if output_error > 0 else float("inf"),
        output_error_noisy_values=_relative(weights_noisy @ noisy, output),
    )
