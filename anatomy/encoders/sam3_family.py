"""The `sam3` encoder family: the SAM3 teacher from a checkpoint (sam3:PATH) or untrained (bare `sam3`).

Kept apart from anatomy.encoders.sam3 (the torch module) so registering the family imports no torch.
"""

from __future__ import annotations

from anatomy.encoders.family import ContextError, Family, LoadRequest, Spec, require_path


def _parse(prefix: str, rest: str | None) -> Spec:
    return Spec("sam3", path=rest)


def _load(spec: Spec, request: LoadRequest):
    from anatomy.encoders.base import ModuleEncoder
    from anatomy.encoders.sam3 import Sam3Config, Sam3Text, load_sam3_module
    from anatomy.tokenizer import clip_tokenizer

    notes: list[str] = []
    if spec.path is None:
        module = Sam3Text(Sam3Config())
    else:
        module, notes = load_sam3_module(require_path(request.name, spec.path))
    table = module.cfg.context_length
    context = request.context_length or table
    if context > table:
        raise ContextError(
            f"{request.name}: context {context} exceeds the teacher's {table} learned positions",
            table,
            f"use --context {table} or less (the teacher is causal: a shorter context is its first positions)",
        )
    encoder = ModuleEncoder(
        module,
        clip_tokenizer(),
        name=request.name,
        context_length=context,
        output_dim=module.cfg.output_dim,
        causal=True,
        trained=spec.path is not None,
        device=request.device,
        dtype=request.dtype,
    )
    encoder.load_notes = notes
    return encoder


def _tokenizer(spec: Spec):
    from anatomy.tokenizer import clip_tokenizer

    return clip_tokenizer()


def _architecture(context_length: int):
    from anatomy.encoders.sam3 import Sam3Config, Sam3Text

    cfg = Sam3Config()
    return Sam3Text(cfg), cfg.context_length  # the teacher is always described at its own context


def _warm_up() -> None:
    _architecture(32)  # the teacher's module classes, built once


FAMILY = Family(
    "sam3",
    "sam3:PATH",
    load=_load,
    parse=_parse,
    tokenizer=_tokenizer,
    architecture=_architecture,
    warm_up=_warm_up,
)
FAMILIES = {"sam3": FAMILY}
