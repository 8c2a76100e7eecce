"""`anatomy distill --init SPEC`: start a student from a pretrained text tower instead of random weights.

The study's code trains students "from scratch or from pretrained MobileCLIP". The source is any trained
encoder spec whose body maps onto the student's LiteText layout:

- LiteText bodies (`litetext-s0|s1|l:PATH`) and earlier students (`student:PATH`): same key layout;
- open_clip CLIP-style text towers (`open_clip:MODEL:TAG`, `open_clip:hf-hub:ORG/NAME`, local weights):
  mapped with the export mapping (anatomy.distill.export), for all-attention students (S1, L, custom).

Shapes are matched strictly (every student tensor except the projector must come from the source, with
its exact shape); the positional table is resized bilinearly (as the LiteText loader does) to the student's
context, with a note; the projector to the teacher's output width stays as initialised (new).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from anatomy.errors import CheckpointError, EncoderError

log = logging.getLogger(__name__)

POS_KEY = "encoder.positional_embedding.pos_embed.pos_embed"
NEW_PREFIXES = ("projector.",)  # the projection to the teacher's width is always new
UNUSED = ("encoder.projection_layer",)  # LiteText's unused projection matrix: copied when shapes agree


def _open_clip_to_litetext(state: dict) -> dict:
    """open_clip TextTransformer keys (under `tower.`) -> LiteText keys (inverse of the export mapping)."""
    from anatomy.distill.export import _LAYER_KEYS, _TOP_KEYS

    top = {v: k for k, v in _TOP_KEYS.items() if not k.startswith("projector")}
    layer = {v: k for k, v in _LAYER_KEYS.items()}
    out = {}
    for key, value in state.items():
        key = key.removeprefix("tower.")
        if key in top:
            out[top[key]] = value
        elif key == "positional_embedding":
            out[POS_KEY] = value.reshape(1, 1, *value.shape)
        elif key.startswith("transformer.resblocks."):
            index, _, rest = key.removeprefix("transformer.resblocks.").partition(".")
            if rest not in layer:
                raise EncoderError(f"open_clip key '{key}' has no LiteText counterpart")
            out[f"encoder.transformer.{index}.{layer[rest]}"] = value
        elif key in ("text_projection", "text_projection.weight", "text_projection.bias", "attn_mask"):
            continue  # the source's own projection: the student's projector is new
        else:
            raise EncoderError(f"open_clip key '{key}' has no LiteText counterpart")
    return out


def source_state(encoder) -> tuple[dict, list[str]]:
    """The source encoder's weights in the LiteText key layout, and notes on what was adapted."""
    state = encoder.module.state_dict()
    if "encoder.embedding_layer.weight" in state:  # LiteText bodies and anatomy students
        return state, []
    if any(k.startswith("tower.transformer.resblocks.") for k in state):
        notes = ["mapped open_clip TextTransformer weights onto the LiteText layout (its projection dropped)"]
        if getattr(encoder, "causal", False):
            notes.append("the source attended causally; the student attends bidirectionally")
        return _open_clip_to_litetext(state), notes
    raise EncoderError(
        f"{encoder.name}: --init takes LiteText bodies, anatomy students and open_clip CLIP-style text towers",
        "give litetext-s0|s1|l:PATH, student:PATH or open_clip:MODEL:TAG",
    )


def resize_positions(table, length: int):
    """[1, 1, T, D] -> [1, 1, length, D], bilinear over (T, D) as the LiteText loader resizes."""
    import torch.nn.functional as F

    size = (length, table.shape[3])
    return F.interpolate(table.float(), size=size, mode="bilinear", align_corners=False).to(table.dtype)


@dataclass
class InitPlan:
    """The source's tensors, checked against the student's shapes and ready to copy, and the notes to record."""

    spec: str
    tensors: dict
    notes: list[str]


def plan_init(spec: str, target: dict[str, tuple[int, ...]], context: int) -> InitPlan:
    """Load the tower `spec` and check it against the student's state-dict shapes `target` (strict shapes,
    the positional table resized); run before the teacher cache, so a wrong source costs no teacher work."""
    from types import SimpleNamespace

    from anatomy.encoders.registry import load, parse_spec, require_trained

    if not parse_spec(spec).trained:  # said before building a random tower for nothing
        require_trained(SimpleNamespace(trained=False, name=spec), "--init")
    encoder = load(spec, device="cpu")
    require_trained(encoder, "--init")
    state, notes = source_state(encoder)
    copied, mismatched = {}, []
    for key, value in state.items():
        if key.startswith(NEW_PREFIXES):
            continue
        if key not in target:
            raise CheckpointError(
                f"--init {spec}: its tensor '{key}' has no place in the student",
                "the student's architecture must match the source's body (layers, block types)",
            )
        if key == POS_KEY and value.shape[2] != target[key][2]:
            notes.append(f"positional table resized from {value.shape[2]} to the student's context {context}")
            value = resize_positions(value, target[key][2])
        if tuple(value.shape) != tuple(target[key]):
            mismatched.append(f"{key}: {tuple(value.shape)} vs student {tuple(target[key])}")
            continue
        copied[key] = value.detach()
    if mismatched:
        raise CheckpointError(
            f"--init {spec}: shapes differ from the student's: " + "; ".join(mismatched[:4]),
            "choose a student of the source's width, heads, layers and vocabulary",
        )
    missing = [k for k in target if k not in copied and not k.startswith(NEW_PREFIXES) and k not in UNUSED]
    if missing:
        raise CheckpointError(
            f"--init {spec}: the source has no weights for {len(missing)} student tensors ({', '.join(missing[:4])})",
            "the student's architecture must match the source's body",
        )
    return InitPlan(spec, copied, notes)


def apply_init(plan: InitPlan, student_module) -> list[str]:
    """Copy a checked plan into the student; returns the notes to record."""
    import torch

    target = student_module.state_dict()
    with torch.no_grad():
        for key, value in plan.tensors.items():
            if tuple(target[key].shape) != tuple(value.shape):  # the plan was made for another student
                raise CheckpointError(f"--init {plan.spec}: '{key}' does not fit this student")
            target[key].copy_(value)
    out_dim = target["projector.weight"].shape[0] if "projector.weight" in target else None
    notes = [
        *plan.notes,
        f"started from {plan.spec}: {len(plan.tensors)} tensors copied; the projector to width {out_dim} is new",
    ]
    for note in notes:
        log.info("%s", note)
    return notes


def initialise_from(spec: str, student_module, context: int) -> list[str]:
    """Copy the pretrained tower `spec` into `student_module` (strict shapes); returns the notes to record."""
    shapes = {k: tuple(v.shape) for k, v in student_module.state_dict().items()}
    return apply_init(plan_init(spec, shapes, context), student_module)
