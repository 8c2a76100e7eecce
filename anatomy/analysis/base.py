"""What an analysis is: one object that the CLI, the audit, the report and `make reports` all iterate.

An analysis module defines a frozen `Params` dataclass (every default, once; CLI options are generated from
its fields), a `Result` dataclass (typed fields; `to_json`/`from_json` with a schema version), and an
`Analysis` subclass with:

    name, title, needs          what it is called and what it reads (see Need)
    compute(inputs, params)     -> Result (pure: arrays in, numbers out; no printing, no files)
    figures(result)             -> {stem: matplotlib Figure}; saved as OUT/figures/<stem>.png
    findings(result)            -> [Finding] with thresholds named as module constants
    paper_rows(result)          -> [PaperRow]: our number beside the study's, each cited once in anatomy.paper
    summary(result)             -> lines the CLI prints (plain text; the CLI escapes them)
    tables(result)              -> extra report tables (the report adds paper rows and "all numbers" itself)
    not_applicable(inputs)      -> None, or why the analysis does not apply to these inputs (the audit
                                   reports "not applicable" instead of a failure)

`Analysis` is generic over its Params and Result (`class Dims(Analysis[DimsParams, DimsResult])`), so mypy
checks compute/findings/figures against them. Registering it is one line in anatomy/analysis/__init__.py.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

from anatomy.errors import AnatomyError, InputError
from anatomy.findings import Finding


class Need(enum.Enum):
    """What an analysis reads. The runner provides exactly these in Inputs."""

    CORPUS = "corpus"  # a corpus Parquet file (inputs.corpus)
    ENCODER = "encoder"  # one trained encoder (inputs.encoder) and its embedding store (inputs.store)
    PAIR = "pair"  # a teacher and a student (inputs.teacher, inputs.student and their stores)
    EMBEDDINGS = "embeddings"  # pooled outputs: of the encoder over the corpus, or a saved array


# ------------------------------------------------------------------------------------------------ params


# The audit options that set Params fields marked with them (option(audit=...)): `anatomy audit --sample N
# --seed S` sets every field marked "sample" / "seed" in every analysis it runs, and nothing else.
AUDIT_MARKERS = ("sample", "seed")
SEED_MAX = 2**32 - 1


def option(help: str, *, flag: str | None = None, min: float | None = None, max: float | None = None,
           min_open: bool = False, choices: Sequence[str] | None = None, cli: bool = True,
           excludes: str | None = None, audit: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Field metadata for a Params field: how it appears on the command line and its allowed range.

    min/max are checked before any work (exit 2 naming the option and the range); min_open excludes min;
    excludes names a field that may not be given together with this one (on the command line); audit names
    the `anatomy audit` option that sets this field (one of AUDIT_MARKERS; see sample_param, seed_param).
    """
    if audit is not None and audit not in AUDIT_MARKERS:
        raise ValueError(f"audit={audit!r}: not one of {AUDIT_MARKERS}")
    return {"help": help, "flag": flag, "min": min, "max": max, "min_open": min_open,
            "choices": tuple(choices) if choices else None, "cli": cli, "excludes": excludes,
            "audit": audit}  # fmt: skip


def param(default: Any, help: str, **kwargs: Any) -> Any:
    """A Params field with its default and option metadata (tuples and other immutables only)."""
    return field(default=default, metadata=option(help, **kwargs))


def sample_param(default: int, help: str, **kwargs: Any) -> Any:
    """A sample-size field that `anatomy audit --sample N` sets (min 1 unless given)."""
    return param(default, help, audit="sample", **{"min": 1, **kwargs})


def seed_param(help: str = "Seed of every sampling step.", default: int = 0) -> Any:
    """The seed field that `anatomy audit --seed S` sets."""
    return param(default, help, audit="seed", min=0, max=SEED_MAX)


def audit_fields(params_cls: type) -> dict[str, str]:
    """field name -> the audit option (marker) that sets it, for the marked fields of a Params class."""
    return {f.name: f.metadata["audit"] for f in dataclasses.fields(params_cls) if f.metadata.get("audit")}


def flag_of(f: dataclasses.Field[Any]) -> str:
    """The command-line option of a Params field: --NAME with dashes, or the flag its metadata names."""
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


def check_params(params: Any) -> None:
    """Raise InputError naming the field and its range when a value is outside it (NaN never is inside)."""
    import math

    for f in dataclasses.fields(params):
        meta = f.metadata
        value = getattr(params, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if v is None or isinstance(v, bool):
                continue
            name = flag_of(f)
            if meta.get("choices") and v not in meta["choices"]:
                raise InputError(f"{name}: '{v}' is not one of {', '.join(meta['choices'])}")
            if not isinstance(v, int | float):
                continue
            lo, hi = meta.get("min"), meta.get("max")
            bad = isinstance(v, float) and not math.isfinite(v)
            bad = bad or (lo is not None and (v <= lo if meta.get("min_open") else v < lo))
            bad = bad or (hi is not None and v > hi)
            if bad:
                raise InputError(f"{name}: {v} is outside the allowed range {describe_range(meta)}")
    if hasattr(params, "check"):  # a rule across values or one a range cannot state (InputError)
        params.check()


def describe_range(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    left = "(" if meta.get("min_open") else "["
    return f"{left}{'-inf' if lo is None else _num(lo)}, {'inf' if hi is None else _num(hi)}]"


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


# ------------------------------------------------------------------------------------------------ results


@dataclass
class Result:
    """Base of every analysis result: JSON round trip through the dataclass fields, with a schema version.

    Fields whose metadata has json=False are kept in memory for figures (e.g. a cosine matrix) but not
    written. Nested dataclasses, lists and dicts of them are rebuilt by from_json from the type hints.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        from anatomy.io import to_jsonable

        return {"schema_version": self.SCHEMA_VERSION, **to_jsonable(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        version = data.get("schema_version")
        if version != cls.SCHEMA_VERSION:
            raise InputError(
                f"results schema version {version!r}, this version reads {cls.SCHEMA_VERSION}",
                "rerun the analysis to rebuild its results",
            )
        built: Self = _build(cls, data)
        return built


AnalysisResult = Result  # the base under a name that the Analysis class attribute `Result` does not shadow


def transient(default: Any = None) -> Any:
    """A Result field kept in memory for figures but not written to JSON."""
    return field(default=default, metadata={"json": False}, repr=False, compare=False)


def _build(tp: Any, value: Any) -> Any:
    """value (plain JSON) as type tp: dataclasses, list[...], dict[str, ...], Optional, scalars."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if origin in (list, Sequence, tuple):
        (arg, *_) = typing.get_args(tp) or (Any,)
        built = [_build(arg, v) for v in value]
        return tuple(built) if origin is tuple else built
    if origin in (dict, Mapping):
        _, arg = typing.get_args(tp) or (str, Any)
        return {k: _build(arg, v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        kwargs = {
            f.name: _build(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.metadata.get("json", True) and f.name in value
        }
        return tp(**kwargs)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


# ------------------------------------------------------------------------------------------------ inputs


@dataclass
class Inputs:
    """What the runner hands an analysis: only what its `needs` asked for is set."""

    corpus: Path | None = None
    encoder: Any = None  # anatomy.encoders.base.TextEncoder
    store: Any = None  # anatomy.embed_store.EmbeddingStore of `encoder`
    teacher: Any = None
    student: Any = None
    teacher_store: Any = None
    student_store: Any = None
    embeddings: Path | None = None  # a saved [N, D] .npy instead of encoder + corpus
    out_dir: Path | None = None  # where the analysis may keep a cache (e.g. tokens.parquet)
    progress: Callable[[str], None] = lambda _message: None

    def need_corpus(self) -> Path:
        if self.corpus is None:
            raise InputError("this analysis needs a corpus", "give --corpus CORPUS.parquet")
        return self.corpus


# ------------------------------------------------------------------------------------------------ report


@dataclass(frozen=True)
class PaperRow:
    """One comparison row: what is measured, our value (formatted), the study's value, and where it comes from."""

    measure: str
    ours: str
    paper: str = "–"
    source: str = ""  # where in the study the number comes from (anatomy.paper)

    @classmethod
    def of(cls, measure: str, ours: str, cited: Any = None) -> PaperRow:
        """A row citing an anatomy.paper.Cited number (None: the study has no such number)."""
        if cited is None:
            return cls(measure, ours)
        return cls(measure, ours, str(cited), cited.where)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


# ----------------------------------------------------------------------------------------------- analysis


class NotApplicable(AnatomyError):
    """The analysis does not apply to these inputs (e.g. positions on an encoder without a position table)."""


P = TypeVar("P")
R = TypeVar("R", bound=AnalysisResult)


class Analysis(Generic[P, R]):
    """One analysis. Subclasses set the class attributes and override compute (and what else applies)."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""  # one sentence for `anatomy NAME --help`
    needs: ClassVar[frozenset[Need]]
    optional: ClassVar[frozenset[Need]] = frozenset()  # used when given, not required
    Params: type[P]
    Result: type[R]
    # run in `anatomy audit` by default (False for analyses that cost a lot or need extra inputs)
    in_audit: ClassVar[bool] = True
    # `anatomy NAME` is generated from Params (False: a hand-written command of that name serves it, in anatomy/cli)
    generated_command: ClassVar[bool] = True

    def compute(self, inputs: Inputs, params: P) -> R:
        raise NotImplementedError

    def not_applicable(self, inputs: Inputs) -> str | None:
        """Why the analysis does not apply to these inputs (None: it applies); checked before compute."""
        return None

    def figures(self, result: R) -> dict[str, Any]:
        """{stem: matplotlib Figure}; the runner saves each as figures/NAME.png or figures/NAME_STEM.png."""
        return {}

    def findings(self, result: R, section: str) -> list[Finding]:
        return []

    def paper_rows(self, result: R) -> list[PaperRow]:
        return []

    def tables(self, result: R) -> list[Table]:
        return []

    def summary(self, result: R) -> list[str]:
        return []

    def input_files(self, params: P) -> dict[str, Path]:
        """Files beyond the corpus that the result depends on (recorded by name and hash in its provenance)."""
        return {}

    def write_artefacts(self, result: R, folder: Path) -> None:
        """Write what the analysis produces besides results and figures (e.g. a vocabulary) into folder (a
        staging folder: the runner commits its files with the results and figures)."""

    def params_from(self, values: Mapping[str, Any]) -> P:
        """Params with the given fields set (unknown names are a programming error), checked against ranges."""
        params = self.Params(**{k: v for k, v in values.items() if v is not None})
        check_params(params)
        return params
