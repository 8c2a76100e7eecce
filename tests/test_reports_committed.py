"""The committed paper-style report (reports/, built by `make reports` from the shared data) is what its
committed results render to: report.md and index.html rebuilt from results/*.json and the figures alone (no
corpus, no encoder, no embedding) are byte-identical to the committed files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"


def committed_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the committed report cannot be listed")
    listed = subprocess.run(
        ["git", "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    files = [line.removeprefix("reports/") for line in listed.stdout.splitlines() if line.strip()]
    if "report.md" not in files:
        pytest.skip("no report committed in reports/")
    return files


def test_committed_report_rebuilds_byte_identical_from_committed_results(tmp_path):
    from anatomy.audit import finish

    files = committed_files()
    copy = tmp_path / "reports"
    for name in files:
        if name in ("report.md", "index.html"):
            continue
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPORTS / name, copy / name)
    assert not (copy / "corpus.parquet").exists()  # the corpus summary comes from results/corpus.json
    finish(copy)
    for name in ("report.md", "index.html"):
        assert (copy / name).read_bytes() == (REPORTS / name).read_bytes(), (
            f"reports/{name} is stale: run make reports"
        )
