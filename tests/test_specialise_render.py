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


@pytest.mark.parametrize("n", [4, 17, 20])
def test_knn_at_10_is_left_out_below_21_prompts_never_shrunk(n):
    """kNN@10 used to shrink k to (n - 1) // 2 (1 on 4 prompts, 8 on 17) under the kNN@10 label; like check and
    distill, a set too small for k = 10 now has no figure, and the bill says why."""
    import numpy as np

    from anatomy.specialise.bill import quality
    from anatomy.specialise.render import knn_notes, quality_tables, summary_table

    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(n, 8)).astype(np.float32)
    q = quality({"pooled": pooled}, pooled, np.arange(n))
    assert q.prompts == n and q.knn_overlap10 is None and q.pooled_cosine == pytest.approx(1.0)
    bill = _bill((1,))
    from anatomy.specialise.bill import Risk

    bill.candidates[0].quality[TEST_SET] = q
    bill.candidates[0].risk[TEST_SET] = Risk(n, 0.0, 0.0)
    summary = summary_table(bill)
    assert summary.rows[1][summary.columns.index("kNN@10")] == "–"
    by_set = quality_tables(bill)[0]
    assert by_set.rows[0][by_set.columns.index("kNN@10")] == "–"
    assert knn_notes(bill) == [f"kNN@10 not measured on {TEST_SET}: {n} prompts, it needs at least 21 (on fewer "
                               "the overlap is high whatever the student does)."]  # fmt: skip


def test_knn_at_10_on_21_prompts_is_k_10():
    import numpy as np

    from anatomy.metrics.similarity import knn_overlap
    from anatomy.specialise.bill import quality
    from anatomy.specialise.render import knn_notes

    rng = np.random.default_rng(1)
    ref, stu = rng.normal(size=(21, 8)), rng.normal(size=(21, 8))
    q = quality({"pooled": ref}, stu, np.arange(21))
    assert q.knn_overlap10 == pytest.approx(float(knn_overlap(ref, stu, 10).mean()))
    bill = _bill((1,))
    bill.candidates[0].quality[TEST_SET] = q
    assert knn_notes(bill) == []


def test_the_least_limit_accepted_is_the_least_that_splits(tmp_path):
    """--limit 20 passed the option check and then failed with "give at least 40 distinct prompts": the check
    now asks for what the split needs (20 train prompts after the test share), the split names the same."""
    from anatomy.cli import app
    from anatomy.errors import OptionError
    from anatomy.specialise.plan import MIN_TRAIN_PROMPTS, SpecialiseConfig, check, min_prompts, n_test_for

    for share in (0.01, 0.1, 0.25, 0.49):
        least = min_prompts(share)
        assert least - n_test_for(least, share) >= MIN_TRAIN_PROMPTS
        assert (least - 1) - n_test_for(least - 1, share) < MIN_TRAIN_PROMPTS
    assert min_prompts(0.1) == 22
    check(SpecialiseConfig(limit=22))
    with pytest.raises(OptionError, match=">= 22, got 21"):
        check(SpecialiseConfig(limit=21))
    result = CliRunner().invoke(app, ["specialise", "--limit", "20", "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2 and "--limit" in result.output and ">= 22" in result.output
    assert not (tmp_path / "o").exists()
