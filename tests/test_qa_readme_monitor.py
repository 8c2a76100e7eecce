"""The README's monitoring commands, run as a new user would: each `ingest` and `tokens` line of the block,
verbatim but for the folder, on small files named as the README names them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from anatomy.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
CONTENT = {
    ".csv": "prompt,count,ts\na dog,3,2024-01-01\na red car,2,2024-01-02\n",
    ".jsonl": "\n".join(
        json.dumps({"q": q, "n": n, "t": t})
        for q, n, t in [("a dog", 3, "2024-01-01"), ("a red car", 2, "2024-01-02")]
    )
    + "\n",  # fmt: skip
}


def _monitoring_block() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Monitoring a deployed student") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#")[0])[1:] for line in block.splitlines() if line.strip()]


def test_the_readmes_monitoring_ingest_and_tokens_lines_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    lines = [args for args in _monitoring_block() if args[0] in ("ingest", "tokens")]
    assert len(lines) == 4
    for args in lines:
        if args[0] == "ingest":
            log = Path(args[2])
            log.write_text(CONTENT.get(log.suffix, "a dog\na dog\na red car\n"), encoding="utf-8")
            Path("work/log.parquet").unlink(missing_ok=True)
            Path("work/log.traffic.parquet").unlink(missing_ok=True)
        got = CliRunner().invoke(app, args)
        assert got.exit_code == 0, f"{' '.join(args)}: {got.output}"
        if args[0] == "ingest":
            import pandas as pd

            counts = dict(
                zip(*pd.read_parquet("work/log.parquet")[["prompt", "count"]].T.values, strict=True)
            )
            assert counts == {
                "a dog": 2 if log.suffix not in CONTENT else 3,
                "a red car": 1 if log.suffix not in CONTENT else 2,
            }
