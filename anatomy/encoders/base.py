"""The TextEncoder interface every encoder (teacher, students, open_clip, Hugging Face) implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from anatomy.tokenizer import Tokenizer


@dataclass
class Encoded:
    tokens: torch.Tensor  # [B, L, D] per-token outputs
    mask: torch.Tensor  # [B, L] bool, True at valid positions (start..end), by position never by id
    pooled: torch.Tensor  # [B, D] masked mean of tokens over valid positions


class TextEncoder(Protocol):
    name: str  # the spec it was loaded from, e.g. "sam3:/path/sam3.pt"
    tokenizer: Tokenizer
    context_length: int
    output_dim: int
    causal: bool  # causal encoders allow exact length bucketing
    trained: bool  # False for bare architectures (random weights): analyses refuse them

    def encode(self, prompts: Sequence[str]) -> Encoded: ...

    def token_embedding(self) -> torch.Tensor:  # [V, D_model]
        ...

    def positional_embedding(self) -> torch.Tensor | None:  # [L, D_model], None if the model has none
        ...

    def parameter_breakdown(self) -> dict[str, int]: ...
