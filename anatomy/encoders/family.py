"""What an encoder family is, and the registry of them: spec prefix -> Family.

A family is one unit: how its specs parse, how it loads, its tokenizer, the files that identify its weights
(the embeddings cache key) and whether a spec names trained weights. Each family is defined beside its loader
(anatomy.encoders.hf, .openclip, .mobileclip, .student, .sam3_family) and registered in FAMILIES by
anatomy/encoders/__init__.py; the dispatcher (anatomy.encoders.registry) only looks families up here, so a
new family is one module plus one registration, and tests may register their own:

    FAMILIES["toy"] = Family("toy", "toy:PATH", load=load_toy)
    encoder = registry.load("toy:some/file")

This module imports no family and no heavy library (a leaf: every family module may import it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.errors import EncoderError


@dataclass(frozen=True)
class Spec:
    """A parsed encoder spec: its family's name, a path (checkpoint / directory) and a kind (model name)."""

    family: str
    path: str | None = None  # checkpoint file / model directory / weights tag (None for bare architectures)
    kind: str | None = None  # litetext kind (s0, s1, l) or open_clip model name
    prefix: str | None = field(default=None, compare=False, repr=False)  # the FAMILIES key it was parsed by

    @property
    def trained(self) -> bool:
        return family_of(self).is_trained(self)


@dataclass(frozen=True)
class LoadRequest:
    """How the caller wants the encoder: its display name (the spec as given), device, dtype, context."""

    name: str
    device: str | None = None
    dtype: str = "fp32"
    context_length: int | None = None


def _path_fingerprint(spec: Spec) -> Path | None:
    return Path(spec.path) if spec.path is not None else None


def _has_path(spec: Spec) -> bool:
    return spec.path is not None


@dataclass(frozen=True)
class Family:
    """One encoder family. Only `name`, `grammar` and `load` are required.

    parse(prefix, rest) -> Spec      rest is the text after 'PREFIX:' (None for the bare name, which is refused
                                     unless the family allows it); default: Spec(name, path=rest), no bare name
    load(spec, request) -> TextEncoder
    tokenizer(spec) -> Tokenizer     default: load the encoder on CPU and take its tokenizer
    fingerprint(spec) -> Path | None the file or directory whose bytes identify the weights (hashed by embed)
    is_trained(spec) -> bool         default: a path was given (bare names are untrained architectures)
    architecture(context) -> (module, context) | None
                                     a bare module on the current torch device, for `anatomy encoders`
    warm_up() -> None                import the family's libraries and build its module classes once, on the
                                     current torch device (cost runs it on the meta device, so a model's
                                     measured memory is what its weights and module add)
    """

    name: str
    grammar: str
    load: Callable[[Spec, LoadRequest], Any]
    parse: Callable[[str, str | None], Spec] | None = None
    tokenizer: Callable[[Spec], Any] | None = None
    fingerprint: Callable[[Spec], Path | None] = _path_fingerprint
    is_trained: Callable[[Spec], bool] = _has_path
    architecture: Callable[[int], tuple[Any, int]] | None = None
    warm_up: Callable[[], None] | None = None

    def parse_spec(self, prefix: str, rest: str | None) -> Spec:
        if self.parse is not None:
            spec = self.parse(prefix, rest)
        elif rest is None:
            raise EncoderError(f"encoder '{prefix}' needs a path: {self.grammar}", spec_help())
        else:
            spec = Spec(self.name, path=rest)
        return spec if spec.prefix == prefix else Spec(spec.family, spec.path, spec.kind, prefix)


# spec prefix (the text before the first ':' or the whole bare name) -> Family
FAMILIES: dict[str, Family] = {}


def register(prefix: str, family: Family) -> Family:
    FAMILIES[prefix] = family
    return family


def family_of(spec: Spec) -> Family:
    """The family that parsed `spec` (by its prefix, else the first family of that name)."""
    if spec.prefix in FAMILIES:
        return FAMILIES[spec.prefix]
    for family in FAMILIES.values():
        if family.name == spec.family:
            return family
    raise EncoderError(f"no registered encoder family '{spec.family}'", spec_help())


def spec_help() -> str:
    grammars = list(dict.fromkeys(f.grammar for f in FAMILIES.values()))
    bare = [prefix for prefix, f in FAMILIES.items() if f.architecture is not None]
    return (
        "use " + ", ".join(grammars) + (f", or a bare architecture name ({', '.join(bare)})" if bare else "")
    )


def require_path(spec_text: str, path: str | Path) -> Path:
    """A local path named by a spec, refused in one line when it does not exist or is not a regular file or
    folder (a FIFO or device would block the loader: anatomy.io.check_path)."""
    from anatomy.errors import InputError
    from anatomy.io import check_path

    if not Path(path).exists():
        raise EncoderError(f"{spec_text}: {path} does not exist", "check the path after the ':'")
    try:
        return check_path(path, "any")
    except InputError as error:
        raise EncoderError(f"{spec_text}: {error.message}", error.hint) from None


class ContextError(EncoderError):
    """A context longer than the encoder's positional table; `limit` is the longest it takes."""

    def __init__(self, message: str, limit: int, hint: str | None = None):
        super().__init__(message, hint)
        self.limit = limit
