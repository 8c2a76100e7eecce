"""The LiteText student towers: their shapes and their torch modules (defined on first use, so importing this
stays free of torch). anatomy.encoders.mobileclip builds and loads them (checkpoint layout, families);
`student_class()` returns the nn.Module class that mobileclip.build_tower instantiates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from anatomy.errors import EncoderError
from anatomy.tokenizer import CLIP_VOCAB_SIZE

OUTPUT_DIM = 256  # SAM3's fusion width: every student projects each token to it
CLIP_VOCAB = CLIP_VOCAB_SIZE


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
def student_class():
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
            table: torch.Tensor = self.pos_embed.pos_embed
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
