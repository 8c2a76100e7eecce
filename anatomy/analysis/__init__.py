"""Analyses: one unit each (anatomy/analysis/base.py), registered here. The CLI, the audit, the report and
`make reports` iterate ANALYSES; none of them names an analysis. Adding one = one module + one line below.

The pure math stays in its own modules (intrinsic_dim.py, positional.py, ...), as arrays in, dataclasses out.
"""

from __future__ import annotations

from anatomy.analysis.agreement import StudentTeacherAgreement
from anatomy.analysis.base import Analysis
from anatomy.analysis.cost import CostAnalysis
from anatomy.analysis.dims import Dims
from anatomy.analysis.positions import Positions
from anatomy.analysis.robustness import SoftmaxRobustness
from anatomy.analysis.spectrum import Spectrum
from anatomy.analysis.tokens import Tokens
from anatomy.analysis.vocab import VocabAnalysis

ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in (
        Tokens(),
        VocabAnalysis(),
        Positions(),
        Spectrum(),
        Dims(),
        SoftmaxRobustness(),
        StudentTeacherAgreement(),
        CostAnalysis(),
    )
}


def register(analysis: Analysis) -> Analysis:
    """Add an analysis at run time (plugins, tests); the CLI built afterwards includes it."""
    ANALYSES[analysis.name] = analysis
    return analysis


__all__ = ["ANALYSES", "Analysis", "register"]
