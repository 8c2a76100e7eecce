"""What each encoder costs, side by side: one fresh process per encoder x context x runtime, ratios against
the first row (the teacher, as in the study's efficiency table), the study's GPU numbers beside ours.

    result = run_cost(["sam3", "litetext-s0"], [32, 16], CostSettings(), out_dir)   # dict, JSON-ready
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anatomy import paper
from anatomy.errors import EncoderError, InputError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "int8")
# The study's efficiency table (anatomy.paper): texts/s on its GPU, teacher at context 32, students at 16.
PAPER_DEVICE = f"{paper.THROUGHPUT_DEVICE} (the paper's)"
PAPER_SOURCE = f"{paper.STUDY}, {paper.THROUGHPUT['sam3'].where}"
PAPER_TEXTS_PER_S = {name: float(cited.value) for name, cited in paper.THROUGHPUT.items()}
METHOD = (
    "each row in a fresh process; memory is VmRSS/VmHWM of that process (/proc/self/status), the peak reset "
    "after loading; latency is wall time of batch-1 calls on pre-tokenized ids after warm-up; throughput is "
    "texts/s over whole batches after one warm-up batch; weight bytes are parameters x 4 / 2 / 1"
)


@dataclass(frozen=True)
class CostSettings:
    batches: tuple[int, ...] = (1, 64)
    device: str = "cpu"
    runtimes: tuple[str, ...] = ("torch",)
    warmup: int = 3
    repeats: int = 20  # batch-1 calls timed for p50/p95
    throughput_repeats: int = 1  # whole batches timed per larger batch size (after one warm-up batch)
    threads: int | None = None  # torch / ONNX Runtime intra-op threads in each measuring process
    timeout_s: float = 3600.0


def machine(device: str, threads: int | None = None) -> dict[str, Any]:
    """Where the numbers were taken: CPU model and cores, torch threads, accelerator name."""
    import torch

    from anatomy.cost.measure import cpu_model

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else cpu_model(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def paper_key(spec: str) -> str | None:
    """The paper row an encoder spec corresponds to (bare names and family:PATH of the four architectures)."""
    family = spec.partition(":")[0]
    return family if family in PAPER_TEXTS_PER_S else None


def run_child(config: dict, timeout: float) -> dict[str, Any]:
    """One measurement in a fresh interpreter (anatomy.cost.measure); errors come back as EncoderError."""
    import anatomy

    root = str(Path(anatomy.__file__).resolve().parent.parent)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "anatomy.cost.measure", json.dumps(config)],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EncoderError(
            f"cost measurement of {config['spec']} (context {config['context']}, {config['runtime']}) failed: "
            + (proc.stderr.strip().splitlines() or ["no output"])[-1]
        )
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise EncoderError(answer["error"], answer.get("hint"))
    return answer


def _check_specs(specs: Sequence[str]) -> None:
    from anatomy.encoders.registry import parse_spec

    for spec in specs:
        if spec.endswith(".onnx"):
            path = Path(spec.removeprefix("onnx:"))
            if not path.with_name(path.name + ".json").exists():
                raise InputError(
                    f"{path}: no sidecar {path.name}.json", "give an ONNX file `anatomy export` wrote"
                )
        else:
            parse_spec(spec)


def _export(spec: str, context: int | None, runtime: str, folder: Path) -> Path:
    from anatomy.distill.onnx_export import export_encoder
    from anatomy.encoders.registry import load

    encoder = load(spec, device="cpu", context_length=context)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)[-60:]
    out = folder / f"{slug}-ctx{encoder.context_length}-{runtime}.onnx"
    export_encoder(encoder, out, runtime, spec, [])
    return out


def _configs(specs, contexts, settings, out_dir):
    """(spec, context, runtime, extra config) for every row, ONNX files exported first where asked."""
    for spec in specs:
        if spec.endswith(".onnx"):  # an existing export: measured as it is, at its own context
            path = Path(spec.removeprefix("onnx:"))
            sidecar = json.loads(path.with_name(path.name + ".json").read_text())
            yield spec, sidecar["context_length"], sidecar["format"], {"onnx": str(path)}
            continue
        for context in contexts or [None]:
            for runtime in settings.runtimes:
                extra = {}
                if runtime != "torch":
                    extra["onnx"] = str(_export(spec, context, runtime, Path(out_dir) / "onnx"))
                yield spec, context, runtime, extra


def run_cost(
    specs: Sequence[str],
    contexts: Sequence[int],
    settings: CostSettings,
    out_dir: str | Path,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Measure every encoder x context x runtime; returns {machine, method, settings, rows, paper}."""
    if not specs:
        raise InputError("no encoders given", "name at least one with -e SPEC (the first is the baseline)")
    _check_specs(specs)
    if settings.device != "cpu" and any(r != "torch" for r in settings.runtimes):
        raise InputError(
            "ONNX Runtime rows are measured on the CPU", "use --device cpu with --runtime onnx/int8"
        )
    rows, torch_rows = [], {}
    for spec, context, runtime, extra in _configs(specs, contexts, settings, out_dir):
        progress(f"{spec} at context {context or 'default'} ({runtime})")
        config = {"spec": spec, "context": context, "runtime": runtime, "batches": list(settings.batches),
                  "device": settings.device, "warmup": settings.warmup, "repeats": settings.repeats,
                  "throughput_repeats": settings.throughput_repeats, "threads": settings.threads, **extra}  # fmt: skip
        measured = run_child(config, settings.timeout_s)
        row = {
            "encoder": spec,
            "context": measured.get("context_length", context),
            "runtime": runtime,
            **measured,
        }
        if runtime == "torch":
            torch_rows[(spec, row["context"])] = row
        elif (spec, row["context"]) in torch_rows:  # parameters are the same module's
            source = torch_rows[(spec, row["context"])]
            row.update({k: source[k] for k in ("parameters", "components", "breakdown")})
        rows.append(_with_bytes(row))
    add_ratios(rows)
    return {
        "machine": machine(settings.device, settings.threads),
        "method": METHOD,
        "settings": asdict(settings),
        "rows": rows,
        "paper": {"device": PAPER_DEVICE, "source": PAPER_SOURCE, "texts_per_s": PAPER_TEXTS_PER_S},
    }


def _with_bytes(row: dict) -> dict:
    n = row.setdefault("parameters", None)
    if n is not None:
        row["weight_bytes"] = {"fp32": 4 * n, "fp16": 2 * n, "int8": n}
    key = paper_key(row["encoder"])
    measured_like_paper = (
        key is not None and row["runtime"] == "torch" and row["context"] == paper.THROUGHPUT_CONTEXT[key]
    )
    row["paper_texts_per_s"] = PAPER_TEXTS_PER_S[key] if key is not None and measured_like_paper else None
    return row


def add_ratios(rows: list[dict]) -> None:
    """Each row's numbers over the first row's: sizes and latency (< 1 is smaller/faster), throughput (> 1 faster)."""
    if not rows:
        return
    base = rows[0]

    def ratio(a, b):
        return None if a is None or not b else a / b

    for row in rows:
        row["ratios"] = {
            "baseline": f"{base['encoder']} @ {base['context']} ({base['runtime']})",
            "parameters": ratio(row.get("parameters"), base.get("parameters")),
            "model_mib": ratio(_model_mib(row), _model_mib(base)),
            "peak_batch_mib": ratio(row["peak_batch_mib"], base["peak_batch_mib"]),
            "latency_p50": ratio(row["latency_ms_p50"], base["latency_ms_p50"]),
            "texts_per_s": {b: ratio(v, base["texts_per_s"].get(b)) for b, v in row["texts_per_s"].items()},
        }
        key, base_key = paper_key(row["encoder"]), paper_key(base["encoder"])
        if row["paper_texts_per_s"] and key and base_key and row["runtime"] == "torch":
            row["ratios"]["paper_texts_per_s"] = PAPER_TEXTS_PER_S[key] / PAPER_TEXTS_PER_S[base_key]


def _model_mib(row: dict) -> float:
    """Resident memory the loaded model adds over the bare runtime."""
    return row["rss_loaded_mib"] - row["rss_runtime_mib"]


def table_lines(result: dict) -> list[str]:
    """The rows as a plain-text table (ratios against the first row in parentheses)."""
    batches = [str(b) for b in result["settings"]["batches"]]
    head = f"{'encoder':<22}{'ctx':>4} {'runtime':<6}{'params':>13}{'fp32 MiB':>9}{'model MiB':>15}{'peak MiB':>15}{'p50 ms':>15}{'p95 ms':>8}"
    head += "".join(f"{'texts/s@' + b:>18}" for b in batches) + f"{'paper GPU t/s':>15}"
    lines = [head]
    for row in result["rows"]:
        r = row["ratios"]
        params = f"{row['parameters']:,}" if row.get("parameters") is not None else "-"
        fp32 = f"{row['weight_bytes']['fp32'] / 2**20:.0f}" if "weight_bytes" in row else "-"
        line = f"{row['encoder'][-22:]:<22}{row['context']:>4} {row['runtime']:<6}{params:>13}{fp32:>9}"
        line += f"{_model_mib(row):>8.0f} ({_x(r['model_mib'])}){row['peak_batch_mib']:>8.0f} ({_x(r['peak_batch_mib'])})"
        line += f"{row['latency_ms_p50']:>8.1f} ({_x(r['latency_p50'])}){row['latency_ms_p95']:>8.1f}"
        line += "".join(f"{row['texts_per_s'][b]:>10.1f} ({_x(r['texts_per_s'][b])})" for b in batches)
        theirs = row["paper_texts_per_s"]
        line += f"{theirs:>8.1f} ({_x(r.get('paper_texts_per_s'))})" if theirs else f"{'-':>15}"
        lines.append(line)
    m = result["machine"]
    lines.append(
        f"ratios (x) against the first row; measured on {m['device_name']} ({m['cores_available']} cores, "
        f"torch threads {m['torch_threads']}); paper: {result['paper']['device']}, {result['paper']['source']}"
    )
    return lines


def _x(value: float | None) -> str:
    return "   -  " if value is None else f"{value:5.2f}x"
