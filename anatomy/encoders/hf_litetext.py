"""SAM3-LiteText text encoders in Hugging Face layout (transformers' `Sam3LiteTextTextModel`, and the text
part of `Sam3LiteTextModel`), mapped key for key onto our LiteText tower and back.

transformers is the reference implementation our bodies are tested against (tests/test_hf_parity.py); this
module needs neither it nor its import to read or write the layout:

    ours (anatomy.encoders.litetext_modules)            transformers (Sam3LiteTextTextModel)
    encoder.embedding_layer.weight                      embeddings.token_embedding.weight
    encoder.positional_embedding.pos_embed.pos_embed    embeddings.position_embedding.position_embedding
    encoder.transformer.i.pre_norm_mha.0 / ffn.0        layers.i.layer_norm1 / layer_norm2
    encoder.transformer.i.pre_norm_mha.1.qkv_proj       layers.i.self_attn.{q,k,v}_proj (split in that order)
    encoder.transformer.i.pre_norm_ffn.1 / .4           layers.i.mlp.fc1 / fc2
    encoder.transformer.i.token_mixer.norm.rbr_skip     layers.i.token_mixer.reference_batchnorm  (RepMixer)
    ... (see _REPMIXER)
    encoder.final_layer_norm                            final_layer_norm
    encoder.projection_layer [D, D] (x @ P)             projection.weight = P.T (EOT-pooled output only)
    projector (Linear D -> 256, every token)            Sam3LiteTextModel.text_projection

The same computation on the same ids with attention_mask=None (every position attended, as the original
LiteText and our tower do). Where transformers differs on purpose: `Sam3LiteTextModel.forward` passes the
processor's attention mask, which removes padding keys from the attention layers (the RepMixer convolutions
still see them), and `Sam3Processor` pads every prompt to 32 tokens, so a 16-position student runs with its
table interpolated to 32 (bilinear, align_corners=False: the same resize as ours). A student read here runs
at its file's context with padding attended, as SAM3-LiteText itself runs it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anatomy.encoders.litetext_modules import TowerShape
from anatomy.errors import CheckpointError

if TYPE_CHECKING:
    import torch

TEXT_MODEL_TYPE = "sam3_lite_text_text_model"
FULL_MODEL_TYPE = "sam3_lite_text"
MODEL_TYPES = (FULL_MODEL_TYPE, TEXT_MODEL_TYPE)
PROJECTION_FILE = "text_projection.safetensors"  # beside a text-model export: the Linear(D -> 256) SAM3 uses
TOKEN_KEY = "embeddings.token_embedding.weight"
KERNEL = 11  # RepMixer depthwise kernel of our blocks
_LAYER = {  # our transformer layer -> SiglipEncoderLayer
    "pre_norm_mha.0": "layer_norm1",
    "pre_norm_mha.1.out_proj": "self_attn.out_proj",
    "pre_norm_ffn.0": "layer_norm2",
    "pre_norm_ffn.1": "mlp.fc1",
    "pre_norm_ffn.4": "mlp.fc2",
}
_REPMIXER = {  # our RepMixer block -> Sam3LiteTextRepMixerBlock
    "token_mixer.norm.rbr_skip": "token_mixer.reference_batchnorm",
    "token_mixer.mixer.rbr_skip": "token_mixer.mixer.batchnorm_skip",
    "token_mixer.mixer.rbr_conv.0.conv": "token_mixer.mixer.conv",
    "token_mixer.mixer.rbr_conv.0.bn": "token_mixer.mixer.batchnorm_conv",
    "token_mixer.layer_scale": "token_mixer.layer_scale",
    "convffn.conv.conv": "conv_feed_forward.depthwise_conv",
    "convffn.conv.bn": "conv_feed_forward.depthwise_batchnorm",
    "convffn.fc1": "conv_feed_forward.mlp.fc1",
    "convffn.fc2": "conv_feed_forward.mlp.fc2",
    "layer_scale": "layer_scale",
}
_TOP = {
    "encoder.embedding_layer.weight": TOKEN_KEY,
    "encoder.positional_embedding.pos_embed.pos_embed": "embeddings.position_embedding.position_embedding",
    "encoder.final_layer_norm.weight": "final_layer_norm.weight",
    "encoder.final_layer_norm.bias": "final_layer_norm.bias",
}


def _rename(rest: str, table: Mapping[str, str]) -> str | None:
    """`rest` with its longest matching module prefix renamed through `table` (None when none matches)."""
    for ours in sorted(table, key=len, reverse=True):
        if rest == ours or rest.startswith(ours + "."):
            return table[ours] + rest[len(ours) :]
    return None


# ------------------------------------------------------------------------------------------------ configs


def repmixer_layout(layers: int, use_repmixer: bool) -> tuple[str, ...]:
    """transformers' layout: RepMixer blocks first and last when `use_repmixer_blocks`, attention elsewhere."""
    ends = {0, layers - 1} if use_repmixer else set()
    return tuple("repmixer" if i in ends else "attn" for i in range(layers))


def text_config(shape: TowerShape, table_length: int) -> dict[str, Any]:
    """Sam3LiteTextTextConfig fields of a tower (refused where transformers has no such layout)."""
    use_repmixer = "repmixer" in shape.layout
    if shape.layout != repmixer_layout(len(shape.layout), use_repmixer):
        raise CheckpointError(
            f"layout {shape.layout} has no Sam3LiteTextTextModel counterpart",
            "transformers places RepMixer blocks first and last, or nowhere",
        )
    return {
        "model_type": TEXT_MODEL_TYPE,
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.width,
        "intermediate_size": shape.mlp_ratio * shape.width,
        "projection_dim": shape.width,  # our [D, D] projection_layer
        "num_hidden_layers": len(shape.layout),
        "num_attention_heads": shape.heads,
        "max_position_embeddings": table_length,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "use_repmixer_blocks": use_repmixer,
        "repmixer_kernel_size": KERNEL,
    }


_FIXED = {"hidden_act": ("gelu",), "layer_norm_eps": (1e-5,), "repmixer_kernel_size": (KERNEL,)}


def shape_of(cfg: Mapping[str, Any], output_dim: int, source: str) -> tuple[TowerShape, int]:
    """(tower shape, positional table length) of a Sam3LiteTextTextConfig dict; refuses what we cannot run."""
    try:
        width, heads = int(cfg.get("hidden_size", 512)), int(cfg.get("num_attention_heads", 8))
        layers, inner = int(cfg.get("num_hidden_layers", 12)), int(cfg.get("intermediate_size", 2048))
        vocab, table = int(cfg.get("vocab_size", 49408)), int(cfg.get("max_position_embeddings", 77))
        projection = int(cfg.get("projection_dim", 512))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: text config has a non-integer size ({error})") from None
    sizes = {"hidden_size": width, "num_attention_heads": heads, "num_hidden_layers": layers,
             "intermediate_size": inner, "vocab_size": vocab, "max_position_embeddings": table,
             "projection_dim": projection}  # fmt: skip
    bad = [f"{key}={value}" for key, value in sizes.items() if value < 1]
    if bad:
        raise CheckpointError(f"{source}: text config sizes must be positive ({', '.join(bad)})")
    for key, allowed in _FIXED.items():
        if key in cfg and cfg[key] not in allowed:
            raise CheckpointError(
                f"{source}: text config {key}={cfg[key]!r}; the LiteText tower here has {allowed[0]!r}",
                "only the published LiteText settings are supported",
            )
    if inner % width or projection != width or width % heads:
        raise CheckpointError(
            f"{source}: intermediate_size {inner}, projection_dim {projection}, hidden_size {width}, heads "
            f"{heads}: the tower needs intermediate a multiple of hidden, projection_dim = hidden_size",
        )
    layout = repmixer_layout(layers, bool(cfg.get("use_repmixer_blocks", True)))
    return TowerShape(width, heads, layout, vocab, output_dim, inner // width), table


def kind_of(shape: TowerShape) -> str | None:
    """ "s0" | "s1" | "l" when the shape is a published LiteText body (full CLIP vocabulary, 256-d), else None."""
    from anatomy.encoders.litetext_modules import KINDS

    return next((kind for kind, preset in KINDS.items() if preset == shape), None)


# ----------------------------------------------------------------------------------------- state mapping


def to_hf(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Our tower's state dict -> (Sam3LiteTextTextModel state dict, {"weight", "bias"} of text_projection)."""
    text: dict[str, torch.Tensor] = {}
    projection: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _TOP:
            text[_TOP[key]] = value
        elif key == "encoder.projection_layer":
            text["projection.weight"] = value.T
        elif key.startswith("projector."):
            projection[key.removeprefix("projector.")] = value
        elif m := re.fullmatch(r"encoder\.transformer\.(\d+)\.(.+)", key):
            i, rest = m.groups()
            if q := re.fullmatch(r"pre_norm_mha\.1\.qkv_proj\.(weight|bias)", rest):
                for c, piece in zip("qkv", value.chunk(3, 0), strict=True):
                    text[f"layers.{i}.self_attn.{c}_proj.{q.group(1)}"] = piece
                continue
            mixer = rest.startswith(("token_mixer", "convffn", "layer_scale"))
            renamed = _rename(rest, _REPMIXER if mixer else _LAYER)
            if renamed is None:
                raise CheckpointError(f"tower key '{key}' has no Sam3LiteTextTextModel counterpart")
            text[f"layers.{i}.{renamed}"] = value
        else:
            raise CheckpointError(f"tower key '{key}' has no Sam3LiteTextTextModel counterpart")
    return text, projection


def from_hf(
    text: Mapping[str, torch.Tensor], projection: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Inverse of to_hf; a key we do not know is kept under '<hf>' so the strict load names it as unexpected."""
    import torch

    top = {v: k for k, v in _TOP.items()}
    inverse = {"layer": {v: k for k, v in _LAYER.items()}, "mixer": {v: k for k, v in _REPMIXER.items()}}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in text.items():
        if key in top:
            out[top[key]] = value
        elif key == "projection.weight":
            out["encoder.projection_layer"] = value.T
        elif m := re.fullmatch(r"layers\.(\d+)\.(.+)", key):
            i, rest = m.groups()
            if q := re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest):
                qkv.setdefault((i, q.group(2)), {})[q.group(1)] = value
                continue
            mixer = rest.startswith(("token_mixer", "conv_feed_forward", "layer_scale"))
            renamed = _rename(rest, inverse["mixer" if mixer else "layer"])
            out[f"encoder.transformer.{i}.{renamed}" if renamed else f"<hf>{key}"] = value
        elif key != "embeddings.position_ids":  # a derived buffer some versions save
            out[f"<hf>{key}"] = value
    for (i, kind), parts in sorted(qkv.items()):
        if set(parts) != set("qkv"):
            raise CheckpointError(
                f"{source}: layers.{i}.self_attn has {sorted(parts)} {kind}s, not q, k and v"
            )
        out[f"encoder.transformer.{i}.pre_norm_mha.1.qkv_proj.{kind}"] = torch.cat([parts[c] for c in "qkv"])
    for key, value in projection.items():
        out[f"projector.{key}"] = value
    return out


# --------------------------------------------------------------------------------------- reading a folder


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the model config ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def weight_files(directory: Path) -> dict[str, Path]:
    """key -> safetensors file of a Hugging Face folder (one model.safetensors, or a sharded index)."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{index}: unreadable shard index ({error})") from None
        return {k: directory / v for k, v in weight_map.items()}
    single = directory / "model.safetensors"
    if not single.exists():
        raise CheckpointError(
            f"{directory}: no model.safetensors (or sharded index)",
            "only safetensors weights are read; re-save the model with save_pretrained(safe_serialization=True)",
        )
    with _open(single) as handle:
        return dict.fromkeys(handle.keys(), single)


@contextlib.contextmanager
def _open(path: Path):
    """safe_open, with a missing or damaged file as one CheckpointError naming it."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            yield handle
    except CheckpointError:
        raise
    except Exception as error:  # SafetensorError (damaged header or data), OSError (a missing shard)
        raise CheckpointError(
            f"{path}: unreadable safetensors file ({type(error).__name__}: {error})",
            "the weights are missing or damaged: download or export the model again",
        ) from None


def read_tensors(files: Mapping[str, Path], keys: list[str]) -> dict[str, torch.Tensor]:
    """Only `keys`, each from its own file (a full segmenter's vision weights are never read)."""
    by_file: dict[Path, list[str]] = {}
    for key in keys:
        by_file.setdefault(files[key], []).append(key)
    out = {}
    for path, wanted in by_file.items():
        with _open(path) as handle:
            out.update({k: handle.get_tensor(k) for k in wanted})
    return out


def read_text_encoder(directory: Path) -> tuple[TowerShape, int, dict[str, torch.Tensor], list[str]]:
    """(shape, table length, our tower's state dict, notes) of a sam3_lite_text(_text_model) folder."""
    config = read_config(directory)
    model_type = config.get("model_type")
    files = weight_files(directory)
    notes = [f"read a Hugging Face {model_type} folder"]
    if model_type == TEXT_MODEL_TYPE:
        text_cfg, prefix = config, ""
        projection_path = directory / PROJECTION_FILE
        if not projection_path.exists():
            raise CheckpointError(
                f"{directory}: a Sam3LiteTextTextModel folder without {PROJECTION_FILE} (the projection SAM3 "
                "applies to every token)",
                "export with `anatomy export --format hf`, or point hf: at the full Sam3LiteTextModel folder",
            )
        names = ["text_projection.weight", "text_projection.bias"]
        projection = read_tensors(dict.fromkeys(names, projection_path), names)
    elif model_type == FULL_MODEL_TYPE:
        text_cfg = config.get("text_config") or {}
        from anatomy.encoders.checkpoints import find_prefix

        found = find_prefix(files, "text_encoder." + TOKEN_KEY)
        if found is None:
            raise CheckpointError(f"{directory}: no text_encoder.{TOKEN_KEY} in the weights")
        prefix, outer = found + "text_encoder.", found
        names = [outer + "text_projection.weight", outer + "text_projection.bias"]
        absent = [n for n in names if n not in files]
        if absent:
            raise CheckpointError(f"{directory}: the weights have no {', '.join(absent)}")
        projection = read_tensors(files, names)
        if outer:
            notes.append(f"stripped key prefix '{outer}'")
    else:
        raise CheckpointError(f"{directory}: model_type {model_type!r} is not {' or '.join(MODEL_TYPES)}")
    text = read_tensors(files, [k for k in files if k.startswith(prefix)])
    text = {k[len(prefix) :]: v for k, v in text.items()}
    projection = {k.rsplit(".", 1)[1]: v for k, v in projection.items()}
    if model_type == FULL_MODEL_TYPE:
        notes.append(f"read the text encoder and text_projection ({len(text) + 2} of {len(files)} tensors)")
    if TOKEN_KEY not in text:
        raise CheckpointError(f"{directory}: no {prefix}{TOKEN_KEY} in the weights")
    shape, table = shape_of(text_cfg, int(projection["weight"].shape[0]), str(directory / "config.json"))
    return shape, table, from_hf(text, projection, str(directory)), notes


def load_hf_litetext(
    directory: Path,
    *,
    name: str,
    device: str | None = None,
    dtype: str = "fp32",
    context_length: int | None = None,
):
    """A ModuleEncoder (our LiteText tower, CLIP tokenizer) over a Hugging Face SAM3-LiteText folder.

    Strict: every tower tensor must come from the file and nothing else may be there. The context is the
    file's positional table unless one is asked for (then the table is resized bilinearly, with a note)."""
    import logging

    import torch

    from anatomy.encoders import mobileclip
    from anatomy.encoders.base import ModuleEncoder
    from anatomy.tokenizer import clip_tokenizer

    shape, table, state, notes = read_text_encoder(directory)
    tokenizer = clip_tokenizer()
    if shape.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{directory}: vocab_size {shape.vocab_size}, but SAM3-LiteText reads CLIP BPE ids "
            f"({tokenizer.vocab_size})",
            "a specialised student is exported widened to the full table (anatomy export --format hf)",
        )
    context = context_length or table
    with torch.device("meta"):  # load_strict hands a meta module the read tensors themselves (no copy)
        module = mobileclip.build_tower(shape, context, table)
    report = mobileclip.load_weights(module, state, str(directory), notes)
    if context != table:
        message = (
            f"positional table has T={table} but the context is {context}: resizing it bilinearly "
            "(align_corners=False), as transformers and the original do"
        )
        report.notes.append(message)
        logging.getLogger(__name__).warning("%s: %s", directory, message)
    encoder = ModuleEncoder(
        module,
        tokenizer,
        name=name,
        context_length=context,
        output_dim=shape.output_dim,
        causal=False,
        trained=True,
        device=device,
        dtype=dtype,
    )
    encoder.load_notes = report.notes
    return encoder
