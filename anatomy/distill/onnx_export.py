"""ONNX and int8 exports of any encoder (students, custom students, the teacher architecture), with parity.

The graph takes `input_ids` and `attention_mask` (int64, [batch, context]; batch dynamic, context fixed) and
returns `tokens` ([batch, context, D] per-token outputs, exactly the encoder's) and `pooled` ([batch, D]: the
masked mean over valid positions, as ModuleEncoder pools). `int8` is ONNX Runtime's dynamic quantisation of
the MatMul/Gemm weights (activations quantised per batch at run time); its quality against the fp32 graph
(pooled cosine, kNN overlap@10) is measured on held-out prompts and recorded.

Every export writes FILE.json beside FILE: source, tokenizer, context, output dimension, opset, hashes and the
parity figures. A student whose tokenizer is a Hugging Face one gets its tokenizer files in FILE.tokenizer/.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from anatomy.errors import InputError

log = logging.getLogger(__name__)

OPSET = 18
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("tokens", "pooled")
PARITY_TOLERANCE = 1e-4  # fp32 ONNX against PyTorch, max |difference| on per-token and pooled outputs
HELD_OUT = 256  # prompts for parity and int8 quality (ImageNet templates x classes: not any training corpus)
KNN_K = 10


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError(
            "ONNX exports need the onnx and onnxruntime packages",
            "install the extra: pip install -e '.[onnx]'",
        ) from None


def held_out_prompts(n: int = HELD_OUT) -> list[str]:
    """n fixed prompts from open_clip's ImageNet templates x class names (deterministic, no download)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    every = [t(c) for t in OPENAI_IMAGENET_TEMPLATES for c in IMAGENET_CLASSNAMES]
    return every[:: max(1, len(every) // n)][:n]


def _wrapper(module):
    import torch

    from anatomy.encoders.base import masked_mean

    class OnnxText(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            valid = attention_mask.bool()
            tokens = self.inner(input_ids, valid).float()
            return tokens, masked_mean(tokens, valid)

    return OnnxText(module).eval()


def write_onnx(encoder, out: Path) -> None:
    """Trace `encoder.module` (on CPU, fp32) into `out` (atomically)."""
    import torch

    from anatomy.io import atomic_path

    require_onnx()
    module = _wrapper(encoder.module.to("cpu", torch.float32))
    ids, valid = encoder.tokenize(held_out_prompts(2))
    args = (torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(valid, dtype=torch.long))
    axes = {name: {0: "batch"} for name in (*INPUTS, *OUTPUTS)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: the context is fixed by design
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(source: Path, out: Path) -> None:
    """Dynamic int8 quantisation of the MatMul/Gemm weights of an fp32 ONNX file."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from anatomy.io import atomic_path

    class _NoPreprocessAdvice(logging.Filter):  # onnxruntime advises pre-processing on the root logger
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-processing before quantization" not in record.getMessage()

    advice = _NoPreprocessAdvice()
    logging.getLogger().addFilter(advice)
    try:
        with atomic_path(out) as tmp:
            quantize_dynamic(
                str(source), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
            )
    finally:
        logging.getLogger().removeFilter(advice)


def session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(sess, ids: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feeds = {"input_ids": np.asarray(ids, np.int64), "attention_mask": np.asarray(valid, np.int64)}
    tokens, pooled = sess.run(list(OUTPUTS), feeds)
    return tokens, pooled


def parity(encoder, onnx_path: Path, prompts: list[str]) -> dict[str, float]:
    """Max |ONNX - PyTorch| on per-token outputs (valid positions) and pooled outputs, in batches of 32."""
    ids, valid = encoder.tokenize(prompts)
    sess = session(onnx_path)
    worst_tokens = worst_pooled = 0.0
    for start in range(0, len(ids), 32):
        i, v = ids[start : start + 32], valid[start : start + 32]
        ref = encoder.encode_ids(i, v)
        tokens, pooled = run_session(sess, i, v)
        ref_tokens = ref.tokens.cpu().numpy()
        worst_tokens = max(worst_tokens, float(np.abs(tokens - ref_tokens)[v].max()))
        worst_pooled = max(worst_pooled, float(np.abs(pooled - ref.pooled.cpu().numpy()).max()))
    return {"max_abs_diff_tokens": worst_tokens, "max_abs_diff_pooled": worst_pooled, "prompts": len(prompts)}


def quality(reference: Path, candidate: Path, tokenizer_of, prompts: list[str]) -> dict[str, float]:
    """Pooled cosine and kNN overlap@10 of `candidate` against `reference` (two ONNX files) on `prompts`."""
    from anatomy.analysis.agreement import Distribution, knn_overlap, pooled_cosines

    ids, valid = tokenizer_of(prompts)

    def pooled(path):
        sess = session(path)
        return np.concatenate(
            [run_session(sess, ids[s : s + 64], valid[s : s + 64])[1] for s in range(0, len(ids), 64)]
        )

    ref, cand = pooled(reference), pooled(candidate)
    cosine = Distribution.of(pooled_cosines(ref, cand))
    overlap = Distribution.of(knn_overlap(ref, cand, KNN_K))
    return {
        "pooled_cosine_mean": cosine.mean,
        "pooled_cosine_min": cosine.min,
        f"knn_overlap{KNN_K}_mean": overlap.mean,
        "prompts": len(prompts),
    }


def tokenizer_record(encoder, out: Path, source_dir: Path | None = None) -> dict[str, Any]:
    """How to rebuild the tokenizer: CLIP BPE by name; a Hugging Face one saved beside the export; a
    specialised vocabulary (a student distilled with --vocab) as FILE.vocab.json beside it."""
    from anatomy.encoders.hf import HFTokenizer

    tok = encoder.tokenizer
    record = {"kind": "clip", "vocab_size": int(tok.vocab_size), "sot_id": int(tok.sot_id),
              "eot_id": int(tok.eot_id), "pad_id": int(tok.pad_id)}  # fmt: skip
    config = getattr(encoder, "config", None)
    if config is not None:
        record["spec"] = config.tokenizer
    if isinstance(tok, HFTokenizer):
        directory = out.with_name(out.name + ".tokenizer")
        tok._tok.save_pretrained(str(directory))
        record.update(kind="hf", files=directory.name)
    vocab = source_dir / "vocab.json" if source_dir is not None else None
    if config is not None and config.vocab is not None and vocab is not None and vocab.is_file():
        import shutil

        target = out.with_name(out.name + ".vocab.json")
        shutil.copyfile(vocab, target)  # ids in the graph are the specialised ones: anatomy.vocab.store.load
        record.update(specialised=target.name, vocab_fingerprint=config.vocab)
    return record


def export_encoder(encoder, out: str | Path, fmt: str, source: str, source_files: list[Path]) -> dict:
    """Write `encoder` as ONNX (fp32) or int8 to `out`, check it, and write the sidecar; returns the summary."""
    import tempfile

    from anatomy.io import file_sha256, write_json

    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"{out}: ONNX exports are single .onnx files", "give --out FILE.onnx")
    prompts = held_out_prompts()
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        fp32 = out if fmt == "onnx" else Path(tmp) / "fp32.onnx"
        write_onnx(encoder, fp32)
        check = parity(encoder, fp32, prompts[:64])
        if max(check["max_abs_diff_tokens"], check["max_abs_diff_pooled"]) > PARITY_TOLERANCE:
            log.warning("%s: ONNX differs from PyTorch by more than %g: %s", out, PARITY_TOLERANCE, check)
        record: dict[str, Any] = {"parity_fp32_vs_torch": check}
        if fmt == "int8":
            quantize_int8(fp32, out)
            record["int8_vs_fp32"] = quality(fp32, out, encoder.tokenize, prompts)
            record["fp32_bytes"] = fp32.stat().st_size
    import onnx

    graph = onnx.load(str(out), load_external_data=False).graph
    sidecar = {
        "format": fmt,
        "file": out.name,
        "source": source,
        "encoder": encoder.name,
        "tokenizer": tokenizer_record(encoder, out, Path(source) if Path(source).is_dir() else None),
        "context_length": int(encoder.context_length),
        "output_dim": int(encoder.output_dim),
        "inputs": {
            "input_ids": "int64 [batch, context]",
            "attention_mask": "int64 [batch, context], 1 = valid",
        },
        "outputs": {"tokens": "float32 [batch, context, D]", "pooled": "float32 [batch, D], masked mean"},
        "opset": OPSET,
        "initializers": len(graph.initializer),
        "bytes": out.stat().st_size,
        "sha256": file_sha256(out),
        "source_sha256": {p.name: file_sha256(p) for p in source_files},
        **record,
    }
    write_json(out.with_name(out.name + ".json"), sidecar)
    return sidecar
