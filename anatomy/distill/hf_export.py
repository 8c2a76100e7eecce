"""`anatomy export --format hf`: a student as a Hugging Face SAM3-LiteText checkpoint (transformers layout).

Without a base, OUT is a `Sam3LiteTextTextModel` folder: config.json + model.safetensors (loadable with
`Sam3LiteTextTextModel.from_pretrained(OUT)`, no missing or unexpected keys), text_projection.safetensors
(the Linear D -> 256 that `Sam3LiteTextModel.text_projection` holds: SAM3 consumes every token through it)
and CLIP tokenizer files built from open_clip's bundled BPE (vocab.json, merges.txt, tokenizer_config.json),
so `CLIPTokenizer(Fast).from_pretrained(OUT)` tokenizes as SAM3 does. `hf:OUT` reads it back.

With `base` (a SAM3 or SAM3-LiteText folder or hub id in Hugging Face layout), OUT is a full
`Sam3LiteTextModel`: the base's vision, geometry, DETR and mask weights, our text encoder and projection, and
the base's image-processor / processor configs, so `Sam3LiteTextModel.from_pretrained(OUT)` segments with the
student. A specialised-vocabulary student is widened to the full CLIP table (anatomy.distill.vocab_student.full_table)
with a warning; the sidecar anatomy_export.json says so. The export is checked before it is committed: it is
read back through hf:OUT's loader and must give the student's per-token outputs to 1e-6.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from anatomy.errors import InputError

log = logging.getLogger(__name__)

SIDECAR = "anatomy_export.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
# A folder holding one of these without SIDECAR is someone's model (the --base itself): never written over.
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
ROUND_TRIP_TOL = 1e-6
PART_CONFIGS = (
    "geometry_encoder_config",
    "detr_encoder_config",
    "detr_decoder_config",
    "mask_decoder_config",
)
BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "!"  # PAD: id 0, as SAM3 pads


def write_tokenizer(out: Path, context_length: int = 32) -> None:
    """CLIP tokenizer files for transformers from open_clip's bundled BPE merges (no download).

    Padding is id 0 ("!"), as SAM3's own tokenizer pads: a LiteText student attends to padding positions.
    transformers registers every named special token (pad included) as an added token and splits text on it,
    which would turn each "!" of a prompt into id 0; `split_special_tokens` makes it tokenize special-token
    text as plain text, as open_clip's SimpleTokenizer does (a literal "<|endoftext|>" in a prompt too), so the
    ids are open_clip's for every prompt while padding stays id 0."""
    from anatomy.io import write_json, write_text
    from anatomy.tokenizer import CLIP_SPECIALS, ClipBPE

    bpe = ClipBPE()
    names = {CLIP_SPECIALS[0]: BOS, CLIP_SPECIALS[1]: EOS}  # transformers' names for the two specials
    vocab = {names.get(symbol, symbol): i for i, symbol in enumerate(bpe.symbols)}
    pairs = [pair for pair, _ in sorted(bpe.pair_rank.items(), key=lambda item: item[1])]
    lines = [f"{bpe.symbols[a]} {bpe.symbols[b]}" for a, b in pairs]
    write_json(out / "vocab.json", vocab)
    write_text(out / "merges.txt", "#version: 0.2\n" + "\n".join(lines) + "\n")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": PAD}
    write_json(out / "special_tokens_map.json", specials)
    write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": context_length,
            "split_special_tokens": True,
            **specials,
        },
    )


def _student(run_dir: Path, which: str):
    """(module, config, source, notes) of a run's student; a specialised one widened to the full table."""
    from anatomy.distill.export import checkpoint_dir
    from anatomy.encoders.student import StudentConfig, load_student

    source = checkpoint_dir(Path(str(run_dir).removeprefix("student:")), which)  # a student:DIR spec too
    encoder = load_student(source, device="cpu")
    cfg, module, notes = encoder.config, encoder.module, []
    assert isinstance(cfg, StudentConfig), "load_student sets the student's config"
    if cfg.vocab is not None:
        from anatomy.distill.vocab_student import full_table

        module, cfg, note = full_table(module, cfg, source)
        notes.append(note)
        log.warning("%s", note)
    if cfg.tokenizer != "clip":
        raise InputError(
            f"{source}: SAM3-LiteText reads CLIP BPE ids; this student uses the {cfg.tokenizer!r} tokenizer",
            "export it with --format onnx, or load it directly as student:PATH",
        )
    return module, cfg, source, notes


def _text_files(module, cfg) -> tuple[dict, dict, dict]:
    """(text config, Sam3LiteTextTextModel tensors, text_projection tensors) of a student."""
    from anatomy.encoders import hf_litetext

    text, projection = hf_litetext.to_hf(module.state_dict())
    return hf_litetext.text_config(cfg.shape, cfg.context_length), text, projection


def _base_files(base: str, text_cfg: dict, out_dim: int) -> tuple[dict, dict, list[Path], list[str]]:
    """(Sam3LiteTextConfig dict, non-text tensors, processor files, notes) of a SAM3 / SAM3-LiteText base."""
    from anatomy.encoders import hf_litetext
    from anatomy.encoders.checkpoints import find_prefix
    from anatomy.encoders.hf import resolve_dir

    directory = resolve_dir(base)
    config = hf_litetext.read_config(directory)
    kind = config.get("model_type")
    if kind not in ("sam3", "sam3_video", hf_litetext.FULL_MODEL_TYPE):
        raise InputError(
            f"--base {base}: model_type {kind!r}; the base must be a sam3 or sam3_lite_text checkpoint",
            "give a Hugging Face SAM3 or SAM3-LiteText folder or hub id",
        )
    config = config.get("detector_config") or config  # a video checkpoint: its image detector
    width = int((config.get("detr_encoder_config") or {}).get("hidden_size", 256))
    if width != out_dim:
        raise InputError(
            f"--base {base}: its detector is {width} wide, the student projects to {out_dim}",
            "distill a student whose output width is the base's DETR hidden size (256 for SAM3)",
        )
    files = hf_litetext.weight_files(directory)
    prefix = find_prefix(files, "text_encoder.embeddings.token_embedding.weight") or ""
    text_keys = (prefix + "text_encoder.", prefix + "text_projection.")
    keep = [k for k in files if k.startswith(prefix) and not k.startswith(text_keys)]
    tensors = hf_litetext.read_tensors(files, keep)
    tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    notes = [f"took {len(tensors)} vision/detector/mask tensors from {kind} base {base}"]
    if len(files) > len(keep):
        notes.append(
            f"replaced the base's text encoder and text_projection ({len(files) - len(keep)} tensors)"
        )
    full: dict[str, Any] = {
        k: dict(v) for k, v in config.items() if k.endswith("_config") and isinstance(v, dict)
    }
    for key in PART_CONFIGS:
        kind_of = str(full.get(key, {}).get("model_type", ""))
        if kind_of.startswith("sam3_") and not kind_of.startswith("sam3_lite_text_"):  # a SAM3 base's parts
            full[key]["model_type"] = "sam3_lite_text_" + kind_of.removeprefix("sam3_")
    full.update({"model_type": hf_litetext.FULL_MODEL_TYPE, "architectures": ["Sam3LiteTextModel"]})
    full["text_config"] = text_cfg
    processor = [directory / name for name in PROCESSOR_FILES if (directory / name).exists()]
    return full, tensors, processor, notes


def export_hf(run_dir: str | Path, out: str | Path, which: str = "best", base: str | None = None) -> dict:
    """Write the student of `run_dir` to the folder `out` (see the module docstring); returns a summary."""
    from anatomy.encoders.checkpoints import save_state_dict
    from anatomy.io import write_json

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", "the hf format is a directory")
    theirs = [name for name in MODEL_FILES if (out / name).exists()]
    if theirs and not (out / SIDECAR).exists():  # the --base folder itself, or a model someone saved there
        raise InputError(
            f"{out} holds {', '.join(theirs)} not written by anatomy export (no {SIDECAR})",
            "give a new or empty folder for the export",
        )
    module, cfg, source, notes = _student(Path(run_dir), which)
    text_cfg, text, projection = _text_files(module, cfg)
    stage = out.resolve().with_name(f".{out.resolve().name}.partial")  # `--out .` too
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:  # a failure (a wrong --base, a failed round trip) leaves neither OUT nor the staging folder
        if base is None:
            write_json(stage / "config.json", {**text_cfg, "architectures": ["Sam3LiteTextTextModel"]})
            save_state_dict(text, stage / "model.safetensors", metadata={"format": "pt"})
            from anatomy.encoders.hf_litetext import PROJECTION_FILE

            tensors = {f"text_projection.{k}": v for k, v in projection.items()}
            save_state_dict(tensors, stage / PROJECTION_FILE, metadata={"format": "pt"})
            kind, n_keys = "Sam3LiteTextTextModel", len(text) + len(projection)
        else:
            config, tensors, processor, base_notes = _base_files(base, text_cfg, cfg.output_dim)
            tensors.update({f"text_encoder.{k}": v for k, v in text.items()})
            tensors.update({f"text_projection.{k}": v for k, v in projection.items()})
            write_json(stage / "config.json", config)
            save_state_dict(tensors, stage / "model.safetensors", metadata={"format": "pt"})
            for path in processor:
                shutil.copyfile(path, stage / path.name)
            notes += base_notes
            kind, n_keys = "Sam3LiteTextModel", len(tensors)
        write_tokenizer(stage, cfg.context_length)
        check = round_trip(module, stage)
        summary: dict[str, Any] = {
            "format": "hf",
            "source": str(source),
            "out": str(out),
            "keys": n_keys,
            "model": kind,
            "base": base,
            "student": cfg.to_dict(),
            "widened_vocabulary": any("specialised student" in note for note in notes),
            "round_trip_max_abs_diff": check,
            "load_as": f"hf:{out}",
        }
        if notes:
            summary["notes"] = notes
        write_json(stage / SIDECAR, summary)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _commit(stage, out)
    return summary


def round_trip(module, folder: Path) -> float:
    """Max |diff| of per-token outputs between the student and hf:FOLDER on fixed prompts (refused > 1e-6)."""
    import torch

    from anatomy.distill.onnx_export import held_out_prompts
    from anatomy.encoders.hf_litetext import load_hf_litetext
    from anatomy.errors import EncoderError

    encoder = load_hf_litetext(folder, name=f"hf:{folder}", device="cpu")
    ids, valid = encoder.tokenize(held_out_prompts(32))
    with torch.inference_mode():
        ours = module.eval().to("cpu", torch.float32)(torch.as_tensor(ids), torch.as_tensor(valid))
    diff = float((encoder.encode_ids(ids, valid).tokens - ours.float()).abs().max())
    if diff > ROUND_TRIP_TOL:
        raise EncoderError(f"{folder}: the export gives outputs {diff:.2e} away from the student's")
    return diff


def _commit(stage: Path, out: Path) -> None:
    """Move the staged files into OUT (each file replaced atomically), dropping a projection file that a
    text-model export left where a full model is written now."""
    import os

    from anatomy.encoders.hf_litetext import FULL_MODEL_TYPE, PROJECTION_FILE

    out.mkdir(parents=True, exist_ok=True)
    full = json.loads((stage / "config.json").read_text()).get("model_type") == FULL_MODEL_TYPE
    for path in sorted(stage.iterdir()):
        os.replace(path, out / path.name)
    stage.rmdir()
    if full:
        (out / PROJECTION_FILE).unlink(missing_ok=True)
