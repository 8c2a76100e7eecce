"""Softmax error attenuation (spec/metrics.md): how much of an input perturbation survives attention.

The construction, stated in every result: the N embeddings are one attention set; queries and keys are the
embeddings themselves (identity projections, Q = K = X), logits are Q K^T / sqrt(d), and the values are the
clean embeddings (V = X), so the perturbation reaches the output only through the attention weights. The
same output with perturbed values (V = X + noise) is reported beside it for contrast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    reduction_factor: float | None  # None: no measurable output error (noise too small to move it)
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
        reduction_factor=logit_error / output_error if output_error > 0 else None,
        output_error_noisy_values=_relative(weights_noisy @ noisy, output),
    )


# ------------------------------------------------------------------------------------- the analysis unit
# `robustness`: softmax error attenuation on the pooled outputs of a sample of the corpus's prompts.

from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, param, sample_param, seed_param  # noqa: E402
from anatomy.findings import Finding  # noqa: E402


@dataclass(frozen=True)
class RobustnessParams:
    noise: tuple[float, ...] = param((0.1,), "Noise level(s), repeatable.", min=0, min_open=True, max=1e6)
    seed: int = seed_param()
    sample: int = sample_param(2000, "Distinct prompts in the attention set.", min=2, max=100_000)


@dataclass
class RobustnessResult(Result):
    encoder: str
    construction: dict[str, str]
    levels: list[Robustness]


class SoftmaxRobustness(Analysis[RobustnessParams, RobustnessResult]):
    name = "robustness"
    title = "Softmax error attenuation"
    description = "Softmax error attenuation: input, logit and attention-output errors under Gaussian noise."
    needs = frozenset({Need.ENCODER, Need.CORPUS})
    Params = RobustnessParams
    Result = RobustnessResult

    def compute(self, inputs: Inputs, params: RobustnessParams) -> RobustnessResult:
        from anatomy.analysis.sampling import draw_sequences, require_distinct

        picked = draw_sequences(inputs.need_corpus(), inputs.store, params.sample, params.seed).prompts
        require_distinct(inputs.need_corpus(), len(picked), 2, "the attention set")
        pooled = inputs.store.pooled(picked)
        levels = [softmax_robustness(pooled, noise=float(s), seed=params.seed) for s in params.noise]
        construction = {"X": f"pooled encoder outputs of {len(picked)} distinct prompts"} | CONSTRUCTION
        return RobustnessResult(inputs.encoder.name, construction, levels)

    def figures(self, result: RobustnessResult) -> dict[str, Any]:
        from anatomy.figures import representation as fig

        return {"robustness": fig.draw_robustness(fig.prepare_robustness(result))}

    def findings(self, result: RobustnessResult, section: str) -> list[Finding]:
        """One per noise level with a defined factor (see factor_text for its precision)."""
        from anatomy import paper

        return [
            Finding(
                "info",
                section,
                "robustness.factor",
                f"noise {level.noise:g}: attention shrinks the logit error {level.logit_error:.3g} to "
                f"{level.output_error:.3g} at the output, a factor of {factor_text(level.reduction_factor)} "
                f"(paper {paper.ROBUST_FACTOR})",
                level.reduction_factor,
            )
            for level in result.levels
            if level.reduction_factor is not None
        ]

    def paper_rows(self, result: RobustnessResult) -> list[PaperRow]:
        from anatomy import paper

        rows = []
        for level in result.levels[:1]:
            errors = f"{level.input_error:.3g} / {level.logit_error:.3g} / {level.output_error:.3g}"
            factor = "–" if level.reduction_factor is None else f"{level.reduction_factor:,.1f}"
            rows += [
                PaperRow.of(f"softmax errors input / logit / output (noise {level.noise:g})", errors,
                            paper.ROBUST_ERRORS),
                PaperRow.of("softmax error reduction factor", factor, paper.ROBUST_FACTOR),
            ]  # fmt: skip
        return rows

    def summary(self, result: RobustnessResult) -> list[str]:
        c = result.construction
        lines = [f"X: {c['X']}; {c['queries']}; {c['keys']}; logits {c['logits']}; {c['values']}"]
        for level in result.levels:
            factor = "undefined" if level.reduction_factor is None else f"x{level.reduction_factor:.1f}"
            lines.append(
                f"noise {level.noise:g}: input {level.input_error:.4f}, logits {level.logit_error:.4f}, "
                f"output {level.output_error:.6f}, reduction {factor} "
                f"(output with noisy values {level.output_error_noisy_values:.4f})"
            )
        return lines


def factor_text(factor: float) -> str:
    """A reduction factor with three significant figures below 100 (1.47, 14.6), whole above (282, 12,345)."""
    return f"{factor:,.0f}" if abs(factor) >= 99.95 else f"{factor:.3g}"
