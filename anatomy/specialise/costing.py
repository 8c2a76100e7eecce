"""The one place `specialise` calls the cost library (anatomy.cost.compare.measure_costs): measure a list of
encoder specs and ONNX exports, each in a fresh process, with ratios to the first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anatomy.errors import EncoderError
from anatomy.specialise.plan import SpecialiseConfig

if TYPE_CHECKING:
    from anatomy.cost.compare import SpecItem

COST_WARMUP = 3


def measure_cost(
    specs: Sequence[SpecItem],
    cfg: SpecialiseConfig,
    out_dir: Path,
    progress: Callable[[int], None] = lambda _i: None,
    optional: int = 0,
) -> dict[str, Any]:
    """{machine, method, settings, rows, ...}: one row per spec, in order (torch for encoder specs, the export's
    runtime for .onnx files, tokenized as its sidecar says; (spec, context) at that context), each with
    parameters (torch rows), memory, latency p50/p95 and throughput. A configuration that cannot be measured
    fails the stage (a bill with a row missing would compare the wrong things), except the first `optional`
    ones, which may be missing (listed in `failures`)."""
    from anatomy.cost.compare import CostSettings, measure_costs

    settings = CostSettings(batches=cfg.cost_batches, device=cfg.device or "cpu", runtimes=("torch",),
                            warmup=COST_WARMUP, repeats=cfg.cost_repeats)  # fmt: skip
    if cfg.threads:  # else the cost library's fixed default (one thread: steady timings on a busy machine)
        settings = dataclasses.replace(settings, threads=cfg.threads)
    count = iter(range(1, len(specs) + 1))
    table = measure_costs(
        list(specs), (), settings, out_dir, progress=lambda _m: progress(next(count, len(specs)))
    )
    allowed = {_key(item) for item in specs[:optional]}
    if any((f["encoder"], f["context"]) not in allowed for f in table.failures) or len(table.rows) + len(
        table.failures
    ) != len(specs):
        failed = "; ".join(
            f"{f.get('encoder')} ({f.get('runtime')}): {f.get('error')}" for f in table.failures
        )
        raise EncoderError(f"cost: {len(table.rows)} of {len(specs)} configurations measured ({failed})")
    return table.to_json()


def _key(item: SpecItem) -> tuple[str, int | None]:
    return (item, None) if isinstance(item, str) else (item[0], item[1])
