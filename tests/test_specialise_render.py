"""The specialise bill's views and options on a synthetic bill (no run): the throughput column names the batch it
shows, a clamped batch size is noted, a bad --student is a usage error (hostile-user sweep items 2 and 5)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from anatomy.specialise.bill import Cost, Quality, Row
from anatomy.specialise.data_stages import TEST_SET


def _cost(batches: tuple[int, ...]) -> Cost:
    return Cost("torch", 1.0, 1.2, {str(b): 100.0 * b for b in batches}, 10.0, 5.0,
                {"latency_p50": 1.0, "texts_per_s": {str(b): 1.0 for b in batches}, "peak_batch_mib": 1.0})  # fmt: skip


def _bill(batches: tuple[int, ...], asked: int = 64, used: int = 64):
    teacher = Row("minilm", "teacher", 9, 30522, 1000, {}, 4000, cost=[_cost(batches)])
    student = Row("mini", "student", 9, 30522, 100, {}, 400, cost=[_cost(batches)],
                  quality={TEST_SET: Quality(10, 0.9, 0.9, 0.5)},
                  training={"steps": 10, "batch_size": used, "device": "cpu", "train_seconds": 1.0})  # fmt: skip
    return SimpleNamespace(teacher=teacher, candidates=[student], config={"batch_size": asked},
                           training_plan={"steps": 10, "how": "--steps"})  # fmt: skip


@pytest.mark.parametrize(("batches", "header", "cell"), [((1,), "texts/s @1 (x)", "100 (1x)"),
                                                         ((1, 256), "texts/s @256 (x)", "25,600 (1x)"),
                                                         ((1, 64), "texts/s @64 (x)", "6,400 (1x)")])  # fmt: skip
def test_the_throughput_column_names_the_batch_it_shows(batches, header, cell):
    from anatomy.specialise.render import summary_table

    table = summary_table(_bill(batches))
    column = table.columns.index(header)  # ValueError: the header names another batch
    assert [row[column] for row in table.rows] == [cell, cell]
    assert not [c for c in table.columns if c.startswith("texts/s") and c != header]


def test_a_clamped_batch_size_is_noted_in_the_bill():
    from anatomy.specialise.render import _training_line, batch_note

    assert batch_note(_bill((1, 64))) is None
    note = batch_note(_bill((1, 64), asked=64, used=33))
    assert note is not None and "--batch-size 64 was clamped to the 33 prompts" in note
    assert note in _training_line(_bill((1, 64), asked=64, used=33))


def test_the_batch_is_clamped_to_what_the_distillation_trains_on():
    from anatomy.specialise.plan import SpecialiseConfig, batch_for

    # 36 train prompts: the distillation holds out max(1, 36 // 10) = 3 for validation and trains on 33
    assert batch_for(SpecialiseConfig(), 36) == 33
    assert batch_for(SpecialiseConfig(batch_size=16), 36) == 16
    assert batch_for(SpecialiseConfig(), 50_000) == 64


def test_an_unknown_student_is_a_usage_error_naming_the_choices(tmp_path):
    from anatomy.cli import app

    result = CliRunner().invoke(app, ["specialise", "--student", "bogus", "--out", str(tmp_path / "s"), "-q"])
    assert result.exit_code == 2, result.output
    assert all(choice in result.output for choice in ("s0", "s1", "l", "CONFIG.json"))
    assert not (tmp_path / "s").exists()
