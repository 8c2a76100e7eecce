"""One command per registered analysis, generated from the analysis itself: its `needs` give the input
options (--corpus, --encoder, --teacher/--student, --embeddings), its Params fields the rest (help, range and
choices from the field metadata). Nothing here names an analysis."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from anatomy.cli.common import (
    CorpusOpt,
    DeviceOpt,
    JsonOpt,
    OutOpt,
    QuietOpt,
    check_out_dir,
    guarded,
    out,
    print_json,
    print_table,
    say,
)


def _option_type(tp: Any) -> Any:
    """The (optional) annotation typer sees for a Params field type."""
    if typing.get_origin(tp) is tuple:  # repeatable, each may be comma-separated: --context 8,16 --context 32
        return list[str] | None
    inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return inner[0] | None


def _parse_tuple(name: str, values: list[str], item: type) -> tuple:
    parsed = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    parsed.append(item(part))
                except ValueError:
                    raise typer.BadParameter(f"'{part}' is not a {item.__name__}", param_hint=name) from None
    if not parsed:
        raise typer.BadParameter("give at least one value", param_hint=name)
    return tuple(parsed)


def _param_options(params_cls) -> list[tuple[str, inspect.Parameter, dataclasses.Field]]:
    hints = typing.get_type_hints(params_cls)
    options = []
    for f in dataclasses.fields(params_cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag = _flag(f.name, params_cls)
        tp = hints[f.name]
        kwargs: dict[str, Any] = {"help": _help(meta, f.default)}
        annotation: Any
        if tp is bool:  # a flag, off by default
            annotation, default = bool, f.default
        else:  # None: the Params default applies
            annotation, default = _option_type(tp), None
            if meta.get("choices") and typing.get_origin(tp) is not tuple:  # a tuple's items: check_params
                annotation = typing.Literal[tuple(meta["choices"])] | None
        decl = typer.Option(flag, **kwargs)
        param = inspect.Parameter(
            f"p_{f.name}",
            inspect.Parameter.KEYWORD_ONLY,
            default=default,
            annotation=Annotated[annotation, decl],
        )
        options.append((f.name, param, f))
    return options


def _flag(name: str, params_cls) -> str:
    from anatomy.analysis.base import flag_of

    return flag_of(next(f for f in dataclasses.fields(params_cls) if f.name == name))


def _help(meta: Any, default: Any) -> str:
    """The field's help, its range and its default. Typer renders help as rich markup, where "[default: 5]"
    would be read as a style tag and vanish: the bracket is escaped."""
    from anatomy.analysis.base import describe_range

    text = meta.get("help", "")
    if meta.get("min") is not None or meta.get("max") is not None:
        text += f" Range {describe_range(meta)}."
    shown = _default_text(default)
    return f"{text} \\[default: {shown}]" if shown is not None else text


def _default_text(default: Any) -> str | None:
    """The Params default as `--help` shows it (None: nothing shown, for off flags and None)."""
    if default is None or default is False or default is dataclasses.MISSING:
        return None
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or None  # an empty tuple shows no default
    return str(default) if default != "" else None


def _input_options(analysis) -> list[inspect.Parameter]:
    from anatomy.analysis.base import Need

    kw = inspect.Parameter.KEYWORD_ONLY
    needs, optional = analysis.needs, analysis.optional
    params = [inspect.Parameter("out_dir", kw, annotation=OutOpt)]
    if Need.PAIR in needs:
        params += [
            inspect.Parameter(
                "teacher", kw, annotation=Annotated[str, typer.Option(help="Teacher encoder spec.")]
            ),
            inspect.Parameter(
                "student", kw, annotation=Annotated[str, typer.Option(help="Student encoder spec.")]
            ),
        ]
    if needs & {Need.ENCODER, Need.EMBEDDINGS}:
        help_text = "Encoder spec (see `anatomy encoders`)."
        if Need.EMBEDDINGS in needs:
            help_text += " With --corpus; or give --embeddings instead."
        params.append(inspect.Parameter(
            "encoder", kw, default="minilm" if Need.EMBEDDINGS not in needs else None,
            annotation=Annotated[str | None, typer.Option("--encoder", "-e", help=help_text)],
        ))  # fmt: skip
    if Need.EMBEDDINGS in needs:
        params.append(inspect.Parameter(
            "embeddings", kw, default=None,
            annotation=Annotated[Path | None, typer.Option(dir_okay=False,
                                                           help="A saved [N, D] .npy array instead of an encoder.")],
        ))  # fmt: skip
    corpus_required = Need.CORPUS in needs or (Need.PAIR in needs)
    corpus_optional = Need.CORPUS in optional or Need.EMBEDDINGS in needs
    if corpus_required or corpus_optional:
        default = inspect.Parameter.empty if corpus_required and not corpus_optional else None
        annotation = (
            CorpusOpt
            if default is inspect.Parameter.empty
            else typing.cast(Any, Annotated)[Path | None, *typing.get_args(CorpusOpt)[1:]]
        )
        params.append(inspect.Parameter("corpus", kw, default=default, annotation=annotation))
    if needs & {Need.ENCODER, Need.EMBEDDINGS, Need.PAIR}:
        params.append(inspect.Parameter("device", kw, default=None, annotation=DeviceOpt))
    return params


def build_command(analysis):
    """A typer command function for one analysis (its signature built from needs and Params)."""
    field_options = _param_options(analysis.Params)
    kw = inspect.Parameter.KEYWORD_ONLY
    common = [inspect.Parameter("as_json", kw, default=False, annotation=JsonOpt),
              inspect.Parameter("quiet", kw, default=False, annotation=QuietOpt)]  # fmt: skip
    signature = inspect.Signature(_input_options(analysis) + [p for _, p, _ in field_options] + common)
    hints = typing.get_type_hints(analysis.Params)

    def command(**kwargs):
        check_out_dir(kwargs["out_dir"])
        values = {}
        for name, param, _ in field_options:
            value = kwargs.pop(param.name)
            if typing.get_origin(hints[name]) is tuple and value is not None:
                item = typing.get_args(hints[name])[0]
                value = _parse_tuple(_flag(name, analysis.Params), value, item)
            values[name] = value
        params = _params(analysis, values)
        result = run_command(analysis, params, **kwargs)
        if kwargs["as_json"]:
            print_json(result.to_json())
            return
        for table in analysis.tables(result):
            print_table(_rich_table(table))
        for line in analysis.summary(result):
            out.print(line)
        out.print(f"written: {Path(kwargs['out_dir']) / 'results' / (analysis.name + '.json')} and figures/")

    command.__signature__ = signature  # type: ignore[attr-defined]  # typer reads it
    command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    command.__name__ = f"{analysis.name}_cmd"
    command.__doc__ = analysis.description or analysis.title
    return guarded(command)


def _params(analysis, values: dict):
    """Params from the options given (None: not given, the default applies), checked before any work."""
    from anatomy.analysis.base import check_params
    from anatomy.errors import InputError

    for f in dataclasses.fields(analysis.Params):
        other = f.metadata.get("excludes")
        if other and values.get(f.name) not in (None, False) and values.get(other) is not None:
            raise typer.BadParameter(
                f"give {_flag(f.name, analysis.Params)} or {_flag(other, analysis.Params)}, not both"
            )
    params = analysis.Params(**{k: v for k, v in values.items() if v is not None})
    try:
        check_params(params)
    except InputError as error:
        raise typer.BadParameter(error.message) from None
    return params


def _rich_table(table):
    from rich.table import Table

    rendered = Table(title=table.caption or None)
    for i, col in enumerate(table.columns):
        rendered.add_column(col, justify="left" if i == 0 else "right")
    for row in table.rows:
        rendered.add_row(*row)
    return rendered


def run_command(analysis, params, *, out_dir, quiet, as_json, corpus=None, encoder=None, embeddings=None,
                teacher=None, student=None, device=None):  # fmt: skip
    """Load what the analysis needs (reusing an `anatomy embed` cache beside the corpus) and run it."""
    from anatomy.analysis import runner
    from anatomy.analysis.base import Inputs, Need

    progress = say(quiet)
    needs = analysis.needs
    if Need.EMBEDDINGS in needs and (encoder is None) == (embeddings is None):
        raise typer.BadParameter(
            "give --encoder SPEC --corpus CORPUS, or --embeddings FILE.npy", param_hint="--encoder"
        )
    if embeddings is not None and corpus is not None and Need.CORPUS not in needs | analysis.optional:
        raise typer.BadParameter(  # a saved array has no sources: the corpus would be silently ignored
            "--embeddings FILE.npy is read on its own; for groups per source give --encoder SPEC --corpus "
            "CORPUS instead",
            param_hint="--corpus",
        )
    if Need.EMBEDDINGS in needs and encoder is not None and corpus is None:
        raise typer.BadParameter("--encoder needs --corpus (the prompts to embed)", param_hint="--corpus")
    inputs = Inputs(corpus=corpus, embeddings=embeddings, progress=progress)
    if encoder is not None:
        inputs.encoder, inputs.store = _load(encoder, device, corpus, keep_tokens=False)
    if Need.PAIR in needs:
        inputs.teacher, inputs.teacher_store = _load(teacher, device, corpus, keep_tokens=True)
        inputs.student, inputs.student_store = _load(student, device, corpus, keep_tokens=True)
    return runner.run(analysis, inputs, params, out_dir)


def _load(spec: str, device, corpus, keep_tokens: bool):
    from anatomy.embed_store import EmbeddingStore, default_cache
    from anatomy.encoders.registry import load

    encoder = load(spec, device=device)
    store = EmbeddingStore(encoder, keep_tokens=keep_tokens)
    if corpus is not None:
        store.load_cache(default_cache(corpus, spec), corpus)
    return encoder, store


def register(app: typer.Typer) -> None:
    from anatomy.analysis import ANALYSES

    for analysis in ANALYSES.values():
        if not analysis.generated_command:
            continue
        app.command(analysis.name, help=_command_help(analysis))(build_command(analysis))


def _command_help(analysis) -> str:
    return analysis.description or analysis.title
