"""ONNX and int8 exports of any encoder (students, custom students, the teacher architecture), with parity.

The graph takes `input_ids` and `attention_mask` (int64, [batch, context]; batch dynamic, context fixed) and
returns `tokens` ([batch, context, D] per-token outputs, exactly the encoder's) and `pooled` ([batch, D]: the
masked mean over valid positions, as ModuleEncoder pools). `int8` is ONNX Runtime's dynamic quantisation of
the MatMul/Gemm weights (activations quantised per batch at run time) and of the token-embedding table (its
Gather); its quality against the fp32 graph (pooled cosine, kNN overlap@10), its weights by type and what
stays fp32 (positional table, biases and norms, kernels of ops it does not quantise) are measured and recorded.

Every export writes FILE.json beside FILE (anatomy.distill.onnx_sidecar): source, exactly how to tokenize,
context, output dimension, opset, hashes and the parity figures; graph, sidecar and the files it names are
committed together.
"""

from __future__ import annotations

import contextlib
import logging
import os
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


# Gather: the token-embedding table (most of a student's weights)
QUANTISED_OPS = ("MatMul", "Gemm", "Gather")


def quantize_int8(source: Path, out: Path) -> None:
    """Dynamic int8 quantisation of an fp32 ONNX file: MatMul/Gemm weights and the token-embedding table."""
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
                str(source), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTISED_OPS)
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
    from anatomy.metrics.similarity import Distribution, knn_overlap, pooled_cosines

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


def export_encoder(encoder, out: str | Path, fmt: str, source: str, source_files: list[Path]) -> dict:
    """Write `encoder` as ONNX (fp32) or int8 to `out`, check it, and write the sidecar; returns the sidecar.

    The graph, its sidecar and the files the sidecar names (tokenizer folder, specialised vocabulary) are
    committed together: on any failure (a full disk included: one line naming `out`) none of them is
    replaced. Temporaries a killed export left beside `out` are removed first."""
    from anatomy.locks import locked

    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"{out}: ONNX exports are single .onnx files", "give --out FILE.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out), disk_errors(out):
        clean_work_dirs(out)
        return _export_locked(encoder, out, fmt, source, source_files)


WORK_PREFIX = ".{name}.work."  # the folder holding an export's intermediate files, beside it


def clean_work_dirs(out: Path) -> list[Path]:
    """Remove the work folders a killed export of `out` left (called while holding the lock of `out`)."""
    import shutil

    from anatomy.distill.onnx_sidecar import sidecar_path
    from anatomy.io import clean_temps

    clean_temps(sidecar_path(out))
    prefix = WORK_PREFIX.format(name=out.name)
    stale = [p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    if stale:
        log.info("%s: removed %d work folder(s) left by an interrupted export", out, len(stale))
    return stale


@contextlib.contextmanager
def disk_errors(out: Path):
    """A write that fails for lack of space (OSError, or a library's own error carrying ENOSPC) as one line."""
    from anatomy.errors import AnatomyError
    from anatomy.io import write_error

    try:
        yield
    except AnatomyError:
        raise
    except OSError as error:
        wrapped = write_error(out, error)
        if wrapped is error:
            raise
        raise wrapped from None
    except Exception as error:
        text = str(error)
        if "No space left" in text or "StorageFull" in text or "os error 28" in text or "code: 28" in text:
            raise AnatomyError(
                f"{out}: cannot write (No space left on device)",
                "free disk space and export again; nothing was changed",
            ) from None
        raise


def _export_locked(encoder, out: Path, fmt: str, source: str, source_files: list[Path]) -> dict:
    import shutil
    import tempfile

    from anatomy.distill.onnx_sidecar import sidecar_path, tokenizer_record
    from anatomy.io import atomic_paths, dumps_json, writing

    prompts = held_out_prompts()
    record, extra = tokenizer_record(encoder, out)  # refuses an undescribable tokenizer before any work
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX.format(name=out.name), dir=out.parent))
    try:
        fp32 = work / "fp32.onnx"
        write_onnx(encoder, fp32)
        check = parity(encoder, fp32, prompts[:64])
        if max(check["max_abs_diff_tokens"], check["max_abs_diff_pooled"]) > PARITY_TOLERANCE:
            log.warning("%s: ONNX differs from PyTorch by more than %g: %s", out, PARITY_TOLERANCE, check)
        sidecar_extra: dict[str, Any] = {"parity_fp32_vs_torch": check}
        graph = fp32
        if fmt == "int8":
            graph = work / "int8.onnx"
            quantize_int8(fp32, graph)
            sidecar_extra["int8_vs_fp32"] = quality(fp32, graph, encoder.tokenize, prompts)
            sidecar_extra["fp32_bytes"] = fp32.stat().st_size
            sidecar_extra["quantised"] = weight_types(graph)
        folders = {name: write for name, write in extra.items() if callable(write)}
        for name, write in folders.items():  # written in the work folder, moved in after the commit
            write(str(work / name))
        sidecar = _sidecar(encoder, out, graph, fmt, source, source_files, record, sidecar_extra)
        files = {name: data for name, data in extra.items() if not callable(data)}
        targets = [out.parent / name for name in files] + [sidecar_path(out), out]
        with atomic_paths(*targets) as temps:
            for tmp, data in zip(temps, files.values(), strict=False):
                tmp.write_bytes(data)
            temps[-2].write_text(dumps_json(sidecar))
            shutil.copyfile(graph, temps[-1])
        for name in folders:
            with writing(out.parent / name):
                shutil.rmtree(out.parent / name, ignore_errors=True)
                os.replace(work / name, out.parent / name)
        for name in {out.name + ".vocab.json", out.name + ".tokenizer"} - set(extra):
            stale = out.parent / name  # a previous export's companion the new sidecar does not name
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        return sidecar
    finally:
        shutil.rmtree(work, ignore_errors=True)


def weight_types(path: Path) -> dict[str, Any]:
    """Weights (initializer elements) of a graph by element type, the type of its largest table (the token
    embedding), and what stays fp32 (anatomy.distill.onnx_weights)."""
    import onnx

    from anatomy.distill.onnx_weights import stays_fp32

    model = onnx.load(str(path))
    by_type: dict[str, int] = {}
    for init in model.graph.initializer:
        name = onnx.TensorProto.DataType.Name(init.data_type).lower()
        by_type[name] = by_type.get(name, 0) + int(np.prod(init.dims))
    largest = max(model.graph.initializer, key=lambda i: int(np.prod(i.dims)))
    return {"weights_by_type": by_type, "ops": list(QUANTISED_OPS),
            "largest_table": onnx.TensorProto.DataType.Name(largest.data_type).lower(),
            "stays_fp32": stays_fp32(model)}  # fmt: skip


def _sidecar(encoder, out, graph, fmt, source, source_files, record, extra) -> dict[str, Any]:
    import onnx

    from anatomy.io import file_sha256

    initializers = len(onnx.load(str(graph), load_external_data=False).graph.initializer)
    return {
        "format": fmt,
        "file": out.name,
        "source": source,
        "encoder": encoder.name,
        "tokenizer": record,
        "context_length": int(encoder.context_length),
        "output_dim": int(encoder.output_dim),
        "inputs": {
            "input_ids": "int64 [batch, context]",
            "attention_mask": "int64 [batch, context], 1 = valid",
        },
        "outputs": {"tokens": "float32 [batch, context, D]", "pooled": "float32 [batch, D], masked mean"},
        "opset": OPSET,
        "initializers": initializers,
        "bytes": graph.stat().st_size,
        "sha256": file_sha256(graph),
        "source_sha256": {p.name: file_sha256(p) for p in source_files},
        **extra,
    }
