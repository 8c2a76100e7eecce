"""`anatomy cost`: parameters, weight bytes, measured memory, latency and throughput of encoders side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anatomy.cli.common import check_out_dir, echo, err, print_json

MAX_BATCH = 4096


def _batches(value: str) -> tuple[int, ...]:
    try:
        batches = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a comma-separated list of integers (e.g. 1,64)") from None
    if not batches or batches[0] < 1 or batches[-1] > MAX_BATCH:
        raise typer.BadParameter(f"batch sizes must lie in [1, {MAX_BATCH}], got '{value}'")
    return batches


def cost_cmd(
    encoders: Annotated[
        list[str],
        typer.Option(
            "--encoder", "-e", help="Encoder spec (repeat; the first is the baseline), or FILE.onnx."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder: cost.json, cost.txt, onnx/.")],
    contexts: Annotated[
        list[int] | None,
        typer.Option(
            "--context", "-L", min=1, max=512, help="Context length (repeat); default: each encoder's own."
        ),
    ] = None,
    batch: Annotated[
        str, typer.Option(help="Batch sizes: 1 gives latency, larger ones throughput.")
    ] = "1,64",
    device: Annotated[str, typer.Option(help="cpu | cuda.")] = "cpu",
    runtimes: Annotated[
        list[str] | None,
        typer.Option("--runtime", help="torch | onnx | int8 (repeat; onnx/int8 export each encoder first)."),
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, max=1000, help="Untimed batch-1 calls first.")] = 3,
    repeats: Annotated[int, typer.Option(min=1, max=100_000, help="Timed batch-1 calls (p50, p95).")] = 20,
    throughput_repeats: Annotated[
        int, typer.Option(min=1, max=10_000, help="Timed whole batches per larger batch size.")
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(min=1, max=1024, help="Intra-op threads per measuring process (default: torch's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """What each encoder costs on this machine: memory, latency, throughput, with ratios to the first."""
    from anatomy.cost.compare import RUNTIMES, CostSettings, run_cost, table_lines

    check_out_dir(out_dir)
    batches = _batches(batch)
    if device not in ("cpu", "cuda"):
        raise typer.BadParameter(f"'{device}' is not cpu or cuda", param_hint="--device")
    runtimes = runtimes or ["torch"]
    for runtime in runtimes:
        if runtime not in RUNTIMES:
            raise typer.BadParameter(
                f"'{runtime}' is not one of {', '.join(RUNTIMES)}", param_hint="--runtime"
            )
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            from anatomy.errors import InputError

            raise InputError("--device cuda: no CUDA device is visible", "use --device cpu")
    settings = CostSettings(
        batches=batches, device=device, runtimes=tuple(dict.fromkeys(runtimes)), warmup=warmup,
        repeats=repeats, throughput_repeats=throughput_repeats, threads=threads,
    )  # fmt: skip

    def progress(message: str) -> None:
        if not quiet:
            err.print(f"measuring {message} ...")

    result = run_cost(encoders, list(dict.fromkeys(contexts or [])), settings, out_dir, progress)
    from anatomy.io import write_json, write_text

    write_json(Path(out_dir) / "cost.json", result)
    lines = table_lines(result)
    write_text(Path(out_dir) / "cost.txt", "\n".join(lines) + "\n")
    if as_json:
        print_json(result)
    else:
        echo("\n".join(lines))
