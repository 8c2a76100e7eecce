"""Encoder families are one unit each: FAMILIES lists them all, a new family is one registration (no registry
code), the modules import each other without cycles, and a file that is not a checkpoint says so in one line.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anatomy.encoders import FAMILIES, Family, LoadRequest, Spec, load
from anatomy.encoders.registry import load_tokenizer, parse_spec
from anatomy.errors import CheckpointError, EncoderError

ROOT = Path(__file__).resolve().parent.parent
ENCODERS = ROOT / "anatomy" / "encoders"


def test_families_lists_every_family_without_importing_torch():
    code = "import sys; from anatomy.encoders import FAMILIES; print(list(FAMILIES), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{list(FAMILIES)} False"  # the same registry, and no torch imported
    for prefix, family in FAMILIES.items():  # properties of each family, not a pinned list
        assert prefix and family.name and family.grammar
        assert callable(family.load)


def _toy_family(weights: Path):
    """A family defined entirely in this test: a tiny embedding model whose weights live in one .npy file."""

    def load_toy(spec: Spec, request: LoadRequest):
        import torch

        from anatomy.encoders.base import ModuleEncoder
        from anatomy.tokenizer import clip_tokenizer

        class Toy(torch.nn.Module):
            def __init__(self, table):
                super().__init__()
                self.embed = torch.nn.Embedding.from_pretrained(torch.from_numpy(table))

            def forward(self, ids, valid):
                return self.embed(ids % self.embed.num_embeddings)

        return ModuleEncoder(
            Toy(np.load(spec.path)),
            clip_tokenizer(),
            name=request.name,
            context_length=request.context_length or 8,
            output_dim=4,
            causal=True,
            trained=True,
            device=request.device,
            dtype=request.dtype,
        )

    return Family("toy", "toy:PATH", load=load_toy)


def test_a_family_registered_in_families_loads_and_fingerprints_without_registry_code(tmp_path):
    from anatomy.embed import encoder_fingerprint

    weights = tmp_path / "toy.npy"
    np.save(weights, np.arange(40, dtype=np.float32).reshape(10, 4))
    FAMILIES["toy"] = _toy_family(weights)
    try:
        spec = f"toy:{weights}"
        assert parse_spec(spec) == Spec("toy", path=str(weights)) and parse_spec(spec).trained
        encoder = load(spec, device="cpu", context_length=6)
        assert encoder.name == spec and encoder.context_length == 6
        out = encoder.encode(["a dog"])
        ids = encoder.tokenizer(["a dog"], 6)[0]  # SOT, 'a', 'dog', EOT, pad, pad
        expected = np.arange(40, dtype=np.float32).reshape(10, 4)[ids[:4] % 10].mean(0)
        np.testing.assert_allclose(out.pooled[0].numpy(), expected, rtol=1e-6)
        # the embeddings cache key hashes the family's weight file
        fingerprint = encoder_fingerprint(spec)
        assert fingerprint == {
            "spec": spec,
            "family": "toy",
            "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        }
        assert load_tokenizer(spec).vocab_size == 49408  # the default: the loaded encoder's tokenizer
        with pytest.raises(EncoderError, match="toy:PATH"):
            parse_spec("toy")  # no bare name unless the family allows one; the grammar lists it
    finally:
        del FAMILIES["toy"]
    with pytest.raises(EncoderError, match="unknown encoder family 'toy'"):
        parse_spec(spec)


def _imports(path: Path) -> set[str]:
    """anatomy.encoders submodules a module imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("anatomy.encoders."):
                found.add(node.module.split(".")[2])
            elif node.module == "anatomy.encoders":
                found.update(alias.name for alias in node.names if (ENCODERS / f"{alias.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("anatomy.encoders."))
    return found


def test_encoder_modules_have_no_import_cycle():
    graph = {p.stem: _imports(p) - {p.stem} for p in ENCODERS.glob("*.py") if p.stem != "__init__"}
    assert "student" not in graph["registry"] and not graph["family"]  # the dispatcher names no family

    def visit(node, path):
        if node in path:
            raise AssertionError(f"import cycle: {' -> '.join([*path[path.index(node) :], node])}")
        for nxt in graph.get(node, ()):
            visit(nxt, [*path, node])

    for module in graph:
        visit(module, [])
    registry_source = (ENCODERS / "registry.py").read_text()
    assert not any(f'"{prefix}"' in registry_source for prefix in FAMILIES if prefix != "minilm")


def test_a_file_that_is_not_a_checkpoint_says_so_in_one_line(tmp_path):
    notes = tmp_path / "notes.csv"
    notes.write_text("prompt,count\na dog,3\n")
    with pytest.raises(CheckpointError) as info:
        load(f"sam3:{notes}")
    message = str(info.value)
    assert f"{notes}: not a PyTorch checkpoint" in message and "weights_only" not in message
    assert message.count("\n") <= 1  # the message and at most one hint line

    from typer.testing import CliRunner

    from anatomy.cli import app

    corpus = tmp_path / "c.parquet"
    from anatomy.corpus import ingest

    (tmp_path / "p.txt").write_text("a dog\n")
    ingest("text", [str(tmp_path / "p.txt")], corpus)
    result = CliRunner().invoke(
        app, ["embed", "--corpus", str(corpus), "--out", str(tmp_path / "e"), "-e", f"sam3:{notes}"]
    )
    assert result.exit_code == 1 and "not a PyTorch checkpoint" in result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output


def test_truncated_and_flipped_checkpoints_are_named(tmp_path):
    import torch

    from anatomy.encoders.checkpoints import read_state_dict, save_state_dict

    state = {"w": torch.arange(4096, dtype=torch.float32).reshape(64, 64)}
    for name in ("w.pt", "w.safetensors"):
        path = save_state_dict(state, tmp_path / name)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
            read_state_dict(path)
        assert str(path) in info.value.message
    path = save_state_dict(state, tmp_path / "flip.pt")
    data = bytearray(path.read_bytes())
    data[len(data) - 30] ^= 0xFF  # inside the zip's central directory
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert str(path) in info.value.message and "\n" not in info.value.message


def test_same_weights_give_the_same_checkpoint_bytes_whatever_the_file_name(tmp_path):
    import torch

    from anatomy.encoders.checkpoints import save_state_dict

    state = {"w": torch.arange(6.0)}
    a = save_state_dict(state, tmp_path / "a.pt").read_bytes()
    b = save_state_dict(state, tmp_path / "other_name.pt").read_bytes()
    assert a == b


def test_clean_temporaries_removes_only_a_killed_writers_files(tmp_path):
    from anatomy.encoders.checkpoints import clean_temporaries

    stale = [tmp_path / ".model.abc123.safetensors", tmp_path / ".config.json.x1y2.tmp"]
    kept = [tmp_path / "model.safetensors", tmp_path / "config.json", tmp_path / ".other.abc.safetensors"]
    for path in stale + kept:
        path.write_bytes(b"x")
    removed = clean_temporaries(tmp_path, ("model.safetensors", "config.json"))
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_each_family_warm_up_runs_on_the_meta_device():
    """A family's warm_up (what `anatomy cost` runs before measuring a model) builds on the meta device."""
    import torch

    from anatomy.encoders import FAMILIES

    warmed = [f for f in dict.fromkeys(FAMILIES.values()) if f.warm_up is not None]
    assert {f.name for f in warmed} >= {"sam3", "litetext", "student"}
    for family in warmed:
        with torch.device("meta"):
            family.warm_up()
