"""CONTRIBUTING.md's analysis template is code (issue 17 item 5): copied into a module as written, it passes mypy
(at the project's settings, with untyped bodies checked too), registers, appears as a command with its defaults,
and runs through `anatomy audit` into the findings, the figures and the report."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anatomy.analysis import ANALYSES, register

ROOT = Path(__file__).resolve().parent.parent


def template() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## Add an analysis", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "CONTRIBUTING.md has no python template under 'Add an analysis'"
    return blocks[0]


@pytest.fixture()
def contributed(tmp_path, monkeypatch):
    module = tmp_path / "contrib_long.py"
    module.write_text(template(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = importlib.import_module("contrib_long")
    analysis = register(loaded.LongPrompts())
    try:
        yield module, analysis
    finally:
        ANALYSES.pop(analysis.name, None)
        sys.modules.pop("contrib_long", None)


def _mypy(module: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--check-untyped-defs",
         "--no-error-summary", str(module)],
        capture_output=True, text=True, cwd=ROOT, env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_template_type_checks(contributed, tmp_path):
    module, _ = contributed
    done = _mypy(module)
    assert done.returncode == 0, done.stdout + done.stderr
    # mypy does see the package's types here (a wrong Params type is caught), so the pass above means something
    broken = tmp_path / "contrib_broken.py"
    broken.write_text(template() + "\nLongPrompts().compute(Inputs(), 5)\n", encoding="utf-8")
    caught = _mypy(broken)
    assert caught.returncode != 0 and "LongParams" in caught.stdout, caught.stdout


def test_the_template_runs_through_the_cli_and_the_audit(contributed, tmp_path):
    from test_registry import ROWS, fresh_app, write_corpus

    from anatomy.audit import AuditConfig, run_audit

    _, analysis = contributed
    corpus = write_corpus(tmp_path / "data" / "corpus.parquet")
    helped = CliRunner().invoke(fresh_app(), ["long", "--help"], env={"COLUMNS": "300"})
    assert helped.exit_code == 0 and "--min-words" in helped.output
    flat = re.sub(r"[\s│]+", " ", helped.output)
    assert "Range [1, 1,000]. [default: 4]" in flat

    result = run_audit(AuditConfig(inputs=(str(corpus),), analyses=("long",)), tmp_path / "audit")
    assert not result.failed
    (finding,) = [f for f in result.findings if f.key == "long.share"]
    prompts = sorted({p for p, _, _ in ROWS})
    expected = sum(len(p.split()) >= 4 for p in prompts) / len(prompts)
    assert finding.value == pytest.approx(expected) and finding.section == "long"
    out = tmp_path / "audit"
    assert (out / "figures" / "long_words.png").exists()
    written = json.loads((out / "results" / "long.json").read_text())
    assert written["params"] == {"min_words": 4} and written["provenance"]["figures"] == ["long_words.png"]
    report = (out / "report.md").read_text()
    assert "## Long prompts" in report and "figures/long_words.png" in report and "long prompts" in report
