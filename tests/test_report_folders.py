"""`anatomy report DIR` on the --out folder of one encoder or pair analysis command (sweep 2, item 1): those
commands write DIR/results/NAME.json (not encoders/<slug>/ or pair/), and the report builds a page from them,
the encoder named from the result's own record. Tiny random students keep it fast (no model download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anatomy.cli import app

ROOT = Path(__file__).resolve().parent.parent  # before any test changes the working folder


@pytest.fixture()
def students(tmp_path) -> tuple[str, str]:
    from test_agreement import _two_random_students

    return tuple(_two_random_students(tmp_path / "models"))  # type: ignore[return-value]


@pytest.fixture()
def corpus(tmp_path) -> Path:
    from anatomy.corpus import ingest

    words = "dog cat car bowl cup hat pear plum kite boat lamp desk".split()
    (tmp_path / "p.txt").write_text("".join(f"a photo of a {w}\n" for w in words), encoding="utf-8")
    ingest("text", [str(tmp_path / "p.txt")], tmp_path / "c.parquet")
    return tmp_path / "c.parquet"


def _invoke(*args: str):
    got = CliRunner().invoke(app, [*args, "--quiet"] if args[0] != "report" else list(args))
    assert got.exit_code == 0, got.output
    return got


def test_report_of_an_encoder_analysis_folder(tmp_path, students):
    _, student = students
    out = tmp_path / "P1"
    _invoke("positions", "-e", student, "--out", str(out))
    assert (out / "results" / "positions.json").is_file() and not (out / "encoders").exists()

    got = _invoke("report", str(out))
    assert "nothing to report" not in got.output
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"## Encoder {student}" in md  # named from the result's own record
    assert "positions" in md.lower() and (out / "index.html").is_file()
    findings = json.loads((out / "results" / "audit.json").read_text())["findings"]
    assert any(f["section"].startswith("encoder:") for f in findings)


def test_report_of_a_pair_analysis_folder(tmp_path, students, corpus):
    teacher, student = students
    out = tmp_path / "AG"
    _invoke("agreement", "--teacher", teacher, "--student", student, "--corpus", str(corpus), "--out", str(out),
            "--n-boot", "0")  # fmt: skip
    assert (out / "results" / "agreement.json").is_file() and not (out / "pair").exists()

    got = _invoke("report", str(out), "--json")
    keys = {f["key"] for f in json.loads(got.output)["findings"]}
    assert "agreement.baseline" in keys
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"## Student vs teacher: {student} vs {teacher}" in md


def test_encoder_results_of_two_commands_in_one_folder_stay_apart(tmp_path, students, corpus):
    """Two encoders' analyses written into one folder: one section each, as each result names its encoder."""
    teacher, student = students
    out = tmp_path / "mixed"
    _invoke("positions", "-e", student, "--out", str(out))
    _invoke("spectrum", "-e", teacher, "--corpus", str(corpus), "--out", str(out))
    _invoke("report", str(out))
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"## Encoder {student}" in md and f"## Encoder {teacher}" in md


def test_an_audit_folder_names_a_commands_results_left_at_its_top(tmp_path):
    """In an audit's folder, encoder results at DIR/results/ are an analysis command's, not the audit's: they
    are listed as left out, not reported."""
    from test_audit_stale import _prompts

    from anatomy.audit import AuditConfig, finish, run_audit

    out = tmp_path / "out"
    run_audit(
        AuditConfig(inputs=(str(_prompts(tmp_path / "a.txt", ["dog", "cat"])),), analyses=("tokens",)), out
    )
    # any positions result will do: the committed one
    committed = ROOT / "reports" / "encoders" / "minilm" / "results" / "positions.json"
    if not committed.is_file():
        pytest.skip("reports/encoders/minilm/results/positions.json is not committed here")
    (out / "results" / "positions.json").write_text(committed.read_text(encoding="utf-8"), encoding="utf-8")
    result = finish(out)
    left = {f.value: f.message for f in result.findings if f.key == "report.leftover"}
    assert "not by this audit" in left["results/positions.json"]
    assert all("positions" not in e.results for e in result.record.encoders)
