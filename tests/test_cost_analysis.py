"""The cost analysis (Need.PAIR): the measured rows of `anatomy cost` beside the agreement quality columns,
a JSON round trip, a frontier figure; quality is exact for a student compared with itself."""

from __future__ import annotations

import pytest
import torch

from anatomy.analysis.base import Inputs, Need
from anatomy.analysis.cost import CostAnalysis
from anatomy.analysis.cost import CostResult as Result
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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from anatomy.corpus import ingest

    root = tmp_path_factory.mktemp("corpus")
    (root / "p.txt").write_text("\n".join(f"a photo of a {n}" for n in IMAGENET_CLASSNAMES[:80]) + "\n")
    ingest("text", [str(root / "p.txt")], root / "c.parquet")
    return root / "c.parquet"


def _inputs(teacher, student, corpus) -> Inputs:
    from anatomy.embed_store import EmbeddingStore

    return Inputs(corpus=corpus, teacher=teacher, student=student,
                  teacher_store=EmbeddingStore(teacher), student_store=EmbeddingStore(student))  # fmt: skip


def test_cost_analysis_measures_the_pair_and_its_quality(pair, corpus, tmp_path):
    teacher, student = pair
    analysis = CostAnalysis()
    assert analysis.needs == frozenset({Need.PAIR, Need.CORPUS}) and analysis.name == "cost"
    params = analysis.params_from({"sample": 40, "repeats": 2, "max_repeats": 4, "batches": (1, 4)})
    result = analysis.compute(_inputs(teacher, student, corpus), params)
    assert [r["encoder"] for r in result.rows] == [teacher.name, student.name]
    assert result.rows[1]["ratios"]["parameters"] == pytest.approx(
        student.n_parameters / teacher.n_parameters
    )
    assert result.n == 40 and 0 <= result.knn_overlap <= 1 and -1 <= result.pooled_cosine <= 1
    again = Result.from_json(result.to_json())
    assert again.rows == result.rows and again.knn_overlap == result.knn_overlap
    fig = analysis.figures(result)["cost_frontier"]
    assert len(fig.axes) == 2
    assert any("quality on 40" in line for line in analysis.summary(result))
    assert analysis.findings(result, "cost")[0].key == "cost.student_vs_teacher"
    # the report's table: one row per measured configuration, one cell per column (not a pasted text block)
    (table,) = analysis.tables(result)
    assert len(table.rows) == 2 and all(len(row) == len(table.columns) for row in table.rows)
    assert table.columns[:3] == ["encoder", "ctx", "runtime"] and table.rows[1][0] == student.name
    assert "p50 ms" in table.columns and "load" in table.columns
    assert result.settings["threads"] == 1 and all(r["threads"] == 1 for r in result.rows)


def test_quality_is_exact_for_a_student_against_itself(pair, corpus):
    from anatomy.analysis.cost import CostParams as Params
    from anatomy.analysis.cost import quality

    teacher, student = pair
    cosine, overlap, n, notes = quality(_inputs(teacher, teacher, corpus), Params(sample=30))
    assert cosine == pytest.approx(1.0) and overlap == 1.0 and n == 30 and notes == []
    cosine, overlap, _, notes = quality(_inputs(teacher, student, corpus), Params(sample=30))
    assert cosine is not None and cosine < 0.99 and overlap < 1.0  # two random students disagree


def test_quality_on_fewer_prompts_than_k_says_the_k_it_used(pair, tmp_path):
    """5 distinct prompts: kNN overlap at k=2 (said in the notes, never labelled kNN@10; at k=4 every other
    prompt is a neighbour and the overlap is 1.0 whatever the outputs); 2 prompts: one line."""
    from anatomy.analysis.cost import CostParams as Params
    from anatomy.analysis.cost import quality
    from anatomy.corpus import ingest
    from anatomy.errors import AnatomyError

    teacher, student = pair
    for n in (5, 2):
        (tmp_path / f"{n}.txt").write_text("\n".join(f"a photo of thing {i}" for i in range(n)) + "\n")
        ingest("text", [str(tmp_path / f"{n}.txt")], tmp_path / f"{n}.parquet")
    _, _, n, notes = quality(_inputs(teacher, student, tmp_path / "5.parquet"), Params(sample=30))
    assert n == 5 and any("k=2, not the asked 10" in note for note in notes)
    with pytest.raises(AnatomyError, match="2 distinct prompt.*at least 3"):
        quality(_inputs(teacher, student, tmp_path / "2.parquet"), Params(sample=30))


def test_a_busy_machine_warning_says_what_to_do_once():
    from anatomy.analysis.cost import CostAnalysis

    result = Result.__new__(Result)
    result.teacher, result.student, result.rows = "t", "s", []
    result.warnings = [
        "the machine was busy while measuring t @ 16 (torch): measure again on a quiet machine"
    ]
    (_, busy) = CostAnalysis().findings(result, "pair")
    text = f"{busy.message}: {busy.action}"
    assert text.count("measure again on a quiet machine") == 1, text


def _fake_pair(monkeypatch, fail_at: int | None = None):
    """Inputs for a teacher at context 32 and a student at 8; the measuring process faked (latency grows with
    the context: 0.1 ms a token for the teacher, 0.05 for the student), the quality columns fixed."""
    from types import SimpleNamespace

    import anatomy.analysis.cost as cost
    from anatomy.cost import compare
    from anatomy.errors import EncoderError

    def fake_child(config, timeout):
        own = 32 if config["spec"] == "litetext-s0" else 8
        context = config["context"] or own
        if context == fail_at and config["spec"] == "litetext-s0":
            raise EncoderError(f"context {context} is longer than the model's")
        per = 0.1 if config["spec"] == "litetext-s0" else 0.05
        return {"context_length": context, "parameters": 10 if own == 32 else 5, "rss_runtime_mib": 1.0,
                "rss_loaded_mib": 3.0 if own == 32 else 2.0, "peak_batch_mib": 2.0,
                "latency_ms_p50": per * context, "latency_ms_p95": per * context, "texts_per_s": {"1": 1.0}}  # fmt: skip

    monkeypatch.setattr(compare, "run_child", fake_child)
    monkeypatch.setattr(cost, "quality", lambda inputs, params: (0.95, 0.5, 100, []))
    return SimpleNamespace(teacher=SimpleNamespace(name="litetext-s0", context_length=32),
                           student=SimpleNamespace(name="litetext-s1", context_length=8),
                           progress=lambda _m: None)  # fmt: skip


def test_the_audit_compares_the_student_with_the_teacher_at_the_students_context(monkeypatch):
    """The finding used to compare the teacher at its own context (256 for minilm) with the student at 8
    without saying so; as specialise does, the teacher is now also measured at the student's context, that
    row is the baseline, and the finding and cost.json's notes name the contexts."""
    analysis = CostAnalysis()
    params = analysis.params_from({"batches": (1,)})
    result = analysis.compute(_fake_pair(monkeypatch), params)
    assert [(r["encoder"], r["context"]) for r in result.rows] == [
        ("litetext-s0", 8), ("litetext-s0", 32), ("litetext-s1", 8)]  # fmt: skip
    assert result.rows[2]["ratios"]["latency_p50"] == pytest.approx(0.5)  # 0.4 ms against 0.8 ms, both at 8
    finding = analysis.findings(result, "pair")[0]
    assert "takes 50% of its batch-1 latency (both at context 8)" in finding.message
    assert any("at the student's context 8" in n and "its own 32" in n for n in result.notes)
    assert any("at the student's context 8" in n for n in Result.from_json(result.to_json()).notes)
    assert result.pair() == (result.rows[0], result.rows[2])


def test_a_teacher_that_cannot_run_at_the_students_context_is_named_in_the_finding(monkeypatch):
    analysis = CostAnalysis()
    result = analysis.compute(_fake_pair(monkeypatch, fail_at=8), analysis.params_from({"batches": (1,)}))
    assert [(r["encoder"], r["context"]) for r in result.rows] == [("litetext-s0", 32), ("litetext-s1", 8)]
    finding = analysis.findings(result, "pair")[0]
    assert "(the teacher at context 32, the student at 8: the ratios include" in finding.message
    assert any(
        "could not be measured at the student's context 8 (context 8 is longer" in n for n in result.notes
    )


def test_given_contexts_measure_both_at_each_and_compare_like_with_like(monkeypatch):
    analysis = CostAnalysis()
    result = analysis.compute(
        _fake_pair(monkeypatch), analysis.params_from({"batches": (1,), "contexts": (16,)})
    )
    assert [(r["encoder"], r["context"]) for r in result.rows] == [("litetext-s0", 16), ("litetext-s1", 16)]
    assert "(both at context 16)" in analysis.findings(result, "pair")[0].message and result.notes == []
