"""Hostile hf: folders and hf exports: a damaged config or weights file is one AnatomyError naming the folder,
never a traceback or a silently random model; an export never writes over a model it did not write."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from anatomy.cli import app  # noqa: E402
from anatomy.encoders.registry import load  # noqa: E402
from anatomy.encoders.student import StudentConfig, build_student, save_student  # noqa: E402
from anatomy.errors import AnatomyError  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("hfqa")
    torch.manual_seed(0)
    cfg = StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24, context_length=16)
    save_student(build_student(cfg), cfg, folder / "run" / "checkpoints" / "best")
    got = CliRunner().invoke(
        app, ["export", str(folder / "run"), "--format", "hf", "--out", str(folder / "hf")]
    )
    assert got.exit_code == 0, got.output
    return {"run": folder / "run", "hf": folder / "hf"}


def _config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **changes}))


def _damage(kind: str, folder: Path) -> None:
    if kind == "zero heads":
        _config(folder, num_attention_heads=0)
    elif kind == "negative table":
        _config(folder, max_position_embeddings=-3)
    elif kind == "zero width":
        _config(folder, hidden_size=0, projection_dim=0, intermediate_size=0)
    elif kind == "list config":
        (folder / "config.json").write_text("[1, 2]")
    elif kind == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[:1000])
    elif kind == "garbage weights":
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    elif kind == "missing shard":
        (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            "text_model.embeddings.token_embedding.weight": "model-00002-of-00002.safetensors"}}))  # fmt: skip
    elif kind == "another model's config":
        _config(folder, model_type="bert", architectures=["BertModel"])


@pytest.mark.parametrize(
    "kind",
    [
        "zero heads",
        "negative table",
        "zero width",
        "list config",
        "truncated weights",
        "garbage weights",
        "missing shard",
        "another model's config",
    ],  # fmt: skip
)
@pytest.mark.parametrize("family", ["hf", "transformers"])
def test_a_damaged_hf_folder_is_one_error_naming_it(exported, tmp_path, kind, family):
    folder = tmp_path / "broken"
    shutil.copytree(exported["hf"], folder)
    _damage(kind, folder)
    with pytest.raises(AnatomyError, match=str(folder)):
        load(f"{family}:{folder}", device="cpu")
    got = CliRunner().invoke(app, ["positions", "-e", f"{family}:{folder}", "--out", str(tmp_path / "pos")])
    assert got.exit_code == 1 and "Traceback" not in got.output, got.output


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_export_refuses_a_folder_holding_another_model(exported, tmp_path):
    """A folder with a config.json or weights that no `anatomy export` wrote (the --base itself, someone's
    model) is left byte-identical; a folder an earlier export wrote is replaced; `--out .` works."""
    other = tmp_path / "someone"
    shutil.copytree(exported["hf"], other)
    (other / "anatomy_export.json").unlink()
    before = _hashes(other)
    got = CliRunner().invoke(app, ["export", str(exported["run"]), "--format", "hf", "--out", str(other)])
    assert got.exit_code == 1 and "not written by anatomy export" in got.output, got.output
    assert _hashes(other) == before and not list(tmp_path.glob(".*partial"))
    again = CliRunner().invoke(
        app, ["export", str(exported["run"]), "--format", "hf", "--out", str(exported["hf"])]
    )
    assert again.exit_code == 0, again.output
    here = tmp_path / "here"
    here.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(here)
        dot = CliRunner().invoke(app, ["export", str(exported["run"]), "--format", "hf", "--out", "."])
    assert dot.exit_code == 0 and (here / "config.json").exists(), dot.output
    load(f"hf:{here}", device="cpu")


@pytest.mark.parametrize("base", ["text model", "a file", "missing folder", "list config"])
def test_export_with_a_wrong_base_leaves_nothing_behind(exported, tmp_path, base):
    """--base of the wrong kind: exit 1 naming it, and neither OUT nor its staging folder is left."""
    (tmp_path / "a.txt").write_text("x\n")
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "config.json").write_text("[1]")
    path = {"text model": exported["hf"], "a file": tmp_path / "a.txt", "missing folder": tmp_path / "no" / "x",
            "list config": tmp_path / "listed"}[base]  # fmt: skip
    out = tmp_path / "out"
    got = CliRunner().invoke(app, ["export", str(exported["run"]), "--format", "hf", "--out", str(out),
                                   "--base", str(path)])  # fmt: skip
    assert got.exit_code == 1 and "Traceback" not in got.output, got.output
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    empty = CliRunner().invoke(app, ["export", str(exported["run"]), "--format", "hf", "--out", str(out),
                                     "--base", ""])  # fmt: skip
    assert empty.exit_code == 2 and "--base" in empty.output


def test_export_hf_takes_a_student_spec_as_onnx_does(exported, tmp_path):
    spec = f"student:{exported['run'] / 'checkpoints' / 'best'}"
    got = CliRunner().invoke(app, ["export", spec, "--format", "hf", "--out", str(tmp_path / "out")])
    assert got.exit_code == 0, got.output
    load(f"hf:{tmp_path / 'out'}", device="cpu")
