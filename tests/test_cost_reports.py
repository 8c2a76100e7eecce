"""`make reports TEACHER=... STUDENT=...` (the README's command) runs end to end on a tiny corpus with two
tiny students: the teacher-student analyses (`anatomy cost --teacher ... --student ...` among them, generated
like every analysis) are built by the Makefile's own rules and land in the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _student(folder: Path, seed: int, **shape) -> str:
    from anatomy.encoders.student import StudentConfig, build_student, save_student

    cfg = StudentConfig("custom", context_length=16, **shape)
    torch.manual_seed(seed)
    save_student(build_student(cfg), cfg, folder, provenance={"note": "tiny test student"})
    return f"student:{folder}"


@pytest.mark.slow
def test_make_reports_with_a_teacher_and_a_student(tmp_path):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from anatomy.corpus import ingest

    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this machine")
    teacher = _student(tmp_path / "t", 0, layers=2, width=64, heads=2)
    student = _student(tmp_path / "s", 1, layers=1, width=32, heads=2)
    reports, data = tmp_path / "reports", tmp_path / "data"
    reports.mkdir()
    data.mkdir()  # no dataset files: the corpus below is the one the report reads
    (tmp_path / "p.txt").write_text("\n".join(f"a photo of a {n}" for n in IMAGENET_CLASSNAMES[:60]) + "\n")
    ingest("text", [str(tmp_path / "p.txt")], reports / "corpus.parquet")
    time.sleep(1.1)  # the stamp and the corpus strictly newer than the code and pyproject.toml
    stamp = tmp_path / "installed"
    stamp.touch()
    (reports / "corpus.parquet").touch()
    venv = Path(sys.executable).parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env["PYTHONPATH"] = str(ROOT)
    args = [make, "-C", str(ROOT), "reports", f"VENV={venv}", f"STAMP={stamp}", f"REPORTS={reports}",
            f"DATA={data}", f"TEACHER={teacher}", f"STUDENT={student}", "REPORT_ENCODERS=teacher student",
            "SAMPLE=40"]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    cost = json.loads((reports / "pair" / "results" / "cost.json").read_text())
    assert [r["encoder"] for r in cost["rows"]] == [teacher, student]
    assert cost["n"] == 40 and cost["settings"]["threads"] == 1
    assert (reports / "pair" / "results" / "agreement.json").is_file()
    html = (reports / "index.html").read_text()
    assert "What the student costs and buys" in html and "p50 ms" in html
    assert "cost_frontier" in html
