"""The SAM3-LiteText students: MobileCLIP-S0 ("mct"), MobileCLIP-S1 and MobileCLIP2-L text towers with the
256-d projector, in the LiteText checkpoint key layout (spec: shared/spec/encoders.md, "Students").

The module's own state_dict keys ARE the LiteText layout without its prefix, so export is a prefix away and
loading is a strict key-for-key comparison. Differences from the SAM3 teacher that matter:
- no causal mask and no padding mask: padding positions are attended, so outputs depend on the context;
- the positional table is stored as [1, 1, T, D]; when the run's context differs from T it is resized
  bilinearly (align_corners False) as the original does, and the resize is reported.

    module = build_litetext("s1")                      # random init, context 16
    encoder = load_litetext("s1", "sam3_litetext_s1.pt")  # ModuleEncoder, strict
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from anatomy.errors import CheckpointError, EncoderError

if TYPE_CHECKING:
    import torch

    from anatomy.encoders.base import ModuleEncoder

log = logging.getLogger(__name__)

LITETEXT_PREFIX = "detector.backbone.language_backbone."
OUTPUT_DIM = 256  # SAM3's fusion width: every student projects each token to it
CLIP_VOCAB = 49408


@dataclass(frozen=True)
class TowerShape:
    """Everything that fixes a student's parameter shapes (context aside)."""

    width: int
    heads: int
    layout: tuple[str, ...]  # one entry per encoder.transformer.{i}: "attn" or "repmixer"
    vocab_size: int = CLIP_VOCAB
    output_dim: int = OUTPUT_DIM
    mlp_ratio: int = 4


KINDS: dict[str, TowerShape] = {
    "s0": TowerShape(512, 8, ("repmixer", "attn", "attn", "attn", "attn", "repmixer")),
    "s1": TowerShape(512, 8, ("attn",) * 12),
    "l": TowerShape(768, 12, ("attn",) * 12),
}


def tower_shape(kind: str) -> TowerShape:
    if kind not in KINDS:
        raise EncoderError(f"unknown LiteText student {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    return KINDS[kind]


@functools.cache
def _modules():
    """The torch modules, defined on first use so importing this file stays free of torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LayerNormFP32(nn.LayerNorm):
        """LayerNorm computed in fp32 whatever the input dtype (as MobileCLIP does), cast back."""

        def forward(self, x):
            w = None if self.weight is None else self.weight.float()
            b = None if self.bias is None else self.bias.float()
            return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)

    class MultiHeadAttention(nn.Module):
        """Packed qkv_proj (q, k, v blocks, heads contiguous), softmax in fp32, no mask at all."""

        def __init__(self, width: int, heads: int):
            super().__init__()
            self.heads, self.head_dim = heads, width // heads
            self.qkv_proj = nn.Linear(width, 3 * width)
            self.out_proj = nn.Linear(width, width)

        def forward(self, x):
            b, s, d = x.shape
            q, k, v = self.qkv_proj(x).view(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            if x.dtype == torch.float32:  # fused kernel; its softmax is already fp32
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
                out = scores.float().softmax(-1).to(x.dtype) @ v
            return self.out_proj(out.transpose(1, 2).reshape(b, s, d))

    class TransformerLayer(nn.Module):
        """Pre-norm: x + MHA(LN(x)); x + FFN(LN(x)). Sequential indices give the checkpoint's key names."""

        def __init__(self, width: int, heads: int, mlp_ratio: int):
            super().__init__()
            self.pre_norm_mha = nn.Sequential(LayerNormFP32(width), MultiHeadAttention(width, heads))
            self.pre_norm_ffn = nn.Sequential(
                LayerNormFP32(width),
                nn.Linear(width, mlp_ratio * width),
                nn.GELU(),
                nn.Identity(),  # index 3 was dropout; keeps fc2 at index 4 as in the checkpoints
                nn.Linear(mlp_ratio * width, width),
            )

        def forward(self, x):
            x = x + self.pre_norm_mha(x)
            return x + self.pre_norm_ffn(x)

    class ConvBN(nn.Module):
        def __init__(self, width: int, kernel: int):
            super().__init__()
            self.conv = nn.Conv2d(
                width, width, (1, kernel), padding=(0, kernel // 2), groups=width, bias=False
            )
            self.bn = nn.BatchNorm2d(width)

        def forward(self, x):
            return self.bn(self.conv(x))

    class SkipOnly(nn.Module):
        """MobileOne block with no conv branch: only its BatchNorm skip (the token mixer's `norm`)."""

        def __init__(self, width: int):
            super().__init__()
            self.rbr_skip = nn.BatchNorm2d(width)

        def forward(self, x):
            return self.rbr_skip(x)

    class SkipConv(SkipOnly):
        """MobileOne block, one depthwise 1xK conv branch plus the BatchNorm skip, no activation."""

        def __init__(self, width: int, kernel: int):
            super().__init__(width)
            self.rbr_conv = nn.ModuleList([ConvBN(width, kernel)])

        def forward(self, x):
            return self.rbr_skip(x) + self.rbr_conv[0](x)

    class RepMixer(nn.Module):
        def __init__(self, width: int, kernel: int, ls_init: float):
            super().__init__()
            self.norm = SkipOnly(width)
            self.mixer = SkipConv(width, kernel)
            self.layer_scale = nn.Parameter(torch.full((width, 1, 1), ls_init))

        def forward(self, x):
            return x + self.layer_scale * (self.mixer(x) - self.norm(x))

    class ConvFFN(nn.Module):
        def __init__(self, width: int, hidden: int, kernel: int):
            super().__init__()
            self.conv = ConvBN(width, kernel)
            self.fc1 = nn.Conv2d(width, hidden, 1)
            self.act = nn.GELU()
            self.fc2 = nn.Conv2d(hidden, width, 1)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(self.conv(x))))

    class RepMixerBlock(nn.Module):
        """S0's convolutional block; works on the sequence as an image [B, D, 1, S]. Needs eval() for BN."""

        def __init__(self, width: int, mlp_ratio: int, kernel: int = 11, ls_init: float = 1e-5):
            super().__init__()
            self.token_mixer = RepMixer(width, kernel, ls_init)
            self.convffn = ConvFFN(width, mlp_ratio * width, kernel)
            self.layer_scale = nn.Parameter(torch.full((width, 1, 1), ls_init))

        def forward(self, x):
            x = x.transpose(1, 2).unsqueeze(2)
            x = self.token_mixer(x)
            x = x + self.layer_scale * self.convffn(x)
            return x.squeeze(2).transpose(1, 2)

    class LearnablePositions(nn.Module):
        def __init__(self, table_length: int, width: int):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.empty(1, 1, table_length, width))

    class PositionalEmbedding(nn.Module):
        def __init__(self, table_length: int, width: int):
            super().__init__()
            self.pos_embed = LearnablePositions(table_length, width)

        def forward(self, length: int):
            table = self.pos_embed.pos_embed
            if table.shape[2] != length:  # the original's resize: bilinear over (T, D), D unchanged
                table = F.interpolate(
                    table.float(), size=(length, table.shape[3]), mode="bilinear", align_corners=False
                ).to(table.dtype)
            return table.reshape(1, length, table.shape[3])

    class TextTower(nn.Module):
        def __init__(self, shape: TowerShape, table_length: int):
            super().__init__()
            d = shape.width
            self.embedding_layer = nn.Embedding(shape.vocab_size, d)
            self.positional_embedding = PositionalEmbedding(table_length, d)
            self.transformer = nn.ModuleList(
                RepMixerBlock(d, shape.mlp_ratio)
                if kind == "repmixer"
                else TransformerLayer(d, shape.heads, shape.mlp_ratio)
                for kind in shape.layout
            )
            self.final_layer_norm = LayerNormFP32(d)
            self.projection_layer = nn.Parameter(torch.empty(d, d))  # stored, unused on the per-token path

    class LiteTextStudent(nn.Module):
        """ids [B, L] -> per-token outputs [B, L, output_dim]; `valid` is accepted and ignored (pads attended)."""

        def __init__(self, shape: TowerShape, context_length: int, table_length: int | None = None):
            super().__init__()
            if shape.width % shape.heads:
                raise EncoderError(f"width {shape.width} is not divisible by heads {shape.heads}")
            self.shape, self.context_length, self.output_dim = shape, context_length, shape.output_dim
            self.encoder = TextTower(shape, table_length or context_length)
            self.projector = nn.Linear(shape.width, shape.output_dim)
            self.reset_parameters()

        @torch.no_grad()
        def reset_parameters(self) -> None:
            d = self.shape.width
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.init.normal_(m.weight, std=0.02)  # plain normal: trunc_normal_ is slow at 100M+
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            nn.init.normal_(self.encoder.embedding_layer.weight, std=d**-0.5)
            nn.init.normal_(self.encoder.positional_embedding.pos_embed.pos_embed, std=d**-0.5)
            nn.init.normal_(self.encoder.projection_layer, std=d**-0.5)

        @property
        def table_length(self) -> int:
            return self.encoder.positional_embedding.pos_embed.pos_embed.shape[2]

        def hidden(self, ids):
            """Per-token outputs of final_layer_norm, before the projector (what open_clip's towers return)."""
            enc = self.encoder
            x = enc.embedding_layer(ids)
            x = x + enc.positional_embedding(ids.shape[1]).to(x.dtype)
            for layer in enc.transformer:
                x = layer(x)
            return enc.final_layer_norm(x)

        def forward(self, ids, valid=None):
            return self.projector(self.hidden(ids))

        def token_embedding_matrix(self):
            return self.encoder.embedding_layer.weight

        def positional_table(self):
            """[L, D] as used at this module's context (resized when the stored T differs)."""
            return self.encoder.positional_embedding(self.context_length)[0]

        def parameter_breakdown(self) -> dict[str, int]:
            enc = self.encoder

            def count(*modules) -> int:
                return sum(p.numel() for m in modules for p in m.parameters())

            layers = [m for m in enc.transformer if isinstance(m, TransformerLayer)]
            mixers = [m for m in enc.transformer if isinstance(m, RepMixerBlock)]
            parts = {
                "token_embedding": count(enc.embedding_layer),
                "positional_embedding": count(enc.positional_embedding),
                "transformer_layers": count(*layers),
                "repmixer_blocks": count(*mixers),
                "final_layer_norm": count(enc.final_layer_norm),
                "projection_layer (unused)": enc.projection_layer.numel(),
                "projector": count(self.projector),
            }
            return {k: v for k, v in parts.items() if v or k != "repmixer_blocks"}

    return LiteTextStudent


def build_tower(
    shape: TowerShape, context_length: int = 16, table_length: int | None = None
) -> torch.nn.Module:
    """A LiteText-layout text tower of any shape (the custom students use this too)."""
    return _modules()(shape, context_length, table_length)


def empty_tower(shape: TowerShape, context_length: int, table_length: int | None = None) -> torch.nn.Module:
    """A tower with uninitialised storage, for loading: skips the random init that strict loading overwrites."""
    import torch

    with torch.device("meta"):
        module = build_tower(shape, context_length, table_length)
    return module.to_empty(device="cpu")


def build_litetext(kind: str, context_length: int = 16, table_length: int | None = None) -> torch.nn.Module:
    """Randomly initialised student ("s0" | "s1" | "l"); its positional table has T = table_length or context."""
    return build_tower(tower_shape(kind), context_length, table_length)


# --------------------------------------------------------------------------------------- checkpoint layout

_OLD_ATTENTION = {  # nn.MultiheadAttention names of the older variant -> the packed qkv_proj names
    "pre_norm_mha.1.attn.in_proj_weight": "pre_norm_mha.1.qkv_proj.weight",
    "pre_norm_mha.1.attn.in_proj_bias": "pre_norm_mha.1.qkv_proj.bias",
    "pre_norm_mha.1.attn.out_proj.weight": "pre_norm_mha.1.out_proj.weight",
    "pre_norm_mha.1.attn.out_proj.bias": "pre_norm_mha.1.out_proj.bias",
}
POS_KEY = "encoder.positional_embedding.pos_embed.pos_embed"


def litetext_state_dict(module: torch.nn.Module, prefix: str = LITETEXT_PREFIX) -> dict[str, torch.Tensor]:
    """The module's weights in the LiteText checkpoint layout (qkv_proj variant), under `prefix`."""
    return {prefix + k: v.detach().clone() for k, v in module.state_dict().items()}


def text_keys(state: Mapping[str, torch.Tensor], source: str, notes: list[str]) -> dict[str, torch.Tensor]:
    """The text-encoder keys in the qkv_proj layout, prefix removed (a full SAM3-LiteText file or the tower alone)."""
    from anatomy.encoders.checkpoints import take_prefix

    prefix = LITETEXT_PREFIX if any(k.startswith(LITETEXT_PREFIX) for k in state) else ""
    state = take_prefix(state, prefix, notes)
    if POS_KEY not in state:
        raise CheckpointError(
            f"{source}: no LiteText text-encoder keys (expected {LITETEXT_PREFIX + POS_KEY} or {POS_KEY})",
            hint="is this a SAM3-LiteText checkpoint? the SAM3 teacher loads with the sam3: spec",
        )
    out, renamed = {}, 0
    for key, value in state.items():
        old = next((o for o in _OLD_ATTENTION if key.endswith(o)), None)
        if old is not None:
            key, renamed = key[: -len(old)] + _OLD_ATTENTION[old], renamed + 1
        out[key] = value
    if renamed:
        notes.append(
            f"renamed {renamed} nn.MultiheadAttention keys (attn.in_proj_*, attn.out_proj.*) to qkv_proj"
        )
    return out


def table_length_of(state: Mapping[str, torch.Tensor], source: str) -> int:
    table = state.get(POS_KEY)
    if table is None or table.ndim != 4 or tuple(table.shape[:2]) != (1, 1):
        shape = None if table is None else list(table.shape)
        raise CheckpointError(f"{source}: {POS_KEY} must be [1, 1, T, D], found {shape}")
    return int(table.shape[2])


def load_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, notes: list[str]):
    """Strict load (checkpoints.load_strict); BatchNorm step counters, unused in eval, may be absent."""
    import torch

    from anatomy.encoders.checkpoints import load_strict

    state = dict(state)
    counters = [k for k in module.state_dict() if k.endswith("num_batches_tracked") and k not in state]
    for key in counters:
        state[key] = torch.zeros((), dtype=torch.long)
    if counters:
        notes.append(f"filled {len(counters)} absent BatchNorm num_batches_tracked counters (unused in eval)")
    return load_strict(module, state, source=source, notes=notes)


def load_litetext_module(kind: str, path: str | Path, context_length: int = 16):
    """(module, load report) of a LiteText student checkpoint; T is read from the file, never assumed."""
    from anatomy.encoders.checkpoints import read_state_dict

    source = str(path)
    state, notes = read_state_dict(path)
    state = text_keys(state, source, notes)
    table = table_length_of(state, source)
    module = empty_tower(tower_shape(kind), context_length, table)  # every value comes from the file
    report = load_weights(module, state, source, notes)
    if table != context_length:
        message = (
            f"positional table has T={table} but the context is {context_length}: resizing it bilinearly "
            "(align_corners=False) as the original does; a model trained at one length may degrade at another"
        )
        report.notes.append(message)
        log.warning("%s: %s", source, message)
    return module, report


def load_litetext(
    kind: str,
    path: str | Path,
    context_length: int = 16,
    device: str | None = None,
    dtype: str = "fp32",
) -> ModuleEncoder:
    """A LiteText student from its checkpoint (.pt/.pth/.safetensors; prefixed, bare or {"model": ...})."""
    from anatomy.encoders.base import ModuleEncoder
    from anatomy.tokenizer import clip_tokenizer

    module, report = load_litetext_module(kind, path, context_length)
    encoder = ModuleEncoder(
        module,
        clip_tokenizer(),
        name=f"litetext-{kind}:{path}",
        context_length=context_length,
        output_dim=module.shape.output_dim,
        causal=False,
        trained=True,
        device=device,
        dtype=dtype,
    )
    encoder.load_notes = report.notes
    return encoder


def describe(kinds: Sequence[str] = tuple(KINDS), context_length: int = 16) -> list[dict]:
    """Name, parameter total and breakdown of each student architecture (shapes only, on the meta device)."""
    import torch

    rows = []
    for kind in kinds:
        with torch.device("meta"):
            breakdown = build_litetext(kind, context_length).parameter_breakdown()
        rows.append(
            {"name": f"litetext-{kind}", "parameters": sum(breakdown.values()), "components": breakdown}
        )
    return rows
