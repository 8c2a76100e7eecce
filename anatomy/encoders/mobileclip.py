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

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from anatomy.encoders.litetext_modules import (  # noqa: F401  (re-exported: the shapes live beside the modules)
    CLIP_VOCAB,
    KINDS,
    OUTPUT_DIM,
    TowerShape,
    tower_shape,
)
from anatomy.errors import CheckpointError
from anatomy.paper import STUDENT_CONTEXT  # the students' context (the study quotes parameter totals at it)

if TYPE_CHECKING:
    import torch

    from anatomy.encoders.base import ModuleEncoder

log = logging.getLogger(__name__)

LITETEXT_PREFIX = "detector.backbone.language_backbone."


def build_tower(
    shape: TowerShape, context_length: int = STUDENT_CONTEXT, table_length: int | None = None
) -> torch.nn.Module:
    """A LiteText-layout text tower of any shape (the custom students use this too)."""
    from anatomy.encoders.litetext_modules import student_class

    return student_class()(shape, context_length, table_length)


def empty_tower(shape: TowerShape, context_length: int, table_length: int | None = None) -> torch.nn.Module:
    """A tower with uninitialised storage, for loading: skips the random init that strict loading overwrites."""
    import torch

    with torch.device("meta"):
        module = build_tower(shape, context_length, table_length)
    return module.to_empty(device="cpu")


def build_litetext(
    kind: str, context_length: int = STUDENT_CONTEXT, table_length: int | None = None
) -> torch.nn.Module:
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


def load_litetext_module(kind: str, path: str | Path, context_length: int = STUDENT_CONTEXT):
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
    context_length: int = STUDENT_CONTEXT,
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


def describe(
    kinds: Sequence[str] = tuple(KINDS), context_length: int = STUDENT_CONTEXT, vocab_size: int | None = None
) -> list[dict]:
    """Name, parameter total and breakdown of each student architecture (shapes only, on the meta device);
    with `vocab_size`, of the body whose token-embedding table has that many rows (a specialised student)."""
    import dataclasses

    import torch

    from anatomy.encoders.base import text_module

    rows = []
    for kind in kinds:
        shape = tower_shape(kind)
        if vocab_size is not None:
            shape = dataclasses.replace(shape, vocab_size=vocab_size)
        with torch.device("meta"):
            breakdown = text_module(build_tower(shape, context_length)).parameter_breakdown()
        rows.append(
            {"name": f"litetext-{kind}", "parameters": sum(breakdown.values()), "components": breakdown}
        )
    return rows


# ------------------------------------------------------------------------------ the litetext-KIND families


def _warm_up() -> None:
    build_litetext("s0", 16)  # the LiteText blocks, built once


def _litetext_family(kind: str):
    from anatomy.encoders.family import Family, LoadRequest, Spec, require_path

    def parse(prefix: str, rest: str | None) -> Spec:
        return Spec("litetext", path=rest, kind=kind)

    def load(spec: Spec, request: LoadRequest):
        from anatomy.encoders.base import ModuleEncoder
        from anatomy.tokenizer import clip_tokenizer

        context = request.context_length or STUDENT_CONTEXT
        if spec.path is not None:
            path = require_path(request.name, spec.path)
            encoder = load_litetext(kind, path, context, device=request.device, dtype=request.dtype)
            encoder.name = request.name
            return encoder
        module = build_litetext(kind, context)
        return ModuleEncoder(
            module,
            clip_tokenizer(),
            name=request.name,
            context_length=context,
            output_dim=tower_shape(kind).output_dim,  # the shape build_litetext built the module with
            causal=False,
            trained=False,
            device=request.device,
            dtype=request.dtype,
        )

    def tokenizer(spec: Spec):
        from anatomy.tokenizer import clip_tokenizer

        return clip_tokenizer()  # the LiteText students share the teacher's CLIP BPE

    def architecture(context_length: int):
        return build_litetext(kind, context_length), context_length

    return Family(
        "litetext",
        "litetext-s0|s1|l:PATH",
        load=load,
        parse=parse,
        tokenizer=tokenizer,
        architecture=architecture,
        warm_up=_warm_up,
    )


FAMILIES = {f"litetext-{kind}": _litetext_family(kind) for kind in KINDS}
