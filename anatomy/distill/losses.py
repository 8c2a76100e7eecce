"""The distillation losses of the LiteText recipe (shared/spec/encoders.md), all masked by position.

`mask` is True at valid positions (start..end of each prompt); padding never contributes. Each loss is
first reduced per sample and then averaged over the batch, so a long prompt does not outweigh a short one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample: sum of squared errors over valid tokens and channels / (n_valid * D); then batch mean."""
    weights = mask.to(student.dtype).unsqueeze(-1)
    per_sample = ((student - teacher) ** 2 * weights).sum((1, 2))
    n_valid = mask.sum(1).clamp_min(1).to(student.dtype)
    return (per_sample / (n_valid * student.shape[-1])).mean()


def masked_cosine_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per token 1 - cosine over channels; mean over valid tokens per sample; then batch mean."""
    import torch.nn.functional as F

    distance = 1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)  # [B, L]
    weights = mask.to(distance.dtype)
    return ((distance * weights).sum(1) / weights.sum(1).clamp_min(1.0)).mean()


def consistency_loss(
    tokens: torch.Tensor, mask: torch.Tensor, shuffled_tokens: torch.Tensor, shuffled_mask: torch.Tensor
) -> torch.Tensor:
    """MSE between the masked-mean pooled student outputs of a prompt and of its word-shuffled form.

    Neither branch is detached: both are pulled towards each other, as in the recipe.
    """
    from anatomy.encoders.base import masked_mean

    return ((masked_mean(tokens, mask) - masked_mean(shuffled_tokens, shuffled_mask)) ** 2).mean()


@dataclass(frozen=True)
class LossWeights:
    w_cos: float = 0.0
    w_cons: float = 0.0


def distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor,
    weights: LossWeights,
    shuffled: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss = MSE + w_cos * (1 - cos) + w_cons * consistency; returns the total and its parts (floats).

    Losses are computed in fp32 whatever the autocast dtype of the student's forward pass.
    """
    student, teacher = student.float(), teacher.float()
    mse = masked_mse(student, teacher, mask)
    total, parts = mse, {"mse": mse}
    if weights.w_cos:
        parts["cos"] = masked_cosine_loss(student, teacher, mask)
        total = total + weights.w_cos * parts["cos"]
    if weights.w_cons:
        if shuffled is None:
            raise ValueError("w_cons > 0 needs the student's outputs on the word-shuffled prompts")
        parts["cons"] = consistency_loss(student, mask, shuffled[0].float(), shuffled[1])
        total = total + weights.w_cons * parts["cons"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def shuffle_word_ids(word_ids: list[list[int]], rng: np.random.Generator) -> list[int]:
    """Content ids of a prompt whose whitespace-split words are permuted (one-word prompts unchanged).

    `word_ids` holds each word's own token ids. CLIP BPE and WordPiece never merge across whitespace, so
    concatenating per-word ids in a new order is exactly tokenizing the shuffled text.
    """
    if len(word_ids) < 2:
        return [i for word in word_ids for i in word]
    order = rng.permutation(len(word_ids))
    return [i for k in order for i in word_ids[k]]
