"""report.md and index.html from an audit record: self-contained, paper numbers beside ours, deterministic."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from anatomy.findings import Finding
from anatomy.report import render as R
from anatomy.report.record import FolderRecord, GroupRecord, StageError

ROOT = Path(__file__).resolve().parent.parent

CONTEXT = {
    "8": {
        "density": 0.7,
        "padding": 0.3,
        "truncation": 0.25,
        "token_loss": 0.1,
        "token_loss_per_prompt": 0.12,
    },
    "16": {
        "density": 0.45,
        "padding": 0.55,
        "truncation": 0.04,
        "token_loss": 0.009,
        "token_loss_per_prompt": 0.01,
    },
    "32": {
        "density": 0.23,
        "padding": 0.77,
        "truncation": 0.0,
        "token_loss": 0.0,
        "token_loss_per_prompt": 0.0,
    },
}


def _figure(path):
    from anatomy.figures.style import new_figure, save_figure

    fig, axes = new_figure()
    axes[0, 0].plot([1, 2, 3], [3, 1, 2])
    return save_figure(fig, path)


def tokens_result():
    """A typed tokens result read from JSON, with the context table and vocabulary above."""
    from test_findings import tokens_json

    from anatomy.analysis.tokens import TokensResult

    data = tokens_json([3, 7, 12], contexts=(8, 16, 32), unused=0.9998, used=9)
    data["overall"]["context"] = CONTEXT
    data["overall"]["vocab"]["top_k_coverage"] = {"100": 1.0}
    data["overall"]["vocab"]["special_share"] = 0.3
    data["sources"] = {}
    return TokensResult.from_json(data)


@pytest.fixture
def audit_dir(tmp_path):
    from test_findings import dims_result

    _figure(tmp_path / "figures" / "tokens_lengths.png")
    _figure(tmp_path / "encoders" / "minilm" / "figures" / "dims.png")
    record = FolderRecord(
        corpus={
            "path": "corpus.parquet",
            "rows": 3,
            "distinct_prompts": 3,
            "occurrences": 4,
            "sources": {"text": {"rows": 3, "subsets": {"a.txt": 3}}},
            "files": [{"input": "a.txt", "read": 5, "kept": 3, "merged": 1, "skipped": 1}],
            "failed": [{"input": "bad.json", "error": "invalid JSON at line 1, column 2"}],
        },
        analyses=GroupRecord(
            "the corpus",
            results={"tokens": tokens_result()},
            figures={"tokens": ["figures/tokens_lengths.png"]},
        ),
        encoders=[
            GroupRecord(
                "minilm",
                "minilm",
                results={"dims": dims_result(d=2.5, mle=2.7, n=3, std=0.5, mle_std=0.3)},
                figures={"dims": ["encoders/minilm/figures/dims.png", "encoders/minilm/figures/gone.png"]},
            ),
            GroupRecord(
                "sam3:<missing>.pt",
                "sam3-missing",
                errors={"load": StageError("file <missing>.pt not found")},
            ),
        ],
        versions={"numpy": "2.0"},
    )
    findings = [
        Finding("warn", "tokens", "tokens.context", "context 16 keeps 99.1% of tokens", 16, "use 16"),
        Finding(
            "fail",
            "encoder:sam3-missing",
            "encoder.load",
            "encoder sam3:<missing>.pt could not be loaded",
            "x",
            "check",
        ),
    ]
    return tmp_path, record, findings


def test_html_is_self_contained_with_figures_as_exact_data_uris(audit_dir):
    root, record, findings = audit_dir
    paths = R.render(root, record, findings)
    page = paths["html"].read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 2  # the missing figure is named, not a broken image
    assert "(figure encoders/minilm/figures/gone.png is missing)" in page
    decoded = [base64.b64decode(s.removeprefix("data:image/png;base64,")) for s in srcs]
    assert decoded == [
        (root / "figures" / "tokens_lengths.png").read_bytes(),
        (root / "encoders/minilm/figures/dims.png").read_bytes(),
    ]
    # nothing fetched from anywhere: no external links, scripts or stylesheets
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page


def test_text_is_escaped(audit_dir):
    root, record, findings = audit_dir
    page = R.render(root, record, findings)["html"].read_text()
    assert "sam3:&lt;missing&gt;.pt" in page and "<missing>" not in page


def test_paper_numbers_stand_beside_ours(audit_dir):
    root, record, findings = audit_dir
    md = R.render(root, record, findings)["markdown"].read_text()
    # context 32: ours 77% padding; paper 75.5% padding / 0.1% truncation, each at the study's own precision
    (row32,) = [line for line in md.splitlines() if line.startswith("| 32 |")]
    assert row32 == "| 32 | 23% | 77% | 0.0% | 0.0% | 0.0% | 75.5% / 0.1% / – |"
    (row16,) = [line for line in md.splitlines() if line.startswith("| 16 |")]
    assert row16.endswith("| 52.0% / 5.0% / 2.1% |")
    # shares of the study read as shares (65%), not as the fraction 0.65
    assert re.search(r"^\| vocabulary never used \| 100% \| 65(\.0)?% \| corpus audit", md, re.M)
    assert "| output intrinsic dim (TwoNN) | 2.5 ± 0.5 | 16-19 |" in md


def test_markdown_and_html_say_the_same_findings_and_errors(audit_dir):
    root, record, findings = audit_dir
    paths = R.render(root, record, findings)
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "| ⚠ warn | context 16 keeps 99.1% of tokens | use 16 |" in md
    assert "1 warn, 1 fail" in md and "1 warn, 1 fail" in page
    for text in (
        "✘ load failed: file &lt;missing&gt;.pt not found",
        "bad.json",
        "invalid JSON at line 1, column 2",
    ):
        assert text in page
        assert text.replace("&lt;", "<").replace("&gt;", ">") in md
    assert "![tokens_lengths](figures/tokens_lengths.png)" in md  # markdown links the figures beside it
    assert "![dims](encoders/minilm/figures/dims.png)" in md


def test_render_is_deterministic(audit_dir):
    root, record, findings = audit_dir
    first = {k: p.read_bytes() for k, p in R.render(root, record, findings).items()}
    second = {k: p.read_bytes() for k, p in R.render(root, record, findings).items()}
    assert first == second


def test_fmt_and_flatten():
    assert R.fmt(0.755, "pct") == "75.5%"
    assert R.fmt(49408) == "49,408"
    assert R.fmt(None) == "–"
    flat = dict(R.flatten({"a": {"b": 1.5, "histogram": {"3": 1}}, "params": {"x": 1}, "c": [1, 2]}))
    assert flat == {"a.b": "1.500", "c": "1, 2"}


# --------------------------------------------------------------------------------- make reports (corpus + tokens)


def _mini_data(shared: Path, root: Path) -> Path:
    """A small slice of each shared file, in the shared layout (real records, fewer of them)."""
    import json
    import shutil

    data = root / "data"
    for sub in ("lvis", "refcoco", "saco", "rf100vl", "v3det", "coco"):
        (data / sub).mkdir(parents=True)
    (data / "README.md").write_text("slice of the shared data for a test\n")
    lvis = json.loads((shared / "lvis/lvis_v1_categories.json").read_text())[:30]
    (data / "lvis/lvis_v1_categories.json").write_text(json.dumps(lvis))
    lines = (shared / "refcoco/refcoco_unc_val.csv").read_text().splitlines()[:41]
    (data / "refcoco/refcoco_unc_val.csv").write_text("\n".join(lines) + "\n")
    saco = json.loads((shared / "saco/toy_saco_veval_sav_test_gt.json").read_text())
    saco["categories"] = saco["categories"][:40]
    (data / "saco/toy_saco_veval_sav_test_gt.json").write_text(json.dumps(saco))
    rf = json.loads((shared / "rf100vl/rf100v1_labels_names.json").read_text())[:5]
    (data / "rf100vl/rf100v1_labels_names.json").write_text(json.dumps(rf))
    names = (shared / "v3det/category_name_13204_v3det_2023_v1.txt").read_text().splitlines()[:40]
    (data / "v3det/category_name_13204_v3det_2023_v1.txt").write_text("\n".join(names) + "\n")
    shutil.copy(shared / "coco/yoloworld_coco_class_texts.json", data / "coco")
    return data


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_reports_steps_are_incremental_and_byte_identical(shared_data, tmp_path):
    data = _mini_data(shared_data, tmp_path)
    reports = tmp_path / "reports"
    target = reports / "results" / "tokens.json"
    common = [f"DATA={data}", f"REPORTS={reports}"]
    built = _make(*common, str(target))
    assert built.returncode == 0, built.stderr[-2000:]
    first = {p: p.read_bytes() for p in sorted(reports.rglob("*")) if p.is_file()}
    assert reports / "corpus.parquet" in first and target in first
    assert _make("-q", *common, str(target)).returncode == 0  # up to date: nothing to redo
    os.utime(reports / "corpus.parquet")  # a newer corpus makes the tokens stale, not the other way round
    assert _make("-q", *common, str(target)).returncode == 1
    assert _make("-q", *common, str(reports / "corpus.parquet")).returncode == 0
    for path in first:  # a second run from scratch gives the same bytes
        path.unlink()
    again = _make(*common, str(target))
    assert again.returncode == 0, again.stderr[-2000:]
    second = {p: p.read_bytes() for p in sorted(reports.rglob("*")) if p.is_file()}
    assert sorted(second) == sorted(first)
    assert [p for p in first if first[p] != second[p]] == []


def test_make_reports_without_data_says_what_to_set(tmp_path):
    result = _make(
        f"DATA={tmp_path / 'nowhere'}", f"REPORTS={tmp_path / 'r'}", str(tmp_path / "r" / "corpus.parquet")
    )
    assert result.returncode != 0
    assert "no such data folder" in result.stderr and "set DATA=" in result.stderr


def test_notebooks_are_percent_format_with_short_cells():
    """Notebooks only read results through anatomy: no code cell carries more than 15 lines of logic."""
    import jupytext

    paths = sorted((ROOT / "notebooks").glob("0.*.py"))
    assert [p.name for p in paths] == [
        "0.01-corpus-exploration.py",
        "0.02-encoder-anatomy.py",
        "0.03-distillation.py",
    ]
    for path in paths:
        notebook = jupytext.read(path)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert code and any("anatomy" in c.source for c in code), path.name
        for cell in code:
            lines = [
                line
                for line in cell.source.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
            assert len(lines) <= 15, f"{path.name}: a {len(lines)}-line cell belongs in the anatomy package"
