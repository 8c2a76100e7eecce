"""The TextEncoder interface every encoder (teacher, students, open_clip, Hugging Face) implements, and
ModuleEncoder, the one implementation of it over a torch module.

A wrapped module only maps token ids to per-token outputs; tokenizing, masking, pooling, batching, device
and dtype live here once:

    class MyTextModule(torch.nn.Module):
        def forward(self, ids: LongTensor[B, L], valid: BoolTensor[B, L]) -> Tensor[B, L, D_out]
        def token_embedding_matrix(self) -> Tensor[V, D_model]
        def positional_table(self) -> Tensor[L, D_model] | None
        def parameter_breakdown(self) -> dict[str, int]   # component -> parameter count, sums to the total
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

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

    def encode(self, prompts: Sequence[str], context_length: int | None = None) -> Encoded: ...

    def token_embedding(self) -> torch.Tensor: ...  # [V, D_model]

    def positional_embedding(self) -> torch.Tensor | None: ...  # [L, D_model]

    def parameter_breakdown(self) -> dict[str, int]: ...


class TextModule(Protocol):
    """What ModuleEncoder calls on its module beyond torch.nn.Module (the contract in this module's docstring).

    The towers are torch.nn.Module subclasses built inside functions (torch is imported lazily), so no static
    type names them; `text_module` states that a module honours this contract."""

    def __call__(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor: ...

    def token_embedding_matrix(self) -> torch.Tensor: ...

    def positional_table(self) -> torch.Tensor | None: ...

    def parameter_breakdown(self) -> dict[str, int]: ...


def text_module(module: torch.nn.Module) -> TextModule:
    """`module` seen through the TextModule contract (a static view: nothing is checked or converted)."""
    return cast("TextModule", module)


def valid_mask(ids: np.ndarray, content_lengths: Sequence[int]) -> np.ndarray:
    """True at start..end of each row, by position (pad id 0 is also the real token '!')."""
    n = np.minimum(np.asarray(content_lengths) + 2, ids.shape[1])
    return np.arange(ids.shape[1])[None, :] < n[:, None]


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class ModuleEncoder:
    """A TextEncoder over a torch module that maps (ids, valid) to per-token outputs.

    The loaders fill in what they know after construction: `load_notes` (every conversion a checkpoint
    load made), `masks_padding` (attention ignores padding, so length bucketing is exact), and for
    students `config` and `provenance` (from their config.json)."""

    load_notes: list[str]
    masks_padding: bool
    config: object | None  # a student's StudentConfig (not named here: base imports no encoder module)
    provenance: dict[str, Any]

    def __init__(
        self,
        module: torch.nn.Module,
        tokenizer: Tokenizer,
        *,
        name: str,
        context_length: int,
        output_dim: int,
        causal: bool,
        trained: bool,
        device: str | None = None,
        dtype: str = "fp32",
    ):
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        self.module = module.eval().to(self.device, self.dtype)
        self.tokenizer = tokenizer
        self.name, self.context_length, self.output_dim = name, context_length, output_dim
        self.causal, self.trained = causal, trained
        self.load_notes, self.masks_padding, self.config, self.provenance = [], False, None, {}

    def tokenize(
        self, prompts: Sequence[str], context_length: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids [B, L] and the valid mask [B, L] for `prompts`."""
        context = context_length or self.context_length
        content = self.tokenizer.encode(prompts)
        from anatomy.tokenizer import pack

        ids = pack(content, context, self.tokenizer.sot_id, self.tokenizer.eot_id, self.tokenizer.pad_id)
        return ids, valid_mask(ids, [len(c) for c in content])

    def encode_ids(self, ids: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor) -> Encoded:
        import torch

        ids_t = torch.as_tensor(ids, device=self.device, dtype=torch.long)
        valid_t = torch.as_tensor(valid, device=self.device, dtype=torch.bool)
        with torch.inference_mode():
            tokens = self.module(ids_t, valid_t).float()
        return Encoded(tokens=tokens, mask=valid_t, pooled=masked_mean(tokens, valid_t))

    def encode(self, prompts: Sequence[str], context_length: int | None = None) -> Encoded:
        ids, valid = self.tokenize(prompts, context_length)
        return self.encode_ids(ids, valid)

    def token_embedding(self) -> torch.Tensor:
        return text_module(self.module).token_embedding_matrix().detach().float().cpu()

    def positional_embedding(self) -> torch.Tensor | None:
        table = text_module(self.module).positional_table()
        return None if table is None else table.detach().float().cpu()

    def parameter_breakdown(self) -> dict[str, int]:
        return text_module(self.module).parameter_breakdown()

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())
