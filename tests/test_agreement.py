"""Student-teacher agreement: exact answers for copies, rotations and masked garbage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anatomy.metrics.similarity import agreement, knn_overlap, pooled_cosines, token_cosines


def _tokens(seed, b=30, length=8, d=12):
    rng = np.random.default_rng(seed)
    tokens = rng.standard_normal((b, length, d))
    n_valid = rng.integers(2, length + 1, b)
    mask = np.arange(length)[None, :] < n_valid[:, None]
    return tokens, mask


def test_identical_encoders_agree_perfectly():
    tokens, mask = _tokens(0)
    pooled = tokens.mean(1)
    got = agreement(tokens, mask, pooled, tokens.copy(), mask, pooled.copy(), k=5)
    assert got.token_cosine.mean == pytest.approx(1.0, abs=1e-14)
    assert got.token_cosine.n == mask.sum()
    assert got.pooled_cosine.min == pytest.approx(1.0, abs=1e-14)
    assert got.knn_overlap.mean == 1.0 and got.notes == []


def test_padding_is_ignored_and_the_shorter_context_bounds_the_comparison():
    tokens, mask = _tokens(1)
    student = tokens.copy()
    student[~mask] *= -1  # garbage at padded positions must not count
    short = student[:, :5]  # a student with context 5
    cos = token_cosines(tokens, mask, short, mask[:, :5])
    assert cos.size == mask[:, :5].sum()
    np.testing.assert_allclose(cos, 1.0, atol=1e-14)


def test_rotation_keeps_neighbourhoods_but_not_cosines():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 16))
    rotation, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    assert knn_overlap(x, x @ rotation, k=10).mean() == 1.0
    assert pooled_cosines(x, x @ rotation).mean() < 0.9


def test_knn_overlap_against_sets():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
    got = knn_overlap(a, b, k=4)

    def neighbours(x, i):
        d = np.linalg.norm(x - x[i], axis=1)
        d[i] = np.inf
        return set(np.argsort(d)[:4])

    expected = [len(neighbours(a, i) & neighbours(b, i)) / 4 for i in range(60)]
    np.testing.assert_allclose(got, expected)


def test_different_widths_compare_neighbourhoods_only():
    tokens, mask = _tokens(4)
    student = tokens[..., :6]
    got = agreement(tokens, mask, tokens.mean(1), student, mask, student.mean(1), k=5)
    assert got.token_cosine is None and got.pooled_cosine is None
    assert "widths differ" in got.notes[0]
    assert 0 <= got.knn_overlap.mean <= 1


# ------------------------------------------------------------------------------------------- findings
# Issue 18 §1: like with like (the study's per-token 0.938 only beside a per-token cosine), and a trained
# student compared with its untrained self (step 0 of its run's metrics.jsonl).


def _result(token, pooled, knn, student="s", baseline=None, note="no record", teacher="minilm"):
    from anatomy.analysis.agreement import AgreementResult, PairDims
    from anatomy.analysis.dims import DimsEntry
    from anatomy.metrics.similarity import Distribution

    def dist(v):
        return None if v is None else Distribution(100, v, v, v, v)

    entry = DimsEntry.of(np.random.default_rng(0).standard_normal((60, 6)), 0, 0)
    return AgreementResult(
        teacher,
        student,
        100,
        10,
        dist(token),
        dist(pooled),
        dist(knn),
        PairDims(entry, entry),
        [],
        {},
        baseline,
        note,
    )


def _by_key(found, key):
    (match,) = [f for f in found if f.key == key]
    return match


@pytest.mark.parametrize(("token", "pooled"), [(0.95, 0.97), (0.5, 0.7), (None, 0.707), (None, 0.95)])
def test_the_studys_per_token_number_stands_only_beside_a_per_token_cosine(token, pooled):
    from anatomy import paper
    from anatomy.analysis import ANALYSES

    found = ANALYSES["agreement"].findings(_result(token, pooled, 0.4), "pair")
    cosine = [f for f in found if f.key in ("agreement.token_cosine", "agreement.pooled_cosine")]
    assert len(cosine) == 1
    (f,) = cosine
    study = str(paper.AGREEMENT_TOKEN_COSINE)
    if token is None:
        assert f.key == "agreement.pooled_cosine" and f"pooled cosine {pooled:.3f}" in f.message
        assert study not in f.message and "not comparable" in f.message
    else:
        assert (
            f.key == "agreement.token_cosine" and f"per-token cosine {token:.3f} (paper {study})" in f.message
        )
    assert f.mark == ("ok" if (token if token is not None else pooled) >= 0.9 else "warn")


def _run_folder(root, knn0, knn, tok0=0.1, tok=0.5, step=30, evaluated=(0, 10, 20, 30)):
    """A distill run folder as `anatomy distill` writes it: config.json, metrics.jsonl, checkpoints/best."""
    import json

    run = root / "run"
    (run / "checkpoints" / "best").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"teacher": "minilm", "steps": 30}))
    rows = []
    for s in evaluated:
        share = s / 30
        rows.append({"step": s, "eval_token_cosine": tok0 + (tok - tok0) * share, "eval_pooled_cosine": 0.5,
                     "eval_knn_overlap10": knn0 + (knn - knn0) * share})  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "checkpoints" / "best" / "config.json").write_text(json.dumps({"provenance": {"step": step}}))
    return run


def test_run_baseline_reads_step_zero_and_the_checkpoints_step(tmp_path):
    from anatomy.analysis.agreement import run_baseline

    run = _run_folder(tmp_path, 0.05, 0.41, step=20)
    got, why = run_baseline(f"student:{run / 'checkpoints' / 'best'}")
    assert why == "" and got is not None
    assert (got.step, got.teacher) == (20, "minilm")
    assert got.knn_overlap_step0 == pytest.approx(0.05) and got.knn_overlap == pytest.approx(
        0.05 + 0.36 * 2 / 3
    )
    assert got.token_cosine_step0 == pytest.approx(0.1)
    # a checkpoint step with no evaluation: the last evaluation before it
    (run / "checkpoints" / "best" / "config.json").write_text('{"provenance": {"step": 25}}')
    assert run_baseline(f"student:{run / 'checkpoints' / 'best'}")[0].step == 20


@pytest.mark.parametrize(
    ("knn0", "knn", "mark"), [(0.40, 0.41, "warn"), (0.40, 0.30, "warn"), (0.05, 0.41, "ok")]
)
def test_a_student_no_better_than_untrained_is_warned(tmp_path, knn0, knn, mark):
    from anatomy.analysis import ANALYSES
    from anatomy.analysis.agreement import run_baseline

    run = _run_folder(tmp_path, knn0, knn)
    baseline, why = run_baseline(f"student:{run / 'checkpoints' / 'best'}")
    found = _by_key(ANALYSES["agreement"].findings(_result(0.95, 0.97, 0.9, baseline=baseline), "pair"),
                    "agreement.baseline")  # fmt: skip
    assert found.mark == mark
    assert f"{knn0:.3f}" in found.message and f"{knn:.3f}" in found.message and "step 0" in found.message
    if mark == "warn":
        assert "no better than the untrained" in found.message and found.action


@pytest.mark.parametrize(
    ("name", "reason"),
    [("minilm", "has no training record"), ("litetext-s0:/x/s0.pt", "has no training record"),
     ("student:/nowhere/checkpoints/best", "not inside a run folder")],
)  # fmt: skip
def test_without_a_run_record_the_baseline_is_said_unavailable(name, reason):
    from anatomy.analysis import ANALYSES
    from anatomy.analysis.agreement import run_baseline

    baseline, why = run_baseline(name)
    assert baseline is None and reason in why
    found = _by_key(ANALYSES["agreement"].findings(_result(0.95, 0.97, 0.9, name, None, why), "pair"),
                    "agreement.baseline")  # fmt: skip
    assert found.mark == "info" and "baseline unavailable" in found.message and reason in found.message


def test_damaged_run_record_is_a_reason_not_a_crash(tmp_path):
    from anatomy.analysis.agreement import run_baseline

    run = _run_folder(tmp_path, 0.1, 0.5)
    (run / "metrics.jsonl").write_text('{"step": 10, "eval_knn_overlap10": 0.4}\n[[[')
    baseline, why = run_baseline(f"student:{run / 'checkpoints' / 'best'}")
    assert baseline is None and "unreadable" in why and "\n" not in why


def test_result_round_trips_with_its_baseline(tmp_path):
    from anatomy.analysis.agreement import AgreementResult, run_baseline

    run = _run_folder(tmp_path, 0.1, 0.5)
    baseline, _ = run_baseline(f"student:{run / 'checkpoints' / 'best'}")
    result = _result(0.9, 0.9, 0.5, baseline=baseline, note="")
    data = result.to_json()
    assert data["schema_version"] == 2 and data["baseline"]["knn_overlap_step0"] == pytest.approx(0.1)
    back = AgreementResult.from_json(data)
    assert back.baseline == baseline and back.baseline_note == ""


def test_audited_student_that_did_not_learn_is_warned_end_to_end(tmp_path):
    """A real run at a negligible learning rate, audited as student:RUN/checkpoints/best: the agreement
    analysis finds the run record and warns that the student is no better than its step 0."""
    from test_analysis_cmds import pair_inputs, run
    from test_distill_train import _config, make_tiny_setup

    from anatomy.analysis import ANALYSES
    from anatomy.distill.train import distill
    from anatomy.encoders.registry import load

    tiny = make_tiny_setup(tmp_path / "tiny")
    distill(_config(tiny, steps=4, eval_every=2, lr=1e-12), tmp_path / "run", device="cpu",
            cache_dir=tmp_path / "cache")  # fmt: skip
    teacher = load(tiny["teacher"], device="cpu")
    student = load(f"student:{tmp_path / 'run' / 'checkpoints' / 'best'}", device="cpu")
    result = run("agreement", tmp_path / "audit", {"sample": 40, "n_boot": 0},
                 **pair_inputs(teacher, student, tiny["corpus"]))  # fmt: skip
    assert result.baseline is not None and result.baseline.run_dir == str(tmp_path / "run")
    found = _by_key(ANALYSES["agreement"].findings(result, "pair"), "agreement.baseline")
    assert found.mark == "warn" and "no better than the untrained" in found.message


def _two_random_students(folder):
    import torch

    from anatomy.encoders.student import StudentConfig, build_student, save_student

    cfg = StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24, context_length=16)
    specs = []
    for seed, name in ((1, "teacher"), (2, "student")):
        torch.manual_seed(seed)
        specs.append(f"student:{save_student(build_student(cfg), cfg, folder / name, provenance={})}")
    return specs


@pytest.mark.parametrize(
    ("prompts", "code", "expect"),
    [
        (["a dog", "a cat", "red car", "blue car", "a man"], 0, "kNN overlap at k=4, not the asked 10"),
        (
            ["a dog", "a cat"],
            1,
            "only 2 distinct prompt(s) (token sequences as the encoder sees them); the kNN overlap needs at least 3",
        ),
    ],
)
def test_a_corpus_smaller_than_k_uses_every_other_prompt_or_is_one_line(tmp_path, prompts, code, expect):
    """Fewer than k+1 distinct prompts: k shrinks to n-1 (said in the result), under 3 is one error line."""
    from typer.testing import CliRunner

    from anatomy.cli import app
    from anatomy.corpus import ingest

    teacher, student = _two_random_students(tmp_path)
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    ingest("text", [str(tmp_path / "p.txt")], tmp_path / "c.parquet")
    args = ["agreement", "--teacher", teacher, "--student", student, "--corpus", str(tmp_path / "c.parquet"),
            "--out", str(tmp_path / "out"), "--n-boot", "0"]  # fmt: skip
    got = CliRunner().invoke(app, args)
    assert got.exit_code == code, got.output
    assert expect in " ".join(got.output.split()) and "Traceback" not in got.output
    if code == 0:
        result = json.loads((tmp_path / "out" / "results" / "agreement.json").read_text())
        assert result["k"] == 4 and result["knn_overlap"]["mean"] == 1.0  # every other prompt is a neighbour
    bad = CliRunner().invoke(app, [*args, "--sample", "11", "--k", "20"])
    assert bad.exit_code == 2 and "must be smaller than --sample" in bad.output


# ------------------------------------------------------------------------------------------- another teacher
# Sweep 2 item 2: a run's step 0 is a baseline only for the teacher the run trained against.


@pytest.mark.parametrize(
    ("recorded", "used", "same"),
    [("minilm", "minilm", True), ("minilm", "open_clip:RN50:x.pt", False),
     ("open_clip:RN50:t.pt", "open_clip:RN50:/data/t.pt", True), ("open_clip:RN50:t.pt", "open_clip:RN101:t.pt", False),
     ("student:runA/checkpoints/best", "student:runB/checkpoints/best", False)],
)  # fmt: skip
def test_same_teacher_compares_family_model_and_file(recorded, used, same):
    from anatomy.analysis.agreement import same_teacher

    assert same_teacher(recorded, used) is same


def test_a_baseline_measured_against_another_teacher_is_left_out_of_the_comparison(tmp_path):
    """A stored result whose run baseline names another teacher (as written before this was checked): the
    summary the command prints and the finding leave it out and say why."""
    from anatomy.analysis import ANALYSES
    from anatomy.analysis.agreement import run_baseline

    run = _run_folder(tmp_path, 0.05, 0.41)
    baseline, _ = run_baseline(f"student:{run / 'checkpoints' / 'best'}")
    result = _result(None, None, 0.7, baseline=baseline, note="", teacher="open_clip:RN50:rn50_text.pt")
    lines = ANALYSES["agreement"].summary(result)
    (line,) = [x for x in lines if "baseline" in x]
    assert "->" not in line and "unavailable" in line and "against teacher minilm, not open_clip:RN50" in line
    found = _by_key(ANALYSES["agreement"].findings(result, "pair"), "agreement.baseline")
    assert found.mark == "info" and "minilm" in found.message and found.value is None
    # its own teacher: the comparison, naming the teacher
    same = ANALYSES["agreement"].summary(_result(None, None, 0.7, baseline=baseline, note=""))
    assert any("step 0 of" in x and "teacher minilm" in x and "->" in x for x in same)


def test_agreement_with_another_teacher_than_the_runs_records_no_baseline(tmp_path):
    """`anatomy agreement --teacher T --student student:RUN/checkpoints/best` where RUN trained against another
    teacher: no "->" comparison printed, no baseline in the JSON, and a note saying why."""
    import torch
    from typer.testing import CliRunner

    from anatomy.cli import app
    from anatomy.corpus import ingest
    from anatomy.encoders.student import StudentConfig, build_student, save_student

    teacher, _ = _two_random_students(tmp_path)
    run = _run_folder(tmp_path, 0.05, 0.41)  # its config.json: teacher minilm
    cfg = StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24, context_length=16)
    torch.manual_seed(3)
    save_student(build_student(cfg), cfg, run / "checkpoints" / "best", provenance={"step": 30})
    (tmp_path / "p.txt").write_text(
        "\n".join(f"a photo of a {w}" for w in "dog cat car bowl cup hat".split()) + "\n"
    )
    ingest("text", [str(tmp_path / "p.txt")], tmp_path / "c.parquet")
    student = f"student:{run / 'checkpoints' / 'best'}"
    args = ["agreement", "--teacher", teacher, "--student", student, "--corpus", str(tmp_path / "c.parquet"),
            "--out", str(tmp_path / "out"), "--n-boot", "0"]  # fmt: skip
    got = CliRunner().invoke(app, args)
    assert got.exit_code == 0, got.output
    text = " ".join(got.output.split())
    assert "untrained baseline unavailable" in text and "against teacher minilm" in text
    assert "step 0 of" not in text
    data = json.loads((tmp_path / "out" / "results" / "agreement.json").read_text())
    assert data["baseline"] is None and "not " in data["baseline_note"] and "minilm" in data["baseline_note"]
    # the run's own teacher: the baseline is measured and printed
    (run / "config.json").write_text(json.dumps({"teacher": teacher}))
    again = CliRunner().invoke(app, [*args[:-4], "--out", str(tmp_path / "out2"), "--n-boot", "0"])
    assert again.exit_code == 0, again.output
    assert "step 0 of" in " ".join(again.output.split())
