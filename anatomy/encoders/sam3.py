"""The SAM3 text encoder (the teacher): a causal CLIP text transformer plus a 1024 -> 256 resizer.

Built from the description in shared/spec/encoders.md. The module's own state_dict keys ARE the official
`sam3.pt` layout with the prefix `detector.backbone.language_backbone.` removed, so an official checkpoint
loads by stripping that prefix; the Hugging Face transformers layout is mapped onto the same keys.
Width, depth, vocabulary, context and MLP width are read from the checkpoint (heads = width / 64, as in
SAM3), so tests can write small checkpoints in the exact layouts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anatomy.encoders.checkpoints import find_prefix, load_strict, read_state_dict, take_prefix
from anatomy.errors import CheckpointError
from anatomy.tokenizer import CLIP_VOCAB_SIZE

OFFICIAL_PREFIX = "detector.backbone.language_backbone."
HF_TEXT = "text_encoder.text_model."
HEAD_DIM = 64  # SAM3: heads = width / 64


@dataclass(frozen=True)
class Sam3Config:
    vocab_size: int = CLIP_VOCAB_SIZE
    context_length: int = 32
    width: int = 1024
    layers: int = 24
    mlp_width: int = 4096
    projection_dim: int = 512  # the stored-but-unused text_projection
    output_dim: int = 256  # resizer

    @property
    def heads(self) -> int:
        return max(1, self.width // HEAD_DIM)


class Attention(nn.Module):
    """Causal multi-head self-attention with nn.MultiheadAttention's packed parameter names."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        # Causal, no padding mask (as SAM3): position i sees 0..i, so outputs never depend on what follows.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = Mlp(width, mlp_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: Sam3Config):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_width) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class TextEncoder(nn.Module):
    def __init__(self, cfg: Sam3Config):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg)
        self.ln_final = nn.LayerNorm(cfg.width, eps=1e-5)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.projection_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=cfg.width**-0.5)


class Sam3Text(nn.Module):
    """ids [B, L] -> 256-d per-token outputs [B, L, 256]; L may be anything up to the positional table."""

    def __init__(self, cfg: Sam3Config = Sam3Config()):
        super().__init__()
        self.cfg = cfg
        self.encoder = TextEncoder(cfg)
        self.resizer = nn.Linear(cfg.width, cfg.output_dim)

    def forward(self, ids: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        # `valid` is unused: the encoder is causal and has no padding mask, so a prompt's outputs are the
        # same whatever follows it (this is what makes length bucketing exact).
        enc = self.encoder
        length = ids.shape[1]
        if length > enc.positional_embedding.shape[0]:
            raise ValueError(
                f"sequence of {length} tokens exceeds the {enc.positional_embedding.shape[0]} positions"
            )
        x = enc.token_embedding(ids) + enc.positional_embedding[:length]
        x = enc.ln_final(enc.transformer(x))
        return self.resizer(x)  # the text_projection result is discarded in SAM3

    def token_embedding_matrix(self) -> torch.Tensor:
        return self.encoder.token_embedding.weight

    def positional_table(self) -> torch.Tensor:
        return self.encoder.positional_embedding

    def parameter_breakdown(self) -> dict[str, int]:
        enc = self.encoder

        def count(m):
            return sum(p.numel() for p in m.parameters()) if isinstance(m, nn.Module) else m.numel()

        return {
            "token_embedding": count(enc.token_embedding),
            "positional_embedding": count(enc.positional_embedding),
            "blocks": count(enc.transformer),
            "ln_final": count(enc.ln_final),
            "text_projection (unused)": count(enc.text_projection),
            "resizer": count(self.resizer),
        }


# ------------------------------------------------------------------------------------ checkpoint layouts

_HF_BLOCK = {
    "self_attn.out_proj.weight": "attn.out_proj.weight",
    "self_attn.out_proj.bias": "attn.out_proj.bias",
    "layer_norm1.weight": "ln_1.weight",
    "layer_norm1.bias": "ln_1.bias",
    "layer_norm2.weight": "ln_2.weight",
    "layer_norm2.bias": "ln_2.bias",
    "mlp.fc1.weight": "mlp.c_fc.weight",
    "mlp.fc1.bias": "mlp.c_fc.bias",
    "mlp.fc2.weight": "mlp.c_proj.weight",
    "mlp.fc2.bias": "mlp.c_proj.bias",
}


def detect_layout(state: dict[str, torch.Tensor]) -> tuple[str, str]:
    """('official' | 'hf', prefix) from the token-embedding key; an error when neither layout is present."""
    prefix = find_prefix(state, HF_TEXT + "embeddings.token_embedding.weight")
    if prefix is not None:
        return "hf", prefix
    prefix = find_prefix(state, "encoder.token_embedding.weight")
    if prefix is not None:
        return "official", prefix
    raise CheckpointError(
        "no SAM3 text encoder found: neither 'encoder.token_embedding.weight' (official sam3.pt layout, under "
        f"'{OFFICIAL_PREFIX}') nor '{HF_TEXT}embeddings.token_embedding.weight' (Hugging Face layout) is present",
        "pass the full sam3.pt / model.safetensors, or a file holding only the text encoder in one of these layouts",
    )


def hf_to_official(state: dict[str, torch.Tensor], notes: list[str]) -> dict[str, torch.Tensor]:
    """Map the Hugging Face layout (prefix already removed) onto the official keys; q,k,v are re-packed."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    unknown = []
    block = re.compile(re.escape(HF_TEXT) + r"encoder\.layers\.(\d+)\.(.+)")
    for key, value in state.items():
        if m := block.fullmatch(key):
            i, rest = int(m.group(1)), m.group(2)
            if q := re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest):
                qkv.setdefault(i, {})[q.group(1) + q.group(2)] = value
            elif rest in _HF_BLOCK:
                out[f"encoder.transformer.resblocks.{i}.{_HF_BLOCK[rest]}"] = value
            else:
                unknown.append(key)
        elif key == HF_TEXT + "embeddings.token_embedding.weight":
            out["encoder.token_embedding.weight"] = value
        elif key == HF_TEXT + "embeddings.position_embedding.weight":
            out["encoder.positional_embedding"] = value
        elif key == HF_TEXT + "embeddings.position_ids":
            continue  # a derived buffer some transformers versions save
        elif key.startswith(HF_TEXT + "final_layer_norm."):
            out["encoder.ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_encoder.text_projection.weight":
            # a Linear stores [out, in]; the official table is [in, out]
            out["encoder.text_projection"] = value.T
        elif key in ("text_projection.weight", "text_projection.bias"):
            out["resizer." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("text_encoder.") or key.startswith("text_projection."):
            unknown.append(key)
        # anything else belongs to other parts of SAM3 (vision, fusion, heads)
    for i, parts in sorted(qkv.items()):
        for kind in ("weight", "bias"):
            pieces = [parts[c + kind] for c in "qkv" if c + kind in parts]
            if len(pieces) < 3:
                unknown.append(f"{HF_TEXT}encoder.layers.{i}.self_attn.(q|k|v)_proj.{kind} (incomplete)")
                continue
            out[f"encoder.transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(pieces, 0)
    if unknown:
        out.update({f"<hf>{k}": state.get(k, torch.empty(0)) for k in unknown})  # surfaces as 'unexpected'
    notes.append("mapped Hugging Face layout to the official layout (q,k,v packed in that order)")
    return out


def config_from_state(state: dict[str, torch.Tensor]) -> Sam3Config:
    """Architecture sizes read from official-layout tensors (heads follow from the width)."""
    try:
        vocab, width = state["encoder.token_embedding.weight"].shape
        context = state["encoder.positional_embedding"].shape[0]
        depth = 1 + max(
            int(m.group(1)) for k in state if (m := re.match(r"encoder\.transformer\.resblocks\.(\d+)\.", k))
        )
        mlp_width = state["encoder.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        projection = state["encoder.text_projection"].shape[1]
        output = state["resizer.weight"].shape[0]
    except (KeyError, ValueError) as error:
        raise CheckpointError(
            f"SAM3 text encoder incomplete: cannot read its sizes ({error!s} missing)"
        ) from None
    if width % HEAD_DIM:
        raise CheckpointError(f"SAM3 width {width} is not a multiple of the head size {HEAD_DIM}")
    return Sam3Config(vocab, context, width, depth, mlp_width, projection, output)


def load_sam3_module(path: str | Path) -> tuple[Sam3Text, list[str]]:
    """The teacher module from an official or Hugging Face checkpoint (strict); returns it and the notes."""
    state, notes = read_state_dict(path)
    layout, prefix = detect_layout(state)
    notes.append(f"detected the {'official sam3.pt' if layout == 'official' else 'Hugging Face'} layout")
    state = take_prefix(state, prefix, notes)
    if layout == "hf":
        state = hf_to_official(state, notes)
    with torch.device("meta"):  # no random init of weights that are about to be replaced
        module = Sam3Text(config_from_state(state))
    report = load_strict(module, state, source=path, notes=notes)
    return module, report.notes


def official_state_dict(module: Sam3Text, prefix: str = OFFICIAL_PREFIX) -> dict[str, torch.Tensor]:
    """The module's weights in the official sam3.pt layout (used by tests and exports)."""
    return {prefix + k: v for k, v in module.state_dict().items()}


def hf_state_dict(module: Sam3Text, prefix: str = "") -> dict[str, torch.Tensor]:
    """The module's weights in the Hugging Face transformers layout (q,k,v split)."""
    inverse = {v: k for k, v in _HF_BLOCK.items()}
    out = {}
    for key, value in module.state_dict().items():
        if m := re.fullmatch(r"encoder\.transformer\.resblocks\.(\d+)\.(.+)", key):
            i, rest = m.groups()
            base = f"{HF_TEXT}encoder.layers.{i}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                for c, piece in zip("qkv", value.chunk(3, 0), strict=True):
                    out[f"{base}self_attn.{c}_proj.{kind}"] = piece
            else:
                out[base + inverse[rest]] = value
        elif key == "encoder.token_embedding.weight":
            out[HF_TEXT + "embeddings.token_embedding.weight"] = value
        elif key == "encoder.positional_embedding":
            out[HF_TEXT + "embeddings.position_embedding.weight"] = value
        elif key.startswith("encoder.ln_final."):
            out[HF_TEXT + "final_layer_norm." + key.rsplit(".", 1)[1]] = value
        elif key == "encoder.text_projection":
            out["text_encoder.text_projection.weight"] = value.T
        elif key.startswith("resizer."):
            out["text_projection." + key.rsplit(".", 1)[1]] = value
    return {prefix + k: v for k, v in out.items()}
