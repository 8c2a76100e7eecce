"""One cost measurement, run in a fresh process: `python -m anatomy.cost.measure '{config JSON}'`.

The process imports its runtime, records its resident memory (the runtime's own share), loads one encoder
(PyTorch) or one ONNX file (ONNX Runtime), records resident and peak memory after loading, resets the peak
(/proc/self/clear_refs), times batch-1 latency after a warm-up and throughput at each larger batch, and
records the peak during those batches. Peaks are VmHWM from /proc/self/status, not ru_maxrss: Linux carries
ru_maxrss over fork and exec, so a child of a large parent would report the parent's size. The result is
one JSON line on stdout (the last line).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MIB = 2**20

# Components every encoder's parameter_breakdown() is grouped into (the study's efficiency table).
COMPONENTS = ("token_embedding", "positional", "transformer", "projection")


def component_of(name: str) -> str:
    """The component a parameter_breakdown() key belongs to (any family's naming)."""
    key = name.lower()
    if "token_embed" in key or "word_embed" in key or key == "embedding_layer":
        return "token_embedding"
    if "position" in key:
        return "positional"
    if "proj" in key or "resizer" in key or "pooler" in key:
        return "projection"
    return "transformer"


def group_components(breakdown: dict[str, int]) -> dict[str, int]:
    groups = dict.fromkeys(COMPONENTS, 0)
    for name, count in breakdown.items():
        groups[component_of(name)] += int(count)
    return groups


def memory_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MiB (Linux)."""
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def prompts(n: int) -> list[str]:
    """n fixed prompts (open_clip's ImageNet templates x classes, deterministic)."""
    from anatomy.distill.onnx_export import held_out_prompts

    return (held_out_prompts(max(n, 64)) * (n // 64 + 1))[:n]


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def _timed(call, cfg: dict) -> dict[str, Any]:
    """Latency at batch 1 and texts/s at each batch > 1. Batch-1 calls are timed in rounds of `repeats` after
    `warmup`, until the interquartile range is within `max_spread` of the median or `max_repeats` calls
    were made (then the latency is marked unreliable). The load average is read before and after."""
    load_before = _load()
    for _ in range(cfg["warmup"]):
        call(1)
    times: list[float] = []
    while True:
        for _ in range(cfg["repeats"]):
            start = time.perf_counter()
            call(1)
            times.append(time.perf_counter() - start)
        spread = _spread(times)
        if spread <= cfg["max_spread"] or len(times) + cfg["repeats"] > cfg["max_repeats"]:
            break
    throughput = {"1": 1.0 / float(np.median(times))}
    for batch in cfg["batches"]:
        if batch == 1:
            continue
        call(batch)  # warm-up at this size: buffers allocated, kernels chosen
        start = time.perf_counter()
        for _ in range(cfg["throughput_repeats"]):
            call(batch)
        throughput[str(batch)] = batch * cfg["throughput_repeats"] / (time.perf_counter() - start)
    return {
        "latency_ms_p50": percentile_ms(times, 50),
        "latency_ms_p95": percentile_ms(times, 95),
        "latency_repeats": len(times),
        "latency_spread": spread,  # interquartile range / median of the batch-1 times
        "latency_reliable": spread <= cfg["max_spread"],
        "texts_per_s": throughput,
        "threads": cfg["threads"],
        "load_before": load_before,
        "load_after": _load(),
    }


def _spread(times: list[float]) -> float:
    q1, median, q3 = np.percentile(np.asarray(times), [25, 50, 75])
    return float((q3 - q1) / median) if median > 0 else 0.0


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _measure_torch(cfg: dict) -> dict[str, Any]:
    import torch

    from anatomy.encoders.registry import load

    _preload(cfg["spec"])
    runtime = memory_status()["VmRSS"]
    start = time.perf_counter()
    encoder = load(cfg["spec"], device=cfg["device"], context_length=cfg["context"])
    load_s = time.perf_counter() - start
    cuda = encoder.device.type == "cuda"
    loaded = memory_status()
    breakdown = {k: int(v) for k, v in encoder.parameter_breakdown().items()}
    ids, valid = encoder.tokenize(prompts(max(cfg["batches"])))
    ids_t = torch.as_tensor(ids, device=encoder.device)
    valid_t = torch.as_tensor(valid, device=encoder.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        allocated = torch.cuda.memory_allocated() / MIB

    def call(n: int) -> None:
        with torch.inference_mode():
            encoder.module(ids_t[:n], valid_t[:n])
        if cuda:
            torch.cuda.synchronize()

    reset = reset_peak()
    timing = _timed(call, cfg)
    result = {
        "parameters": sum(breakdown.values()),
        "components": group_components(breakdown),
        "breakdown": breakdown,
        "output_dim": int(encoder.output_dim),
        "context_length": int(encoder.context_length),
        "load_s": load_s,
        "torch_threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(encoder.device) if cuda else cpu_model(),
        **_memory(runtime, loaded, reset),
        **timing,
    }
    if cuda:
        result["gpu_allocated_after_load_mib"] = allocated
        result["gpu_peak_batch_mib"] = torch.cuda.max_memory_allocated() / MIB
    return result


def _preload(spec: str) -> None:
    """Import the family's libraries and build its tokenizer first: the baseline holds them, the model row
    then shows what the weights and the module add (the tokenizer's share is in rss_runtime_mib)."""
    import torch

    import anatomy.encoders.base  # noqa: F401
    from anatomy.encoders.family import family_of
    from anatomy.encoders.registry import load_tokenizer, parse_spec

    with torch.device("meta"):  # loaders build on the meta device: its machinery is a runtime cost
        probe = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    probe.to_empty(device="cpu")(torch.zeros(1, 4))

    family = family_of(parse_spec(spec))
    if family.warm_up is not None:
        with torch.device("meta"):  # the family's libraries and module classes, shapes only (no memory)
            family.warm_up()
    try:
        load_tokenizer(spec)
    except Exception:  # noqa: BLE001 - the load below reports the real problem as a user error
        pass


def _measure_onnx(cfg: dict) -> dict[str, Any]:
    """An ONNX file under ONNX Runtime, fed the ids its sidecar's tokenizer gives (a specialised vocabulary's
    own ids for a specialised student)."""
    from anatomy.distill.onnx_export import run_session, session
    from anatomy.distill.onnx_sidecar import read_sidecar, sidecar_tokenizer
    from anatomy.encoders.base import valid_mask

    path = Path(cfg["onnx"])
    sidecar = read_sidecar(path)
    tokenizer = sidecar_tokenizer(path, sidecar)
    import onnxruntime

    runtime = memory_status()["VmRSS"]
    start = time.perf_counter()
    sess = session(path, cfg.get("threads"))
    load_s = time.perf_counter() - start
    loaded = memory_status()
    texts = prompts(max(cfg["batches"]))
    content = tokenizer.encode(texts)
    ids = tokenizer(texts, sidecar["context_length"])
    valid = valid_mask(ids, [len(c) for c in content])

    def call(n: int) -> None:
        run_session(sess, ids[:n], valid[:n])

    reset = reset_peak()
    timing = _timed(call, cfg)
    return {
        "output_dim": sidecar["output_dim"],
        "context_length": sidecar["context_length"],
        "file_bytes": path.stat().st_size,
        "load_s": load_s,
        "ort_threads": sess.get_session_options().intra_op_num_threads or os.cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "device_name": cpu_model(),
        "quantised": sidecar.get("quantised"),
        **_memory(runtime, loaded, reset),
        **timing,
    }


def _memory(runtime: float, loaded: dict, reset: bool) -> dict[str, Any]:
    peak = memory_status()["VmHWM"]
    return {
        "rss_runtime_mib": runtime,  # the interpreter and runtime libraries, before the model
        "rss_loaded_mib": loaded["VmRSS"],  # resident after loading the model
        "peak_load_mib": loaded["VmHWM"],  # peak while loading (e.g. weights and their random init)
        "peak_batch_mib": peak,  # peak while running the timed batches (after a reset of the peak)
        "peak_reset": reset,  # False: the batch peak includes loading (kernel without clear_refs)
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def measure(cfg: dict) -> dict[str, Any]:
    """One configuration (in this process): cfg has spec, context, runtime, batches, device, repetitions."""
    if cfg["runtime"] == "torch":  # ONNX rows do not load torch (its memory is not theirs)
        import torch

        torch.set_num_threads(int(cfg["threads"]))  # fixed and recorded: the default (one per core) spin-
        torch.set_num_interop_threads(1)  # waits against other load and measures the neighbours instead
    return _measure_torch(cfg) if cfg["runtime"] == "torch" else _measure_onnx(cfg)


if __name__ == "__main__":
    import logging

    from anatomy.errors import AnatomyError

    logging.disable(logging.WARNING)
    try:
        answer = measure(json.loads(sys.argv[1]))
    except AnatomyError as error:  # a user error (bad spec, context too long): reported by the parent
        answer = {"error": error.message, "hint": error.hint}
    print(json.dumps(answer), flush=True)
