"""The cost analysis (Need.PAIR): the measured rows of `anatomy cost` beside the agreement quality columns,
a JSON round trip, a frontier figure; quality is exact for a student compared with itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from anatomy.analysis.base import Inputs, Need
from anatomy.cost.analysis import CostAnalysis, Result
from anatomy.encoders.registry import load
from anatomy.encoders.student import StudentConfig, build_student, save_student


def _student(folder, seed, **shape):
    cfg = StudentConfig("custom", context_length=16, **shape)
    torch.manual_seed(seed)
    save_student(build_student(cfg), cfg, folder, provenance={})
    return load(f"student:{folder}", device="cpu")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    return _student(root / "t", 0, layers=2, width=64, heads=2), _student(
        root / "s", 1, layers=1, width=32, heads=2
    )


def test_cost_analysis_measures_the_pair_and_its_quality(pair, tmp_path):
    teacher, student = pair
    analysis = CostAnalysis()
    assert analysis.needs == frozenset({Need.PAIR}) and analysis.name == "cost"
    params = analysis.params_from({"sample": 40, "repeats": 2, "batches": (1, 4)})
    result = analysis.compute(Inputs(teacher=teacher, student=student), params)
    assert [r["encoder"] for r in result.rows] == [teacher.name, student.name]
    assert result.rows[1]["ratios"]["parameters"] == pytest.approx(
        student.n_parameters / teacher.n_parameters
    )
    assert result.n == 40 and 0 <= result.knn_overlap <= 1 and result.pooled_cosine is not None
    again = Result.from_json(result.to_json())
    assert again.rows == result.rows and again.knn_overlap == result.knn_overlap
    fig = analysis.figures(result)["cost_frontier"]
    assert len(fig.axes) == 2
    assert any("quality on 40" in line for line in analysis.summary(result))
    assert analysis.findings(result, "cost")[0].key == "cost.student_vs_teacher"


def test_quality_from_stores_is_exact_for_identical_spaces(pair):
    from anatomy.cost.analysis import Params, quality

    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(50, 8)).astype(np.float32)
    store = SimpleNamespace(pooled=pooled)
    cosine, overlap, n, notes = quality(Inputs(teacher_store=store, student_store=store), Params(sample=30))
    assert cosine == pytest.approx(1.0) and overlap == 1.0 and n == 30 and notes == []
    other = SimpleNamespace(pooled=rng.normal(size=(50, 4)).astype(np.float32))
    cosine, overlap, _, notes = quality(Inputs(teacher_store=store, student_store=other), Params(sample=30))
    assert cosine is None and overlap < 1.0 and "widths differ" in notes[0]
