"""The one place `specialise` calls the cost library (anatomy.cost), so a change of its API touches only this
function: measure a list of encoder specs and ONNX files, each in a fresh process, with ratios to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from anatomy.specialise.plan import SpecialiseConfig

COST_WARMUP = 3


def measure_cost(
    specs: Sequence[str],
    cfg: SpecialiseConfig,
    out_dir: Path,
    progress: Callable[[int], None] = lambda _i: None,
) -> dict[str, Any]:
    """{machine, method, settings, rows}: one row per spec, in order (torch for encoder specs, the export's
    runtime for .onnx files), each with parameters (torch rows), memory, latency p50/p95 and throughput."""
    from unittest import mock

    import anatomy.cost.compare as compare
    from anatomy.cost.compare import CostSettings, run_cost
    from anatomy.specialise.cost_child import measure_child

    device = cfg.device or "cpu"
    settings = CostSettings(batches=cfg.cost_batches, device=device, runtimes=("torch",), warmup=COST_WARMUP,
                            repeats=cfg.cost_repeats, threads=cfg.threads)  # fmt: skip
    count = iter(range(1, len(specs) + 1))
    # anatomy.cost's child cannot tokenize for a specialised ONNX export yet: the same child, reading its vocabulary
    with mock.patch.object(compare, "run_child", measure_child):
        result = run_cost(
            list(specs), [], settings, out_dir, progress=lambda _m: progress(next(count, len(specs)))
        )
    if len(result["rows"]) != len(specs):
        raise AssertionError(f"cost returned {len(result['rows'])} rows for {len(specs)} specs")
    return result
