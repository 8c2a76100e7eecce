"""`anatomy export`: a trained student in the layouts other tools load.

- litetext: the SAM3-LiteText checkpoint layout (keys under detector.backbone.language_backbone., wrapped
  in {"model": ...} for .pt files), so a LiteText body trained for SAM3 drops into SAM3-LiteText. Only the
  three LiteText bodies with the CLIP tokenizer and 256-d output qualify: that is what SAM3 consumes.
- open_clip: an open_clip-style local directory (open_clip_config.json + open_clip_model.safetensors with
  the text tower under `text.`, as a CustomTextCLIP). The student maps onto open_clip's TextTransformer with
  no causal mask, pool_type "none" and a biased linear text_projection applied to every token, which is
  exactly the student's per-token projector. S0's RepMixer blocks have no open_clip counterpart.
- onnx / int8: an ONNX graph (dynamic batch, fixed context; per-token and pooled outputs) of any student body,
  or of any encoder spec (the teacher architecture included), with a sidecar JSON (anatomy.distill.onnx_export).

A specialised student (`anatomy distill --vocab`) is exported in the litetext and open_clip layouts with the full table of its base
tokenizer (anatomy.distill.vocab_student.full_table: kept rows at their original ids, the others the mean kept row),
because both layouts are read with the full tokenizer's ids; the summary's notes say what that changes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from anatomy.errors import EncoderError, InputError
from anatomy.io import atomic_paths, dumps_json

log = logging.getLogger(__name__)

# A format writer: (RUN_DIR or encoder spec, out path, which checkpoint) -> summary. FORMATS, at the end of
# this module, maps each format name to its writer; a format in its own module is one `_lazy` line there.
Writer = Callable[[str | Path, Path, str], dict]
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"

# LiteText transformer-layer names -> open_clip ResidualAttentionBlock names
_LAYER_KEYS = {
    "pre_norm_mha.0.weight": "ln_1.weight",
    "pre_norm_mha.0.bias": "ln_1.bias",
    "pre_norm_mha.1.qkv_proj.weight": "attn.in_proj_weight",
    "pre_norm_mha.1.qkv_proj.bias": "attn.in_proj_bias",
    "pre_norm_mha.1.out_proj.weight": "attn.out_proj.weight",
    "pre_norm_mha.1.out_proj.bias": "attn.out_proj.bias",
    "pre_norm_ffn.0.weight": "ln_2.weight",
    "pre_norm_ffn.0.bias": "ln_2.bias",
    "pre_norm_ffn.1.weight": "mlp.c_fc.weight",
    "pre_norm_ffn.1.bias": "mlp.c_fc.bias",
    "pre_norm_ffn.4.weight": "mlp.c_proj.weight",
    "pre_norm_ffn.4.bias": "mlp.c_proj.bias",
}
_TOP_KEYS = {
    "encoder.embedding_layer.weight": "token_embedding.weight",
    "encoder.final_layer_norm.weight": "ln_final.weight",
    "encoder.final_layer_norm.bias": "ln_final.bias",
    "projector.weight": "text_projection.weight",
    "projector.bias": "text_projection.bias",
}
_POS_KEY = "encoder.positional_embedding.pos_embed.pos_embed"


def checkpoint_dir(run_dir: str | Path, which: str = "best") -> Path:
    """RUN_DIR/checkpoints/{best,latest}; a student directory itself is accepted too."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists() and (run_dir / "model.safetensors").exists():
        return run_dir
    if not run_dir.exists():
        raise InputError(f"{run_dir}: no such directory",
                         "give a RUN_DIR written by `anatomy distill` (or a student directory)")  # fmt: skip
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: a file, not a run directory",
                         "give a RUN_DIR written by `anatomy distill` (or a student directory)")  # fmt: skip
    path = run_dir / "checkpoints" / which
    if not (path / "config.json").exists():
        raise InputError(
            f"{run_dir}: no '{which}' student checkpoint ({path} is missing)",
            "give a RUN_DIR written by `anatomy distill` (or a student directory)",
        )
    return path


def export(run_dir: str | Path, fmt: str, out: str | Path, which: str = "best") -> dict:
    """Write the student of `run_dir` to `out` in `fmt`; returns a summary (what, where, how to load)."""
    from anatomy.distill.onnx_export import disk_errors

    if fmt not in FORMATS:
        raise InputError(f"unknown export format '{fmt}'", f"use one of {', '.join(FORMATS)}")
    with disk_errors(Path(out)):
        return FORMATS[fmt](run_dir, Path(out), which)


def _lazy(module: str, function: str) -> Writer:
    """A writer imported only when its format is asked for."""

    def writer(run_dir: str | Path, out: Path, which: str) -> dict:
        return getattr(importlib.import_module(module), function)(run_dir, out, which)

    return writer


def _student_layout(fmt: str) -> Writer:
    return lambda run_dir, out, which: _student_export(run_dir, fmt, out, which)


def _onnx_format(fmt: str) -> Writer:
    return lambda run_dir, out, which: _onnx(run_dir, fmt, out, which)


def _student_export(run_dir: str | Path, fmt: str, out: Path, which: str) -> dict:
    from anatomy.encoders.student import StudentConfig, load_student

    source = checkpoint_dir(run_dir, which)
    encoder = load_student(source, device="cpu")
    cfg, module = encoder.config, encoder.module
    assert isinstance(cfg, StudentConfig), "load_student sets the student's config"
    notes = []
    if cfg.vocab is not None:  # a specialised student: both layouts take the full tokenizer's ids
        from anatomy.distill.vocab_student import full_table

        module, cfg, note = full_table(module, cfg, source)
        notes.append(note)
    if fmt == "litetext":
        summary = _litetext(module, cfg, source, Path(out))
    else:
        summary = _open_clip(module, cfg, source, Path(out))
    for note in notes:
        log.warning("%s", note)
    return {**summary, "notes": notes} if notes else summary


def _other_formats(cfg, refused: str) -> str:
    """The formats that take this student, other than the one that refused it (for the refusal's hint): the
    LiteText layout takes s0/s1/l with the CLIP tokenizer and 256-d output, open_clip any non-S0 student with the
    CLIP tokenizer, ONNX (and int8) every student."""
    takes = {
        "litetext": cfg.architecture.startswith("litetext-")
        and cfg.tokenizer == "clip"
        and cfg.output_dim == 256,
        "open_clip": cfg.architecture != "litetext-s0" and cfg.tokenizer == "clip",
        "onnx": True,
        "int8": True,
    }
    return " or ".join(f for f, ok in takes.items() if ok and f != refused)


def _litetext(module, cfg, source: Path, out: Path) -> dict:
    from anatomy.encoders import mobileclip
    from anatomy.encoders.checkpoints import save_state_dict

    if not cfg.architecture.startswith("litetext-") or cfg.tokenizer != "clip" or cfg.output_dim != 256:
        raise InputError(
            f"{source}: the LiteText layout holds only s0/s1/l students with the CLIP tokenizer and 256-d output "
            f"(this one: {cfg.architecture}, tokenizer {cfg.tokenizer}, output {cfg.output_dim})",
            f"use --format {_other_formats(cfg, 'litetext')}, or load the student directly as student:PATH",
        )
    state = mobileclip.litetext_state_dict(module)
    if out.suffix == ".safetensors":
        save_state_dict(state, out, metadata={"format": "sam3-litetext"})
    else:
        _save_wrapped(state, out)
    kind = cfg.architecture.removeprefix("litetext-")
    return {
        "format": "litetext",
        "source": str(source),
        "out": str(out),
        "keys": len(state),
        "load_as": f"litetext-{kind}:{out}",
    }


def _save_wrapped(state: dict, out: Path) -> None:
    import torch

    from anatomy.io import atomic_path

    with atomic_path(out) as tmp:
        torch.save({"model": {k: v.detach().cpu().contiguous() for k, v in state.items()}}, tmp)


def open_clip_text_cfg(cfg) -> dict:
    """open_clip text_cfg of a student: bidirectional, every token projected, no pooling."""
    return {
        "context_length": cfg.context_length,
        "vocab_size": cfg.vocab_size,
        "width": cfg.width,
        "heads": cfg.heads,
        "layers": cfg.layers,
        "mlp_ratio": cfg.mlp_ratio,
        "no_causal_mask": True,
        "pool_type": "none",
        "proj_bias": True,
        "output_tokens": False,
    }


def open_clip_state_dict(module) -> dict:
    """The student's weights under open_clip TextTransformer names (the unused projection_layer is dropped)."""
    state = module.state_dict()
    out = {}
    for key, value in state.items():
        if key in _TOP_KEYS:
            out[_TOP_KEYS[key]] = value
        elif key == _POS_KEY:
            out["positional_embedding"] = value.reshape(value.shape[2], value.shape[3])
        elif key.startswith("encoder.transformer."):
            index, _, rest = key.removeprefix("encoder.transformer.").partition(".")
            out[f"transformer.resblocks.{index}.{_LAYER_KEYS[rest]}"] = value
        elif key != "encoder.projection_layer":
            raise InputError(f"student key '{key}' has no open_clip counterpart")
    return out


def _open_clip(module, cfg, source: Path, out: Path) -> dict:
    from anatomy.encoders.checkpoints import save_state_dict

    if cfg.architecture == "litetext-s0":
        raise InputError(
            f"{source}: S0's RepMixer blocks have no open_clip counterpart",
            f"use --format {_other_formats(cfg, 'open_clip')}, or load it directly as student:PATH",
        )
    if cfg.tokenizer != "clip":
        raise InputError(
            f"{source}: open_clip text towers here use the CLIP tokenizer, this student uses {cfg.tokenizer}",
            f"use --format {_other_formats(cfg, 'open_clip')}, or load the student directly as student:PATH",
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", "the open_clip format is a directory")
    state = {f"text.{k}": v for k, v in open_clip_state_dict(module).items()}
    model_cfg = {
        "embed_dim": cfg.output_dim,
        "custom_text": True,
        "text_cfg": open_clip_text_cfg(cfg),
        # a text-only export: open_clip's schema needs a vision_cfg; the image tower is not part of it
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "patch_size": 16},
    }
    config = {"model_cfg": model_cfg, "preprocess_cfg": {}, "anatomy_student": cfg.to_dict()}
    with atomic_paths(out / OPEN_CLIP_WEIGHTS, out / OPEN_CLIP_CONFIG) as (weights, config_file):
        save_state_dict(state, weights, metadata={"format": "open_clip"})  # weights and config: both or none
        config_file.write_text(dumps_json(config))
    return {
        "format": "open_clip",
        "source": str(source),
        "out": str(out),
        "keys": len(state),
        "load_as": None,
    }


def _onnx(run_dir: str | Path, fmt: str, out: Path, which: str) -> dict:
    """A run directory's student, or any encoder spec (e.g. `sam3`, `sam3:PATH`), as ONNX / int8 ONNX."""
    from anatomy.distill.onnx_export import export_encoder, require_onnx

    require_onnx()
    path = Path(run_dir)
    if path.exists():
        from anatomy.encoders.student import WEIGHTS_FILE, load_student

        source = checkpoint_dir(path, which)
        encoder, files, name = load_student(source, device="cpu"), [source / WEIGHTS_FILE], str(source)
    else:
        from anatomy.encoders.registry import load, parse_spec

        try:
            parse_spec(str(run_dir))
        except EncoderError:  # neither a folder nor a spec: say that the folder is missing, and both forms
            raise InputError(f"{run_dir}: no such run directory, and not an encoder spec",
                             "give a RUN_DIR written by `anatomy distill`, a student directory, or a spec such "
                             "as sam3:PATH (see `anatomy encoders`)") from None  # fmt: skip
        encoder, name = load(str(run_dir), device="cpu"), str(run_dir)
        files = [Path(p) for p in [name.partition(":")[2]] if p and Path(p).is_file()]
    sidecar = export_encoder(encoder, out, fmt, name, files)
    check = sidecar["parity_fp32_vs_torch"]
    how = (
        f"onnxruntime.InferenceSession('{out}') (fp32 vs PyTorch: max |diff| tokens "
        f"{check['max_abs_diff_tokens']:.1e}, pooled {check['max_abs_diff_pooled']:.1e}"
    )
    if "int8_vs_fp32" in sidecar:
        q = sidecar["int8_vs_fp32"]
        how += f"; int8 vs fp32: pooled cosine {q['pooled_cosine_mean']:.4f}, kNN@10 {q['knn_overlap10_mean']:.3f}"
        how += f"; {sidecar['bytes'] / 2**20:.1f} MiB, fp32 {sidecar['fp32_bytes'] / 2**20:.1f} MiB"
        from anatomy.distill.onnx_weights import describe

        how += f"; {describe(sidecar['quantised'].get('stays_fp32'))}"
    summary = {
        "format": fmt,
        "source": name,
        "out": str(out),
        "keys": sidecar["initializers"],
        "load_as": how + ")",
    }
    keys = ("parity_fp32_vs_torch", "int8_vs_fp32", "bytes", "fp32_bytes", "quantised", "tokenizer")
    summary.update({k: sidecar[k] for k in keys if k in sidecar})
    summary["sidecar"] = str(out.with_name(out.name + ".json"))
    return summary


FORMATS: dict[str, Writer] = {
    "litetext": _student_layout("litetext"),
    "open_clip": _student_layout("open_clip"),
    "onnx": _onnx_format("onnx"),
    "int8": _onnx_format("int8"),
    "hf": _lazy("anatomy.distill.hf_export", "export_hf"),  # --base: the CLI calls export_hf itself
}
