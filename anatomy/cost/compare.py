"""What each encoder costs, side by side: one fresh process per encoder x context x runtime, ratios against
the first row (the teacher, as in the study's efficiency table), the study's GPU numbers beside ours.

    table = measure_costs(["sam3", "litetext-s0"], [32, 16], out_dir=tmp)   # CostTable; table.to_json()

Every timing is taken the same way, whoever asks (`anatomy cost-table`, the `cost` pair analysis in an
audit, the benchmarks): the defaults are CostSettings', each process runs a fixed, recorded number of
intra-op threads, batch-1 latency is repeated until its spread is small (or marked unreliable), and the load
average of the machine is recorded beside each row (a warning when other work was running).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anatomy import paper
from anatomy.errors import EncoderError, InputError, OptionError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "int8")
MAX_BATCH = 4096
# The study's efficiency table (anatomy.paper): texts/s on its GPU, teacher at context 32, students at 16.
PAPER_DEVICE = f"{paper.THROUGHPUT_DEVICE} (the paper's)"
PAPER_SOURCE = f"{paper.STUDY}, {paper.THROUGHPUT['sam3'].where}"
PAPER_TEXTS_PER_S = {name: float(cited.value) for name, cited in paper.THROUGHPUT.items()}
# A row is taken on a busy machine when other work (the 1-minute load average less this measurement's own
# threads) held more than this share of the cores the measurement leaves free.
BUSY_SHARE = 0.5
METHOD = (
    "each row in a fresh process with a fixed number of intra-op threads; memory is VmRSS/VmHWM of that "
    "process (/proc/self/status), the peak reset after loading; latency is wall time of batch-1 calls on "
    "pre-tokenized ids after warm-up, repeated until the interquartile range is within max_spread of the "
    "median (else marked unreliable); throughput is texts/s over whole batches after one warm-up batch; "
    "weight bytes are parameters x 4 / 2 / 1; the load average is read before and after each row"
)


@dataclass(frozen=True)
class CostSettings:
    """How every cost row is measured: the one place these defaults live (the CLI and the analysis read them)."""

    batches: tuple[int, ...] = (1, 64)
    device: str = "cpu"
    runtimes: tuple[str, ...] = ("torch",)
    warmup: int = 3
    repeats: int = 20  # batch-1 calls timed per round (p50/p95); rounds repeat while the spread is large
    max_repeats: int = 200  # stop repeating here: the latency is then marked unreliable
    max_spread: float = 0.2  # interquartile range / median of the batch-1 times that counts as stable
    throughput_repeats: int = 1  # whole batches timed per larger batch size (after one warm-up batch)
    threads: int = 1  # intra-op threads of each measuring process (torch and ONNX Runtime), recorded
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        for runtime in self.runtimes:
            if runtime not in RUNTIMES:
                raise InputError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
        if not self.batches or min(self.batches) < 1 or max(self.batches) > MAX_BATCH:
            raise InputError(f"batch sizes must lie in [1, {MAX_BATCH}], got {self.batches}")


@dataclass
class CostTable:
    """The measured rows (dicts: one per encoder x context x runtime), where and how they were taken."""

    machine: dict[str, Any]
    method: str
    settings: dict[str, Any]
    rows: list[dict[str, Any]]
    paper: dict[str, Any]
    failures: list[dict[str, Any]] = field(default_factory=list)  # configurations that could not be measured
    warnings: list[str] = field(default_factory=list)  # busy machine, unreliable latencies

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def machine(device: str, threads: int | None = None) -> dict[str, Any]:
    """Where the numbers were taken: CPU model and cores, threads, accelerator name, load average."""
    import torch

    from anatomy.cost.measure import cpu_model

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": available_cores(),
        "torch_threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": load_average(),
        "python": platform.python_version(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_model(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def busy(load1: float | None, threads: int, cores: int) -> bool:
    """Whether other work held more than BUSY_SHARE of the cores this measurement leaves free."""
    if load1 is None:
        return False
    return (load1 - threads) > BUSY_SHARE * max(cores - threads, 1)


def paper_key(spec: str) -> str | None:
    """The paper row an encoder spec corresponds to (bare names and family:PATH of the four architectures)."""
    family = spec.partition(":")[0]
    return family if family in PAPER_TEXTS_PER_S else None


def run_child(config: dict, timeout: float) -> dict[str, Any]:
    """One measurement in a fresh interpreter (anatomy.cost.measure); errors come back as EncoderError."""
    import anatomy

    root = str(Path(anatomy.__file__).resolve().parent.parent)
    threads = str(config["threads"])
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS=threads,  # the thread pools start at this size: no spinning threads beyond it
        MKL_NUM_THREADS=threads,
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "anatomy.cost.measure", json.dumps(config)],
            capture_output=True, text=True, env=env, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise EncoderError(f"cost measurement of {config['spec']} took more than {timeout:.0f} s") from None
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


def check_specs(
    specs: Sequence[SpecItem], contexts: Sequence[int] = (), runtimes: Sequence[str] = ("torch",)
) -> None:
    """Refuse unknown specs and ONNX files without their sidecar before any measurement, and options an ONNX
    file cannot honour (usage errors): its graph has one fixed context and one format, measured as they are,
    so a --context other than the graph's, or an ONNX --runtime other than its format, is refused rather than
    ignored (torch, the default runtime, means "as it is" for a file)."""
    from anatomy.encoders.registry import parse_spec

    for item in specs:
        spec = _spec(item)
        if spec.endswith(".onnx"):
            from anatomy.distill.onnx_sidecar import read_sidecar

            path = Path(spec.removeprefix("onnx:"))
            if not path.is_file():
                raise InputError(f"{path}: {'not a file' if path.exists() else 'no such file'}",
                                 "give an ONNX file `anatomy export` wrote (with its FILE.onnx.json)")  # fmt: skip
            sidecar = read_sidecar(path)
            own, fmt = sidecar["context_length"], sidecar["format"]
            asked = sorted({c for c in (contexts if isinstance(item, str) else [item[1]]) if c is not None})
            if asked and asked != [own]:
                raise OptionError("--context", f"{path} is an ONNX graph with a fixed context of {own}: it cannot "
                                  f"be measured at {', '.join(map(str, asked))}",
                                  f"leave --context out or give --context {own}; to measure another context, "
                                  "give the encoder it was exported from (e.g. student:RUN_DIR) instead")  # fmt: skip
            other = [r for r in runtimes if r not in ("torch", fmt)]
            if other and not set(runtimes) & {"torch", fmt}:  # no runtime given applies to the file
                raise OptionError("--runtime", f"{path} is an ONNX graph in the {fmt} format, measured as it is: "
                                  f"--runtime {', '.join(other)} does not apply to it",
                                  f"leave --runtime out or give --runtime {fmt}; for {other[0]}, give an {other[0]} "
                                  f"export (anatomy export --format {other[0]}) or the encoder it came from")  # fmt: skip
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


# An encoder spec, or (spec, context): that encoder at that one context whatever `contexts` says (e.g. a
# teacher measured at its student's context beside its own; None: the encoder's own context).
SpecItem = str | tuple[str, int | None]


def _spec(item: SpecItem) -> str:
    return item if isinstance(item, str) else item[0]


def _configs(
    specs: Sequence[SpecItem], contexts: Sequence[int], settings: CostSettings, out_dir: str | Path
) -> Iterator[tuple[str, int | None, str, dict[str, Any]]]:
    """(spec, context, runtime, extra config or the error that kept it from being measured) for every row."""
    for item in specs:
        spec = _spec(item)
        if spec.endswith(".onnx"):  # an existing export: measured as it is, at its own context
            from anatomy.distill.onnx_sidecar import read_sidecar

            path = Path(spec.removeprefix("onnx:"))
            sidecar = read_sidecar(path)
            yield spec, sidecar["context_length"], sidecar["format"], {"onnx": str(path)}
            continue
        choices: list[int | None] = list(contexts) or [None]  # None: the encoder's own context
        if not isinstance(item, str):
            choices = [item[1]]
        for context in choices:
            for runtime in settings.runtimes:
                extra: dict[str, Any] = {}
                if runtime != "torch":
                    try:
                        extra["onnx"] = str(_export(spec, context, runtime, Path(out_dir) / "onnx"))
                    except EncoderError as error:  # an encoder that cannot be exported: its other rows stand
                        extra["error"] = error
                yield spec, context, runtime, extra


def measure_costs(
    specs: Sequence[SpecItem],
    contexts: Sequence[int] = (),
    settings: CostSettings | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    **overrides: Any,
) -> CostTable:
    """Measure every encoder x context x runtime (CostSettings fields may be given as keywords, e.g.
    batches=(1, 64), runtimes=("torch", "int8"), threads=1); the first row measured is the baseline.

    A configuration that fails is recorded in `failures` and the others are still measured; only when none
    could be measured is it an EncoderError. ONNX exports are written under out_dir/onnx (a temporary
    folder when out_dir is None). A spec given as (spec, context) is measured at that context only."""
    import tempfile

    settings = dataclasses.replace(settings or CostSettings(), **overrides)
    if not specs:
        raise InputError("no encoders given", "name at least one with -e SPEC (the first is the baseline)")
    check_specs(specs, list(contexts), settings.runtimes)
    if settings.device != "cpu" and any(r != "torch" for r in settings.runtimes):
        raise InputError(
            "ONNX Runtime rows are measured on the CPU", "use --device cpu with --runtime onnx/int8"
        )
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="anatomy-cost-") as tmp:
            return measure_costs(specs, contexts, settings, tmp, progress)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    torch_rows: dict[tuple[str, int], dict[str, Any]] = {}
    for spec, context, runtime, extra in _configs(specs, list(dict.fromkeys(contexts)), settings, out_dir):
        progress(f"{spec} at context {context or 'default'} ({runtime})")
        config = {"spec": spec, "context": context, "runtime": runtime, **extra,
                  **{k: v for k, v in asdict(settings).items() if k not in ("runtimes", "timeout_s")}}  # fmt: skip
        config["batches"] = sorted(set(settings.batches))
        try:
            if "error" in extra:
                raise extra.pop("error")
            measured = run_child(config, settings.timeout_s)
        except EncoderError as error:
            log.info(
                "%s", error.message
            )  # kept in `failures`: shown with the table, an error if none measured
            failures.append({"encoder": spec, "context": context, "runtime": runtime, "error": error.message})
            continue
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
        rows.append(_with_bytes(row, settings))
    if not rows:
        raise EncoderError(str(failures[0]["error"]), "no configuration could be measured")
    add_ratios(rows)
    table = CostTable(
        machine=machine(settings.device, settings.threads), method=METHOD, settings=asdict(settings),
        rows=rows, paper={"device": PAPER_DEVICE, "source": PAPER_SOURCE, "texts_per_s": PAPER_TEXTS_PER_S},
        failures=failures,
    )  # fmt: skip
    table.warnings = warnings_of(table)  # shown with the table (the CLI) and as a finding (the report)
    return table


def warnings_of(table: CostTable) -> list[str]:
    out = []
    busy_rows = [_label(r) for r in table.rows if r.get("busy")]
    if busy_rows:
        loads = max(max(r["load_before"][0], r["load_after"][0]) for r in table.rows if r.get("busy"))
        out.append(
            f"the machine was busy while measuring {', '.join(busy_rows)} (1-min load average up to {loads:.1f} "
            f"on {table.machine['cores_available']} cores): latency and throughput include other work; "
            "measure again on a quiet machine"
        )
    shaky = [_label(r) for r in table.rows if not r.get("latency_reliable", True)]
    if shaky:
        out.append(
            f"batch-1 latency of {', '.join(shaky)} did not settle within {table.settings['max_repeats']} calls "
            f"(spread above {table.settings['max_spread']:.0%} of the median): marked unreliable"
        )
    return out


def _label(row: dict) -> str:
    return f"{row['encoder']} @ {row['context']} ({row['runtime']})"


def _with_bytes(row: dict, settings: CostSettings) -> dict:
    n = row.setdefault("parameters", None)
    if n is not None:
        row["weight_bytes"] = {"fp32": 4 * n, "fp16": 2 * n, "int8": n}
    key = paper_key(row["encoder"])
    measured_like_paper = (
        key is not None and row["runtime"] == "torch" and row["context"] == paper.THROUGHPUT_CONTEXT[key]
    )
    row["paper_texts_per_s"] = PAPER_TEXTS_PER_S[key] if key is not None and measured_like_paper else None
    loads = [x for x in (row.get("load_before"), row.get("load_after")) if x]
    row["busy"] = any(busy(x[0], settings.threads, available_cores()) for x in loads)
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
            "baseline": _label(base),
            "parameters": ratio(row.get("parameters"), base.get("parameters")),
            "model_mib": ratio(model_mib(row), model_mib(base)),
            "peak_batch_mib": ratio(row["peak_batch_mib"], base["peak_batch_mib"]),
            "latency_p50": ratio(row["latency_ms_p50"], base["latency_ms_p50"]),
            "texts_per_s": {b: ratio(v, base["texts_per_s"].get(b)) for b, v in row["texts_per_s"].items()},
        }
        key, base_key = paper_key(row["encoder"]), paper_key(base["encoder"])
        if row["paper_texts_per_s"] and key and base_key and row["runtime"] == "torch":
            row["ratios"]["paper_texts_per_s"] = PAPER_TEXTS_PER_S[key] / PAPER_TEXTS_PER_S[base_key]


def model_mib(row: dict) -> float:
    """Resident memory the loaded model adds over the bare runtime."""
    return row["rss_loaded_mib"] - row["rss_runtime_mib"]
