"""Analyses: one unit each (anatomy/analysis/base.py), registered here. The CLI, the audit, the report and
`make reports` iterate ANALYSES; none of them names an analysis. Adding one = one module + one line in _BUILTIN.

ANALYSES is built on first use (a module-level __getattr__), so importing anatomy.analysis.base or a math module
does not import every analysis: a room below the registry (cost, distill) may use the framework without a cycle.
The shared math lives in anatomy.metrics.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from anatomy.analysis.base import Analysis

# module:attribute of each built-in analysis, in the order the CLI, the audit and the report show them
_BUILTIN = (
    "anatomy.analysis.tokens:Tokens",
    "anatomy.analysis.vocab:VocabAnalysis",
    "anatomy.analysis.positions:Positions",
    "anatomy.analysis.spectrum:Spectrum",
    "anatomy.analysis.dims:Dims",
    "anatomy.analysis.robustness:SoftmaxRobustness",
    "anatomy.analysis.agreement:StudentTeacherAgreement",
    "anatomy.analysis.cost:CostAnalysis",
)

_registry: dict[str, Analysis[Any, Any]] | None = None

if TYPE_CHECKING:
    ANALYSES: dict[str, Analysis[Any, Any]]


def _analyses() -> dict[str, Analysis[Any, Any]]:
    global _registry
    if _registry is None:
        built: dict[str, Analysis[Any, Any]] = {}
        for entry in _BUILTIN:
            module, _, attr = entry.partition(":")
            analysis = getattr(importlib.import_module(module), attr)()
            check_unit(analysis)
            built[analysis.name] = analysis
        _registry = built
    return _registry


def __getattr__(name: str) -> Any:
    if name == "ANALYSES":
        return _analyses()
    raise AttributeError(f"module 'anatomy.analysis' has no attribute {name!r}")


def register(analysis: Analysis[Any, Any]) -> Analysis[Any, Any]:
    """Add an analysis at run time (plugins, tests); the CLI built afterwards includes it. A unit that breaks a
    rule every consumer relies on (a Result field the runner writes itself, Params not a frozen dataclass) is a
    programming error, raised here rather than on its first run."""
    check_unit(analysis)
    _analyses()[analysis.name] = analysis
    return analysis


def check_unit(analysis: Analysis[Any, Any]) -> None:
    import dataclasses

    from anatomy.io import RESERVED_RESULT_KEYS

    params = getattr(analysis, "Params", None)
    if not (dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen):  # type: ignore[union-attr]
        raise ValueError(f"analysis {analysis.name!r}: Params must be a frozen dataclass")
    fields = {f.name for f in dataclasses.fields(analysis.Result)}
    clash = sorted(fields & {*RESERVED_RESULT_KEYS, "schema_version"})
    if clash:
        raise ValueError(
            f"analysis {analysis.name!r}: Result fields {clash} are written by the runner; rename them"
        )


__all__ = ["ANALYSES", "Analysis", "register"]
