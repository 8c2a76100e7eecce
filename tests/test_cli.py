"""CLI basics: help is cheap, user mistakes are short messages with exit 1, usage errors exit 2."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from anatomy.cli import app

runner = CliRunner()


def test_help_does_not_import_heavy_libraries():
    code = "import sys, anatomy.cli; heavy = {'torch', 'open_clip', 'skdim', 'matplotlib', 'pandas'} & set(sys.modules); print(sorted(heavy))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "ingest" in result.output and "corpus" in result.output


def test_user_error_is_short_with_exit_1(tmp_path):
    result = runner.invoke(app, ["corpus", str(tmp_path / "missing.parquet")])
    assert result.exit_code == 1
    assert "missing.parquet: no such corpus" in result.output
    assert "Traceback" not in result.output


def test_usage_error_exits_2():
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 2
