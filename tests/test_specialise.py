"""`anatomy specialise` end to end on a tiny corpus, a tiny random teacher (student:PATH) and a tiny student.

One uninterrupted run (A) is checked against numbers recomputed here from the stage artefacts; a second run
in the same place (B) is killed during distillation, export and cost and rerun each time, and must give A's
bill (measured timings aside); a changed held-out file redoes exactly the stages that read it; constraints
nobody meets recommend nothing (exit 0, a warning); bad inputs fail in one line and leave DIR as it was.
The stage mechanism itself is tested on toy stages (no models).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_distill_train import ADJECTIVES, NOUNS, make_tiny_setup
from typer.testing import CliRunner

from anatomy.cli import app

STEPS = 8
# Held-out prompts: one uses a word the corpus never has ("green": tokenized differently by the specialised
# vocabulary), one is longer than the context the tokens analysis recommends (9 = 7 words + SOT/EOT).
HELD = [f"a {a} {n}" for a in ADJECTIVES[:2] for n in NOUNS[:9]] + [
    "a green car",
    "a red dog near a window on the table left of the tree",
]


def _lvis(folder: Path) -> Path:
    """A second source: LVIS-style category names (underscores as spaces)."""
    cats = [{"id": i + 1, "name": f"{a}_{n}", "synonyms": [], "frequency": "f"}
            for i, (a, n) in enumerate((a, n) for a in ADJECTIVES for n in NOUNS[:4])]  # fmt: skip
    path = folder / "lvis_v1_categories.json"
    path.write_text(json.dumps(cats), encoding="utf-8")
    return path


def _args(setup: dict, out: Path, *extra: str) -> list[str]:
    return ["specialise", setup["prompts"], setup["lvis"], "--teacher", setup["teacher"], "--student",
            setup["student"], "--held-out", setup["held"], "--steps", str(STEPS), "--batch-size", "16",
            "--export", "onnx", "--threads", "1", "--cost-repeats", "2", "--cost-batches", "1,4", "--device", "cpu", "--out",
            str(out), "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("spec")
    tiny = make_tiny_setup(root / "tiny")
    held = root / "held.txt"
    held.write_text("\n".join(HELD) + "\n", encoding="utf-8")
    return {**tiny, "root": root, "prompts": str(root / "tiny" / "prompts.txt"), "lvis": str(_lvis(root)),
            "held": str(held)}  # fmt: skip


@pytest.fixture(scope="module")
def run_a(setup) -> dict:
    """The uninterrupted run, moved aside to a/ so B can run at the same path (same recorded paths)."""
    import torch

    torch.set_num_threads(1)
    out = setup["root"] / "out"
    result = CliRunner().invoke(app, _args(setup, out))
    assert result.exit_code == 0, result.output
    a = setup["root"] / "a"
    shutil.copytree(out, a)
    return {"out": out, "a": a, "stdout": result.stdout, "bill": json.loads((a / "bill.json").read_text())}


def _load(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_end_to_end_bill_is_recomputable_from_the_artefacts(setup, run_a):
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F
    from sklearn.neighbors import NearestNeighbors

    from anatomy.encoders.registry import load

    a, bill = run_a["a"], run_a["bill"]
    assert {"bill.json", "bill.md", "index.html"} <= {p.name for p in a.iterdir()}
    assert (a / "figures" / "pareto.png").stat().st_size > 0
    assert "data:image/png;base64," in (a / "index.html").read_text()
    assert bill["context"]["L"] == 9 and bill["context"]["recommended"] == 9
    (row,) = bill["candidates"]
    name = row["name"]
    assert bill["vocab"]["use"] is True and row["vocab_size"] == bill["vocab"]["kept"] < 49408
    stages = a / "stages"
    split = json.loads((stages / "split" / "split.json").read_text())
    test_prompts = [t["prompt"] for t in split["test"]]
    distinct = pd.read_parquet(stages / "corpus" / "corpus.parquet")["prompt"].nunique()
    assert split["n_test"] == len(test_prompts) == round(0.1 * distinct)
    assert split["n_train"] == distinct - len(test_prompts)

    # the stored outputs are what the encoders give (teacher at the chosen context, the shipped student)
    ref, stu = (
        _load(stages / "reference" / "test.safetensors"),
        _load(stages / f"evaluate-{name}" / "test.safetensors"),
    )
    student = load(f"student:{stages / f'distill-{name}' / 'run' / 'checkpoints' / 'best'}", device="cpu")
    teacher = load(setup["teacher"], device="cpu", context_length=9)
    np.testing.assert_allclose(student.encode(test_prompts).pooled.numpy(), stu["pooled"], atol=1e-5)
    np.testing.assert_allclose(teacher.encode(test_prompts).pooled.numpy(), ref["pooled"], atol=1e-5)

    # quality recomputed independently (torch cosines, scikit-learn neighbours)
    t_pooled, s_pooled = torch.from_numpy(ref["pooled"]), torch.from_numpy(stu["pooled"])
    test = row["quality"]["test"]
    assert test["pooled_cosine"] == pytest.approx(
        float(F.cosine_similarity(t_pooled, s_pooled).mean()), abs=1e-6
    )
    both = torch.from_numpy(ref["mask"] & stu["mask"])  # every test prompt tokenizes as the teacher's does
    cos = F.cosine_similarity(
        torch.from_numpy(ref["tokens"]).float()[both], torch.from_numpy(stu["tokens"]).float()[both], dim=-1
    )
    assert test["token_cosine"] == pytest.approx(float(cos.mean()), abs=1e-5)
    if len(test_prompts) < 21:  # kNN@10 is never shrunk: too few prompts leave it out, with a note
        assert test["knn_overlap10"] is None and "kNN@10 not measured on test" in (a / "bill.md").read_text()
    else:
        k = 10
        nt = NearestNeighbors(n_neighbors=k + 1).fit(ref["pooled"]).kneighbors(return_distance=False)[:, :k]
        ns = NearestNeighbors(n_neighbors=k + 1).fit(stu["pooled"]).kneighbors(return_distance=False)[:, :k]
        overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(nt, ns, strict=True)])
        assert test["knn_overlap10"] == pytest.approx(overlap, abs=1e-9)

    # per source: the test prompts of each source, from the split
    for source, q in row["per_source"].items():
        idx = [i for i, t in enumerate(split["test"]) if source in t["sources"]]
        assert q["prompts"] == len(idx)
        assert q["pooled_cosine"] == pytest.approx(
            float(F.cosine_similarity(t_pooled[idx], s_pooled[idx]).mean()), abs=1e-6
        )
    assert set(row["per_source"]) == {"lvis", "text"}

    # risk: known answers on the held-out set (one unseen word, one prompt longer than 9 tokens)
    assert row["risk"]["held.txt"] == {
        "prompts": len(HELD),
        "changed_share": 1 / len(HELD),
        "truncated_share": 1 / len(HELD),
    }
    assert row["risk"]["test"]["changed_share"] == 0.0

    # the ONNX export run on the test split, recomputed with onnxruntime
    (export,) = row["exports"]
    onnx_path = stages / f"export-{name}" / export["file"]
    assert export["bytes"] == onnx_path.stat().st_size
    ids, valid = student.tokenize(test_prompts)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    pooled = sess.run(
        ["pooled"], {"input_ids": ids.astype(np.int64), "attention_mask": valid.astype(np.int64)}
    )[0]
    assert export["test_pooled_cosine"] == pytest.approx(
        float(F.cosine_similarity(t_pooled, torch.from_numpy(pooled)).mean()), abs=1e-5
    )

    # cost and parameters are the cost stage's measurements of these very artefacts
    cost = json.loads((stages / "cost" / "cost.json").read_text())
    torch_row = next(r for r in cost["rows"] if r["candidate"] == name and r["runtime"] == "torch")
    assert row["parameters"] == torch_row["parameters"] == student.n_parameters
    assert [c["runtime"] for c in row["cost"]] == ["torch", "onnx"]
    assert row["cost"][0]["latency_ms_p50"] == torch_row["latency_ms_p50"]
    assert row["training"]["steps"] == STEPS
    # the teacher is costed at the students' context (the baseline of every ratio) and at its own
    teacher_cost = bill["teacher"]["cost"]
    assert [(c["runtime"], c["context"]) for c in teacher_cost] == [("torch", 9), ("torch", 16)]
    assert teacher_cost[0]["ratios"]["latency_p50"] == 1.0 and bill["teacher"]["context"] == 16
    assert [(r["candidate"], r["context_length"]) for r in cost["rows"][:2]] == [
        ("teacher", 9),
        ("teacher", 16),
    ]
    assert all(
        c["threads"] == 1 and isinstance(c["latency_reliable"], bool) for c in row["cost"] + teacher_cost
    )
    md = (a / "bill.md").read_text()
    assert "measured at the students' context 9 (the baseline of every ratio" in md
    assert (
        f"Training: {STEPS} steps per candidate (--steps)" in md and "1 thread(s) per measuring process" in md
    )
    assert bill["training_plan"] == {"steps": STEPS, "how": "--steps"}
    rec = bill["recommendation"]
    assert rec["candidate"] == name and rec["reason"] and "recommended" in run_a["stdout"]


def _strip(bill: dict) -> dict:
    """The bill without what is measured (timings, cost, machine) and what is derived from measurements."""
    out = json.loads(json.dumps(bill))
    for key in ("timings", "machine", "cost_notes"):
        out.pop(key)
    for row in [out["teacher"], *out["candidates"]]:
        row.pop("cost")
        row.get("training", {}).pop("train_seconds", None)
    for option in out["recommendation"]["options"]:
        option.pop("latency_ms_p50")
    out["recommendation"].pop("reason")
    return out


def test_killed_runs_resume_to_the_same_bill(setup, run_a, monkeypatch):
    import anatomy.cost.compare as cost_compare
    import anatomy.distill.export as export
    import anatomy.distill.train as train

    out, a = run_a["out"], run_a["a"]
    for stage in ("distill-student", "evaluate-student", "export-student", "cost"):
        shutil.rmtree(out / "stages" / stage)
    (out / "bill.json").unlink()
    runner = CliRunner()

    def crash_after(fn, n):
        calls = {"n": 0}

        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > n:
                raise RuntimeError("killed")
            return fn(*args, **kwargs)

        return wrapper

    kills = (
        (train, "update", 5, [".distill-student"]),
        (export, "export", 0, []),
        (cost_compare, "run_child", 1, []),
    )
    for module, attr, n, left in kills:
        with monkeypatch.context() as m:
            m.setattr(module, attr, crash_after(getattr(module, attr), n))
            with pytest.raises(RuntimeError, match="killed"):
                runner.invoke(app, _args(setup, out), catch_exceptions=False)
        # a distillation's partial run is kept to resume; what other stages did is dropped
        partials = [p.name.split(".partial-")[0] for p in (out / "stages").iterdir() if ".partial-" in p.name]
        assert partials == left
        assert not (out / "bill.json").exists()
    result = runner.invoke(app, _args(setup, out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "stages" / "distill-student" / "stage.json").read_text())
    assert manifest["resumed"] is True  # the first rerun continued the killed distillation from step 4
    log = (out / "stages" / "distill-student" / "run" / "train.log").read_text()
    assert "resumed at step 4" in log
    assert not [p for p in (out / "stages").iterdir() if p.name.startswith(".")]
    bill = json.loads((out / "bill.json").read_text())
    assert _strip(bill) == _strip(run_a["bill"])
    assert bill["stages"] == run_a["bill"]["stages"]  # same keys, same output digests: the same weights
    assert (out / "stages" / "export-student" / "student.onnx").read_bytes() == (
        a / "stages" / "export-student" / "student.onnx").read_bytes()  # fmt: skip


def test_changed_held_out_redoes_exactly_what_reads_it(setup, run_a):
    out = setup["root"] / "changed"
    shutil.copytree(run_a["a"], out)
    held = Path(setup["held"])
    original = held.read_text()
    try:
        held.write_text(original + "a small boat\n", encoding="utf-8")  # seen words: the vocabulary stays
        result = CliRunner().invoke(app, _args(setup, out))
        assert result.exit_code == 0, result.output
    finally:
        held.write_text(original, encoding="utf-8")
    runs = {n: json.loads((out / "stages" / n / "stage.json").read_text()) for n in run_a["bill"]["stages"]}
    before = run_a["bill"]["stages"]
    redone = sorted(n for n in runs if runs[n]["key"] != before[n]["key"])
    assert redone == ["evaluate-student", "reference", "vocab"]
    assert runs["vocab"]["digest"] == before["vocab"]["digest"]  # the same vocabulary: distillation reused
    bill = json.loads((out / "bill.json").read_text())
    assert bill["candidates"][0]["risk"]["held.txt"]["prompts"] == len(HELD) + 1


def test_constraints_nobody_meets_recommend_nothing(setup, run_a):
    out = setup["root"] / "strict"
    shutil.copytree(run_a["a"], out)
    result = CliRunner().invoke(
        app, _args(setup, out, "--max-params", "1000", "--max-quality-drop", "0.0001")
    )
    assert result.exit_code == 0, result.output
    assert "warning: no candidate meets the constraints" in result.stderr
    bill = json.loads((out / "bill.json").read_text())
    rec = bill["recommendation"]
    assert rec["candidate"] is None and rec["runtime"] is None and rec["watch"] == []
    assert all(o["misses"] for o in rec["options"]) and len(rec["options"]) == 2
    assert "nothing is recommended" in (out / "bill.md").read_text()
    assert bill["stages"] == run_a["bill"]["stages"]  # constraints only change the view: every stage reused


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        (["--context", "abc"], 2, "--context"),
        (["--max-quality-drop", "-1"], 2, "--max-quality-drop"),
        (["--export", "tar"], 2, "--export"),
        (["--vocab", "half"], 2, "--vocab"),
        (["--held-out", "missing.txt"], 1, "missing.txt: no such file"),
        (["--student", "nope.json"], 1, "nope.json"),
        (["--teacher", "sam3:missing.pt"], 1, "missing.pt not found"),
        (["--teacher", "sam3"], 1, "untrained architecture"),
    ],
)
def test_bad_options_fail_before_any_work(setup, run_a, tmp_path, extra, code, words):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, _args(setup, out, *extra))
    assert result.exit_code == code, result.output
    assert words in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_unreadable_input_leaves_the_folder_as_it_was(setup, run_a):
    out = setup["root"] / "bad"
    shutil.copytree(run_a["a"], out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = setup["root"] / "broken.json"
    bad.write_text('[{"id": 1, "name": ', encoding="utf-8")
    args = _args(setup, out)
    args[2] = str(bad)  # the LVIS file replaced by a broken one
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "broken.json" in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


# ----------------------------------------------------------------------------------- the stage mechanism


def _toy(tmp_path: Path, calls: list[str], fail: str | None = None):
    """a (reads input.txt) -> b (doubles it) -> c (reads b): plain files, no models."""
    from anatomy.specialise.stages import Stage

    src = tmp_path / "input.txt"

    def body(name, make):
        def run(r):
            calls.append(name)
            if fail == name:
                (r.folder / "half.txt").write_text("x")
                raise RuntimeError("killed")
            (r.folder / "out.txt").write_text(make(r))
            return {"n": len(calls)}

        return run

    return [
        Stage("a", "a", (), lambda _s: {}, body("a", lambda r: src.read_text().strip()), files={"in": str(src)}),
        Stage("b", "b", ("a",), lambda _s: {"times": 2}, body("b", lambda r: (r.inputs["a"] / "out.txt").read_text() * 2)),
        Stage("c", "c", ("b",), lambda _s: {}, body("c", lambda r: (r.inputs["b"] / "out.txt").read_text().upper())),
    ]  # fmt: skip


def _run_all(tmp_path, stages):
    from anatomy.specialise.stages import Store, run_stage

    done = {}
    for s in stages:
        done[s.name] = run_stage(Store(tmp_path / "dir"), s, done, lambda _f: None)
    return done


def test_stages_reuse_verify_and_redo_only_downstream(tmp_path):
    (tmp_path / "input.txt").write_text("ab\n")
    calls: list[str] = []
    _run_all(tmp_path, _toy(tmp_path, calls))
    assert calls == ["a", "b", "c"]
    assert (tmp_path / "dir" / "stages" / "c" / "out.txt").read_text() == "ABAB"
    _run_all(tmp_path, _toy(tmp_path, calls))
    assert calls == ["a", "b", "c"]  # all reused
    (tmp_path / "input.txt").write_text("ab\n\n")  # other bytes, same output: a reruns, b and c do not
    _run_all(tmp_path, _toy(tmp_path, calls))
    assert calls == ["a", "b", "c", "a"]
    (tmp_path / "input.txt").write_text("cd\n")
    _run_all(tmp_path, _toy(tmp_path, calls))
    assert calls[4:] == ["a", "b", "c"]
    (tmp_path / "dir" / "stages" / "b" / "out.txt").write_text("tampered")  # verified before reuse
    _run_all(tmp_path, _toy(tmp_path, calls))
    assert calls[7:] == ["b"] and (tmp_path / "dir" / "stages" / "c" / "out.txt").read_text() == "CDCD"


def test_a_failing_stage_keeps_the_committed_one(tmp_path):
    (tmp_path / "input.txt").write_text("ab\n")
    calls: list[str] = []
    _run_all(tmp_path, _toy(tmp_path, calls))
    (tmp_path / "input.txt").write_text("zz\n")
    with pytest.raises(RuntimeError):
        _run_all(tmp_path, _toy(tmp_path, calls, fail="b"))
    stages = tmp_path / "dir" / "stages"
    assert (stages / "b" / "out.txt").read_text() == "abab"  # the committed stage is untouched
    assert not (stages / "b" / "half.txt").exists()
    assert not [p for p in stages.iterdir() if p.name.startswith(".b.partial")]  # b is not resumable: cleaned
    _run_all(tmp_path, _toy(tmp_path, calls))
    assert (stages / "c" / "out.txt").read_text() == "ZZZZ"
    assert not [p for p in stages.iterdir() if p.name.startswith(".")]


def test_pareto_front_and_recommendation_rules():
    from anatomy.specialise.figure import prepare_pareto
    from anatomy.specialise.recommend import Constraints, Option, _misses

    opts = [Option("big", "torch", 100, 400, 2.0, 0.01), Option("small", "torch", 10, 40, 1.0, 0.05),
            Option("small", "int8", 10, 12, 1.5, 0.06)]  # fmt: skip
    assert [r["front"] for r in prepare_pareto(opts)] == [True, True, False]
    assert _misses(opts[1], Constraints(max_quality_drop=0.02)) == ["quality drop 0.050 > 0.02"]
    assert _misses(opts[0], Constraints(max_params=50, max_latency_ms=1.0)) == [
        "100 parameters > 50", "p50 2.00 ms > 1 ms"]  # fmt: skip


def test_progress_says_each_quarter_of_a_stage():
    from anatomy.specialise.pipeline import Progress

    lines: list[str] = []
    report = Progress([], lines.append).within("distill-x")
    for fraction in (0.1, 0.3, 0.55, 0.6, 1.0):
        report(fraction)
    assert [line.split(": ")[1].split(" in")[0] for line in lines] == ["30%", "55%"]
    assert all("left in this stage" in line for line in lines)


def test_a_specialise_output_is_a_deployment_the_check_reads(run_a):
    """`anatomy check --against DIR` takes a specialise output: the recommended candidate's run; a bill that
    recommends nothing is refused, naming the run folders to give instead."""
    from anatomy.errors import InputError
    from anatomy.monitor.record import read_deployment

    a, bill = run_a["a"], run_a["bill"]
    chosen = bill["recommendation"]["candidate"]
    deployment = read_deployment(a)
    assert deployment.kind == "specialise" and deployment.folder == a
    assert deployment.student is not None and f"distill-{chosen}" in deployment.student
    none = a.parent / "no-recommendation"
    shutil.copytree(a, none)
    (none / "bill.json").write_text(
        json.dumps({**bill, "recommendation": {**bill["recommendation"], "candidate": None}})
    )
    with pytest.raises(InputError, match="recommends no candidate") as info:
        read_deployment(none)
    assert "stages/distill-" in (info.value.hint or "")
