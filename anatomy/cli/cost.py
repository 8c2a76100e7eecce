"""`anatomy cost-table`: what any list of encoders costs on this machine, side by side (the `cost` pair
analysis, generated like every analysis, measures a teacher and a student with the same library function).

Its measuring options are generated from anatomy.analysis.cost.MeasureParams, exactly as the `cost`
command's are, so both take the same options with the same defaults (repeatable or comma-separated lists:
`--batch 1 --batch 64` is `--batch 1,64`). `anatomy cost -e A -e B ...`, the older form, is this command.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from anatomy.cli.common import JsonOpt, QuietOpt, check_device, check_out_dir, echo, err, guarded, print_json

NAME = "cost-table"
EncodersOpt = Annotated[
    list[str],
    typer.Option("--encoder", "-e", help="Encoder spec (repeat; the first is the baseline), or FILE.onnx."),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder: cost.json, cost.txt, onnx/.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (default: cpu).")]


def _command():
    from anatomy.analysis.cost import MeasureParams
    from anatomy.cli.analyses import _param_options, _params, _parse_tuple

    fields = _param_options(MeasureParams)
    hints = typing.get_type_hints(MeasureParams)
    kw = inspect.Parameter.KEYWORD_ONLY
    inputs = [inspect.Parameter("encoders", kw, annotation=EncodersOpt),
              inspect.Parameter("out_dir", kw, annotation=OutOpt),
              inspect.Parameter("device", kw, default=None, annotation=DeviceOpt)]  # fmt: skip
    common = [inspect.Parameter("as_json", kw, default=False, annotation=JsonOpt),
              inspect.Parameter("quiet", kw, default=False, annotation=QuietOpt)]  # fmt: skip

    def command(**kwargs) -> None:
        check_out_dir(kwargs["out_dir"])
        values = {}
        for name, param, f in fields:
            value = kwargs.pop(param.name)
            if typing.get_origin(hints[name]) is tuple and value is not None:
                value = _parse_tuple(
                    "--" + (f.metadata.get("flag") or name), value, typing.get_args(hints[name])[0]
                )
            values[name] = value
        params = _params(_Measure, values)
        device = check_device(kwargs["device"]) or "cpu"
        run(kwargs["encoders"], params, device, kwargs["out_dir"], kwargs["as_json"], kwargs["quiet"])

    class _Measure:  # what _params needs of an analysis
        Params = MeasureParams

    signature = inspect.Signature(inputs + [p for _, p, _ in fields] + common)
    command.__signature__ = signature  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    command.__doc__ = (
        "What each encoder costs on this machine: memory, latency, throughput, with ratios to the first."
    )
    return guarded(command)


def run(encoders: list[str], params, device: str, out_dir: Path, as_json: bool, quiet: bool) -> None:
    from anatomy.cost.compare import measure_costs
    from anatomy.cost.table import table_lines
    from anatomy.errors import EncoderError
    from anatomy.io import write_json, write_text

    def progress(message: str) -> None:
        if not quiet:
            err.print(f"measuring {message} ...")

    table = measure_costs(encoders, params.contexts, params.settings(device), out_dir, progress)
    result = table.to_json()
    write_json(Path(out_dir) / "cost.json", result)
    lines = table_lines(result)
    write_text(Path(out_dir) / "cost.txt", "\n".join(lines) + "\n")
    if as_json:
        print_json(result)
    else:
        echo("\n".join(lines))
    if table.failures:  # the rows measured are written; the ones that failed make it a failure
        first = table.failures[0]
        raise EncoderError(
            f"{len(table.failures)} configuration(s) not measured, e.g. {first['encoder']} ({first['runtime']}): "
            f"{first['error']}",
            f"the others are in {Path(out_dir) / 'cost.json'}",
        )


def register(app: typer.Typer) -> None:
    app.command(NAME)(_command())


class Group(TyperGroup):
    """The app's command group: `anatomy cost -e SPEC ...` (the form before the pair analysis took the name
    `cost`) runs `anatomy cost-table`; `anatomy cost --teacher ...` is the generated analysis command."""

    def resolve_command(self, ctx, args):
        if (
            args
            and args[0] == "cost"
            and any(a in ("-e", "--encoder") or a.startswith("--encoder=") for a in args)
        ):
            args = [NAME, *args[1:]]
        return super().resolve_command(ctx, args)
