"""The check's figures with known answers: kNN against brute force, coverage on a hand-built geometry,
tokenization on hand-counted prompts, per-period shares and drift, the deployment record, the verdicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from anatomy.errors import InputError
from anatomy.monitor import knn, periods, verdicts
from anatomy.monitor.coverage import check_coverage
from anatomy.monitor.record import read_deployment
from anatomy.monitor.tokenization import check_tokenization

BACKENDS = ["numpy"] + (["faiss"] if knn._faiss_available() else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_equals_brute_force(backend):
    rng = np.random.default_rng(1)
    base, queries = rng.normal(size=(300, 16)), rng.normal(size=(120, 16))
    base[7] = base[3]  # a duplicate: its leave-one-out neighbour is its twin, at distance 0
    b, q = knn.normalise(base), knn.normalise(queries)
    dist, at = knn.nearest(queries, base, backend=backend, block=37)
    sim = q @ b.T
    assert np.array_equal(at, sim.argmax(1))
    assert np.allclose(dist, 1 - sim.max(1), atol=1e-5)
    own = b @ b.T
    np.fill_diagonal(own, -np.inf)
    loo = knn.leave_one_out(base, backend=backend, block=50)
    assert np.allclose(loo, 1 - own.max(1), atol=1e-5)
    assert loo[3] == pytest.approx(0, abs=1e-5) and loo[7] == pytest.approx(0, abs=1e-5)


def test_knn_refuses_what_it_cannot_do():
    with pytest.raises(ValueError):
        knn.leave_one_out(np.ones((1, 4)))
    with pytest.raises(ValueError):
        knn.nearest(np.ones((1, 4)), np.ones((1, 4)), backend="annoy")


def test_coverage_known_answers():
    e = np.eye(4, dtype=np.float32)
    mid = (e[0] + e[1]) / np.sqrt(2)
    train = np.stack([e[0], mid, e[1], e[2]])  # leave-one-out: 1-cos45 three times, and 1 for e3
    d45 = 1 - 1 / np.sqrt(2)
    log = np.stack([e[0], -e[2], e[1] + 0.01 * e[3]])
    requests = np.array([7, 3, 5])
    result, arrays = check_coverage(
        ["a", "b", "c"], requests, log, ["t0", "tmid", "t1", "t2"], train, "toy", "numpy"
    )
    assert result.threshold == pytest.approx(
        np.quantile([d45, d45, d45, 1.0], 0.95)
    )  # = d45 + 0.85 (1 - d45)
    assert result.threshold == pytest.approx(d45 + 0.85 * (1 - d45))
    assert arrays["beyond"].tolist() == [False, True, False]
    assert result.beyond_requests == pytest.approx(3 / 15) and result.beyond_prompts == pytest.approx(1 / 3)
    c_dist = 1 - 1 / np.sqrt(1 + 0.01**2)
    assert result.distance_mean_requests == pytest.approx((3 * 1.0 + 5 * c_dist) / 15, abs=1e-6)
    assert [(f.text, f.requests, f.nearest) for f in result.farthest] == [("b", 3, "t0")]
    assert result.train_loo_median == pytest.approx(d45)


class _Toy:
    """A word-level tokenizer: one id per known word, 'unk' pieces per character otherwise."""

    vocab_size = 40

    def __init__(self):
        self.words = {
            w: i for i, w in enumerate("a dog cat red car zebra very long prompt with many words".split())
        }

    def encode(self, texts):
        return [[self.words[w] for w in t.split()] for t in texts]

    def token_text(self, i):
        return next(w for w, j in self.words.items() if j == i)


class _Kept(_Toy):
    """The 'specialised' tokenizer: keeps a, dog, cat; any other word becomes a fallback id (20 + length)."""

    original_ids = np.array([0, 1, 2] + list(range(20, 40)))

    def encode(self, texts):
        kept = {"a": 0, "dog": 1, "cat": 2}
        return [[kept.get(w, 3 + len(w)) for w in t.split()] for t in texts]


def test_tokenization_known_answers():
    prompts = ["a dog", "a zebra", "a very long prompt with many words"]
    requests = np.array([90, 6, 4])
    train = ["a dog", "a cat"]
    full, flags = check_tokenization(prompts, requests, _Toy(), 6, train)
    assert (full.changed_prompts, full.changed_requests) == (0.0, 0.0)  # full vocabulary: nothing differs
    assert full.truncated_requests == pytest.approx(4 / 100) and full.truncated_prompts == pytest.approx(
        1 / 3
    )
    assert full.new_token_requests == pytest.approx(10 / 100)  # zebra; very long prompt with many words
    assert [(t.text, t.requests, t.prompts) for t in full.new_tokens[:2]] == [("zebra", 6, 1), ("very", 4, 1)]
    assert len(full.new_tokens) == 7  # zebra and the six words of the long prompt (ties by id)
    assert [r.text for r in full.truncated_examples] == ["a very long prompt with many words"]
    spec, flags = check_tokenization(prompts, requests, _Toy(), 6, train, _Kept(), "vocab.json")
    assert flags["changed"].tolist() == [False, True, True]
    assert spec.changed_requests == pytest.approx(10 / 100) and spec.vocabulary == "vocab.json"
    assert [(r.text, r.requests) for r in spec.changed_examples] == [("a zebra", 6), ("a very long prompt with many words", 4)]  # fmt: skip


def test_periods_and_drift_known_answers():
    days = pd.DataFrame({
        "prompt": ["a", "b", "a", "b"],
        "day": pd.to_datetime(["2024-05-06", "2024-05-08", "2024-05-13", "2024-05-14"]),  # two Mon-Sun weeks
        "count": [8, 2, 5, 5],
    })  # fmt: skip
    flags = {"beyond": np.array([False, True]), "changed": np.array([False, False]),
             "truncated": np.array([True, False]), "new_token": np.array([False, True])}  # fmt: skip
    distance = np.array([0.1, 0.9])
    weeks = periods.by_period(days, ["a", "b"], flags, distance, "week")
    assert [(p.start, p.requests, p.prompts) for p in weeks] == [("2024-05-06", 10, 2), ("2024-05-13", 10, 2)]
    assert [p.beyond for p in weeks] == [pytest.approx(0.2), pytest.approx(0.5)]
    assert weeks[0].truncated == pytest.approx(0.8) and weeks[0].distance_mean == pytest.approx(0.26)
    drift = periods.drift(weeks, min_requests=10)  # 10 requests a week: judged only at this floor
    assert periods.drift(weeks) is None and periods.too_small(weeks) == weeks  # below MIN_PERIOD_REQUESTS
    assert drift.beyond_change == pytest.approx(0.3) and drift.distance_change == pytest.approx(0.24)
    assert verdicts.drift_findings(drift, "week")[0].mark == "fail"
    assert len(periods.by_period(days, ["a", "b"], flags, distance, "day")) == 4
    assert (
        periods.by_period(None, ["a"], flags, distance) == []
        and periods.drift(weeks[:1], min_requests=1) is None
    )


def test_marks_at_the_named_thresholds():
    assert verdicts.mark(verdicts.BEYOND_WARN, verdicts.BEYOND_WARN, verdicts.BEYOND_FAIL) == "ok"
    assert verdicts.mark(0.2, verdicts.BEYOND_WARN, verdicts.BEYOND_FAIL) == "warn"
    assert verdicts.mark(0.3, verdicts.BEYOND_WARN, verdicts.BEYOND_FAIL) == "fail"


def test_deployment_record_of_an_audit_folder(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "corpus.parquet").write_bytes(b"")
    audit = {"config": {"encoders": ["minilm"], "teacher": None, "student": None}, "stages": {"corpus": {"path": "corpus.parquet"}}}  # fmt: skip
    (tmp_path / "results" / "audit.json").write_text(json.dumps(audit))
    tokens = {"params": {"tokenizer": "clip"}, "recommended_context": {"pooled": {"L": 12}}}
    (tmp_path / "results" / "tokens.json").write_text(json.dumps(tokens))
    (tmp_path / "pair" / "results").mkdir(parents=True)
    (tmp_path / "pair" / "results" / "agreement.json").write_text(
        json.dumps({"pooled_cosine": {"mean": 0.9}})
    )
    dep = read_deployment(tmp_path)
    assert (dep.kind, dep.context, dep.tokenizer, dep.teacher, dep.student) == (
        "audit",
        12,
        "clip",
        "minilm",
        None,
    )
    assert dep.corpus == tmp_path / "corpus.parquet" and dep.vocab is None
    assert dep.eval == {"eval_pooled_cosine": 0.9}


def test_deployment_record_refuses_other_folders(tmp_path):
    with pytest.raises(InputError, match="neither a student run"):
        read_deployment(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        read_deployment(tmp_path / "missing")


def test_check_cli_usage_and_data_errors(tmp_path):
    from typer.testing import CliRunner

    from anatomy.cli import app

    (tmp_path / "log.txt").write_text("a dog\n", encoding="utf-8")
    base = ["check", str(tmp_path / "log.txt"), "--out", str(tmp_path / "out")]
    missing = CliRunner().invoke(app, [*base, "--against", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "not a directory" in missing.output
    assert CliRunner().invoke(app, [*base, "--against", str(tmp_path), "--sample", "5"]).exit_code == 2
    assert CliRunner().invoke(app, [*base, "--against", str(tmp_path), "--period", "month"]).exit_code == 2
    weight = CliRunner().invoke(app, ["tokens", "--corpus", str(tmp_path / "log.txt"), "--out", str(tmp_path / "t"),
                                      "--weight", "requests"])  # fmt: skip
    assert weight.exit_code == 2 and "--weight" in weight.output


def test_quality_on_fewer_than_21_log_prompts_says_knn_not_measured(tmp_path):
    """A log of 5 (or 12) prompts: kNN@10 is not measured (an info line saying why), never a NaN marked ok nor
    a trivially high overlap (on 12 prompts two sets of 10 neighbours share at least 9); the cosines are still
    reported."""
    import torch

    from anatomy.encoders.registry import load
    from anatomy.encoders.student import StudentConfig, build_student, save_student
    from anatomy.monitor.quality import check_quality

    cfg = StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24, context_length=16)
    encoders = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        encoders.append(
            load(f"student:{save_student(build_student(cfg), cfg, tmp_path / str(seed))}", device="cpu")
        )
    run = {"eval_pooled_cosine": 0.1, "eval_token_cosine": 0.1, "eval_knn_overlap10": 0.5}
    for n, measured in ((5, False), (12, False), (21, True)):
        prompts = [f"a prompt number {i}" for i in range(n)]
        q = check_quality(prompts, *encoders, 16, np.arange(n), np.ones(n, dtype=bool), 0, run)
        assert (q.knn_overlap10 is not None) == measured and q.pooled_cosine == q.pooled_cosine
        found = {f.key: f for f in verdicts.quality_findings(q)}
        knn = found["check.quality.knn_overlap10"]
        assert (knn.mark == "info" and "needs 21" in knn.message) if not measured else knn.mark != "info"
        json.dumps(q.__dict__, allow_nan=False)


def test_quality_refuses_a_student_whose_width_is_not_the_teachers(tmp_path):
    """A run whose checkpoints/best was replaced by another student (16-d outputs against a 24-d teacher):
    one error naming both, never a numpy broadcast traceback."""
    import torch

    from anatomy.encoders.registry import load
    from anatomy.encoders.student import StudentConfig, build_student, save_student
    from anatomy.monitor.quality import check_quality

    encoders = []
    for width in (24, 16):
        cfg = StudentConfig("custom", layers=1, width=32, heads=2, output_dim=width, context_length=16)
        torch.manual_seed(width)
        encoders.append(
            load(f"student:{save_student(build_student(cfg), cfg, tmp_path / str(width))}", device="cpu")
        )
    prompts = [f"a prompt number {i}" for i in range(12)]
    with pytest.raises(InputError, match="16-d outputs.*24-d"):
        check_quality(prompts, *encoders, 16, np.arange(12), np.ones(12, dtype=bool), 0, {})
