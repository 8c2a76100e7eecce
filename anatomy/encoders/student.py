"""The `student:PATH` checkpoint format written by `anatomy distill` and loadable as an encoder.

A student is a directory:

    PATH/model.safetensors   the module's state_dict (the LiteText key layout, no prefix)
    PATH/config.json         {"format": "anatomy-student", "format_version": 1, "architecture": ...,
                              "layers", "width", "heads", "context_length", "vocab_size", "output_dim",
                              "mlp_ratio", "tokenizer", ["vocab",] "provenance": {...}}
    PATH/vocab.json          only for a specialised student (`anatomy distill --vocab DIR`): its vocabulary

`architecture` is "litetext-s0" | "litetext-s1" | "litetext-l" (the LiteText bodies; layers/width/heads are
implied and checked) or "custom" (a plain stack of S1-style transformer layers of the given layers/width/
heads). `tokenizer` is "clip" (CLIP BPE) or the encoder spec whose tokenizer the student shares, e.g. the
teacher's ("minilm", "hf:DIR"); vocab_size and output_dim follow that teacher. Like the LiteText students, a
student attends to padding, so it is bidirectional and not length-bucketed.

A specialised student's embedding table holds only the kept tokens of a vocabulary (anatomy.vocab): config
"vocab" is its specialised tokenizer's fingerprint, vocab_size its kept size, and PATH/vocab.json the
vocabulary itself, so the directory tokenizes correctly wherever it is copied (load_student checks that
the file is consistent and is the one the student was trained with).

    cfg = StudentConfig("custom", layers=4, width=256, heads=4, tokenizer="minilm", vocab_size=30522, output_dim=384)
    module = build_student(cfg)                      # random init
    save_student(module, cfg, "runs/s", provenance={"teacher": "minilm", ...})
    encoder = load_student("runs/s")                 # ModuleEncoder, strict load
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anatomy.encoders import mobileclip
from anatomy.errors import CheckpointError, EncoderError, InputError

if TYPE_CHECKING:
    import torch

    from anatomy.encoders.base import ModuleEncoder

log = logging.getLogger(__name__)

FORMAT = "anatomy-student"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
ARCHITECTURES = ("litetext-s0", "litetext-s1", "litetext-l", "custom")


@dataclass(frozen=True)
class StudentConfig:
    """A student's architecture and tokenizer; layers/width/heads are filled in for the LiteText bodies."""

    architecture: str = "litetext-s0"
    layers: int | None = None
    width: int | None = None
    heads: int | None = None
    context_length: int = mobileclip.STUDENT_CONTEXT
    vocab_size: int = mobileclip.CLIP_VOCAB
    output_dim: int = mobileclip.OUTPUT_DIM
    mlp_ratio: int = 4
    tokenizer: str = "clip"
    vocab: str | None = None  # a specialised student: its tokenizer's fingerprint (PATH/vocab.json)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise InputError(
                f"unknown student architecture {self.architecture!r}",
                f"use one of {', '.join(ARCHITECTURES)}",
            )
        if self.architecture == "custom":
            absent = [k for k in ("layers", "width", "heads") if getattr(self, k) is None]
            if absent:
                raise InputError(
                    f"a custom student needs {', '.join(absent)}",
                    "set layers, width and heads (e.g. 4, 256, 4)",
                )
        else:
            preset = mobileclip.tower_shape(self.architecture.removeprefix("litetext-"))
            implied = {"layers": len(preset.layout), "width": preset.width, "heads": preset.heads}
            for key, value in implied.items():
                given = getattr(self, key)
                if given is not None and given != value:
                    raise InputError(
                        f"{self.architecture} has {key}={value}, not {given}",
                        "leave layers/width/heads out for a LiteText body, or use architecture 'custom'",
                    )
                object.__setattr__(self, key, value)  # frozen: fill the implied values once, here
        for key in ("layers", "width", "heads", "context_length", "vocab_size", "output_dim", "mlp_ratio"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{key} must be a positive integer, got {value!r}")
        assert self.width is not None and self.heads is not None  # checked just above
        if self.width % self.heads:
            raise InputError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.vocab is not None and (not isinstance(self.vocab, str) or not self.vocab):
            raise InputError(f"vocab must be a tokenizer fingerprint (a string), got {self.vocab!r}")

    @property
    def shape(self) -> mobileclip.TowerShape:
        layers, width, heads = self.layers, self.width, self.heads
        assert layers is not None and width is not None and heads is not None, "__post_init__ fills them in"
        if self.architecture == "custom":
            layout = ("attn",) * layers
        else:
            layout = mobileclip.tower_shape(self.architecture.removeprefix("litetext-")).layout
        return mobileclip.TowerShape(width, heads, layout, self.vocab_size, self.output_dim, self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["vocab"] is None:  # a full-vocabulary student's config reads as it always did
            del data["vocab"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "student config") -> StudentConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CheckpointError(
                f"{source}: unknown student config keys {unknown}", f"known keys: {sorted(names)}"
            )
        try:
            return cls(**data)
        except InputError as error:
            raise CheckpointError(f"{source}: {error.message}", error.hint) from None


def build_student(cfg: StudentConfig) -> torch.nn.Module:
    """A randomly initialised student: forward(ids, valid) -> [B, L, output_dim] (pads attended)."""
    return mobileclip.build_tower(cfg.shape, cfg.context_length)


def student_dir(path: str | Path) -> Path:
    """The student directory, also when given one of its two files."""
    path = Path(path)
    return path.parent if path.name in (WEIGHTS_FILE, CONFIG_FILE) else path


def save_student(
    module: torch.nn.Module,
    cfg: StudentConfig,
    path: str | Path,
    provenance: dict[str, Any] | None = None,
    vocab_json: bytes | None = None,
) -> Path:
    """Write PATH/model.safetensors, PATH/vocab.json (a specialised student: the bytes of its vocab.json),
    then PATH/config.json (last, so a config means a complete student)."""
    import torch

    from anatomy.encoders.checkpoints import MAX_LISTED, clean_temporaries, save_state_dict
    from anatomy.io import atomic_write, write_json

    path = student_dir(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory", "a student is saved as a directory")
    for wrapper in ("module", "_orig_mod"):  # DistributedDataParallel, torch.compile: save the inner module
        inner = getattr(module, wrapper, None)
        module = inner if isinstance(inner, torch.nn.Module) else module
    state = module.state_dict()
    with torch.device("meta"):  # shapes only: refuse to write a student that would not load back
        expected = {k: tuple(v.shape) for k, v in build_student(cfg).state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in state.items()}
    if expected != actual:
        diff = sorted(set(expected.items()) ^ set(actual.items()))[:MAX_LISTED]
        raise EncoderError(
            f"{path}: the module does not match its config {cfg.architecture} (differing keys/shapes: {diff})",
            "save the module that build_student(cfg) made",
        )
    if (cfg.vocab is None) != (vocab_json is None):
        raise EncoderError(
            f"{path}: a specialised student (config vocab) is saved with its vocab.json, a full one without",
            "pass vocab_json exactly when cfg.vocab is set",
        )
    clean_temporaries(path, (WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE))  # left by a writer killed mid-save
    save_state_dict(state, path / WEIGHTS_FILE, metadata={"format": FORMAT})
    if vocab_json is None:
        (path / VOCAB_FILE).unlink(missing_ok=True)  # a stale vocabulary must not outlive its student
    elif not (path / VOCAB_FILE).exists() or (path / VOCAB_FILE).read_bytes() != vocab_json:
        with atomic_write(path / VOCAB_FILE) as handle:
            handle.write(vocab_json)
    write_json(
        path / CONFIG_FILE,
        {"format": FORMAT, "format_version": FORMAT_VERSION, **cfg.to_dict(), "provenance": provenance or {}},
    )
    return path


def read_student_config(path: str | Path) -> tuple[StudentConfig, dict[str, Any]]:
    """(config, provenance) of a student directory, validated."""
    from anatomy.io import read_json

    config_path = student_dir(path) / CONFIG_FILE
    if not config_path.exists():
        raise CheckpointError(
            f"{config_path}: not found; {student_dir(path)} is not a student checkpoint",
            "student:PATH takes the directory `anatomy distill` wrote (config.json + model.safetensors)",
        )
    data = read_json(config_path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{config_path}: not an {FORMAT} config (format={data.get('format') if isinstance(data, dict) else None!r})"
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: format_version {data.get('format_version')!r}; this version reads {FORMAT_VERSION}",
            "upgrade prompt-anatomy or re-export the student",
        )
    body = {k: v for k, v in data.items() if k not in ("format", "format_version", "provenance")}
    return StudentConfig.from_dict(body, str(config_path)), dict(data.get("provenance") or {})


def load_student(
    path: str | Path, device: str | None = None, dtype: str = "fp32", context_length: int | None = None
) -> ModuleEncoder:
    """A student directory as a TextEncoder (strict load; positions resized, with a notice, off its context)."""
    from anatomy.encoders.base import ModuleEncoder

    directory = student_dir(path)
    cfg, provenance = read_student_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.exists():
        raise CheckpointError(f"{weights}: not found (the student directory has a config but no weights)")
    from anatomy.encoders.checkpoints import read_state_dict

    state, notes = read_state_dict(weights)
    context = context_length or cfg.context_length
    module = mobileclip.empty_tower(cfg.shape, context, cfg.context_length)  # every value comes from the file
    report = mobileclip.load_weights(module, state, str(weights), notes)
    if context != cfg.context_length:
        message = (
            f"trained at context {cfg.context_length}, run at {context}: resizing its positions bilinearly; "
            "it attends to padding, so expect different outputs"
        )
        report.notes.append(message)
        log.warning("%s: %s", directory, message)
    tokenizer = student_tokenizer(directory, cfg)
    encoder = ModuleEncoder(
        module,
        tokenizer,
        name=f"student:{path}",
        context_length=context,
        output_dim=cfg.output_dim,
        causal=False,
        trained=True,
        device=device,
        dtype=dtype,
    )
    encoder.config, encoder.provenance, encoder.load_notes = cfg, provenance, report.notes
    return encoder


def student_tokenizer(directory: str | Path, cfg: StudentConfig):
    """The tokenizer a student was trained with: its config's, or the specialised one of PATH/vocab.json."""
    directory = student_dir(directory)
    if cfg.vocab is None:
        from anatomy.encoders.registry import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
        if tokenizer.vocab_size > cfg.vocab_size:
            raise CheckpointError(
                f"{directory}: tokenizer {cfg.tokenizer!r} has {tokenizer.vocab_size} ids but the student "
                f"embeds only {cfg.vocab_size}",
                "the config's tokenizer must be the one the student was trained with",
            )
        return tokenizer
    from anatomy.vocab.store import load_specialised

    path = directory / VOCAB_FILE
    if not path.exists():
        raise CheckpointError(
            f"{path}: not found; the student has a specialised vocabulary (config 'vocab') but no vocab.json",
            "copy the whole student directory (vocab.json travels with the weights)",
        )
    tokenizer = load_specialised(path)  # checked against the installed base tokenizer
    if tokenizer.fingerprint != cfg.vocab or tokenizer.vocab_size != cfg.vocab_size:
        raise CheckpointError(
            f"{path}: not the vocabulary this student was trained with (tokenizer {tokenizer.fingerprint}, "
            f"{tokenizer.vocab_size} tokens; config: {cfg.vocab}, {cfg.vocab_size} rows)",
            "restore the vocab.json saved with the student",
        )
    return tokenizer


# --------------------------------------------------------------------------------------- the student family


def _load_spec(spec, request):
    from anatomy.encoders.family import require_path

    require_path(request.name, spec.path)
    return load_student(
        spec.path, device=request.device, dtype=request.dtype, context_length=request.context_length
    )


def _tokenizer(spec):
    cfg, _ = read_student_config(spec.path)
    return student_tokenizer(spec.path, cfg)


def _family():
    from anatomy.encoders.family import Family

    return Family(
        "student",
        "student:PATH",
        load=_load_spec,
        tokenizer=_tokenizer,
        is_trained=lambda spec: True,
        warm_up=_warm_up,
    )


def _warm_up() -> None:
    from anatomy.encoders.mobileclip import build_litetext

    build_litetext("s0", 16)  # the LiteText blocks a student is built from


FAMILIES = {"student": _family()}
