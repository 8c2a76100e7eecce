"""`hf:DIR` / `hf:ORG/NAME` read SAM3-LiteText checkpoints in transformers' layout as LiteText students.

The folders are written here with transformers' own save_pretrained (tiny configs); outputs are compared with
transformers run on the same ids (attention_mask=None: every position attended, as SAM3-LiteText runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Sam3LiteTextModel"):
    pytest.skip("this transformers has no Sam3LiteTextModel (needs >= 5.x)", allow_module_level=True)

from typer.testing import CliRunner  # noqa: E402

from anatomy.cli import app  # noqa: E402
from anatomy.encoders.registry import load, load_tokenizer  # noqa: E402
from anatomy.errors import AnatomyError  # noqa: E402
from anatomy.tokenizer import clip_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-5
PROMPTS = ["a red car parked near the tall building on the left of the road", "dog", "aerosol can", "the man"]
TEXT = dict(
    vocab_size=49408, hidden_size=32, intermediate_size=128, projection_dim=32, num_hidden_layers=4,
    num_attention_heads=2, max_position_embeddings=16,
)  # fmt: skip


def tiny_full_config(detr: int = 256):
    """A small Sam3LiteTextModel: a 2-layer ViT on 56-pixel images, one-layer heads, RepMixer text tower."""
    vision = {
        "model_type": "sam3_vision_model",
        "fpn_hidden_size": detr,
        "backbone_config": {
            "model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": 56, "patch_size": 14, "window_size": 2,
            "global_attn_indexes": [1], "pretrain_image_size": 56,
        },
    }  # fmt: skip
    small = dict(hidden_size=detr, num_attention_heads=2, intermediate_size=64)
    return transformers.Sam3LiteTextConfig(
        text_config=TEXT, vision_config=vision, geometry_encoder_config=dict(small, num_layers=1),
        detr_encoder_config=dict(small, num_layers=1), detr_decoder_config=dict(small, num_layers=1, num_queries=4),
        mask_decoder_config=dict(hidden_size=detr, num_attention_heads=2),
    )  # fmt: skip


def randomise(module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                fresh = torch.rand if key.endswith("running_var") else torch.randn
                value.copy_(fresh(value.shape, generator=gen) * (1 if key.endswith("running_var") else 0.05))
                if key.endswith("running_var"):
                    value.add_(0.5)


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> Path:
    """A tiny Sam3LiteTextModel saved with save_pretrained."""
    torch.manual_seed(0)
    model = transformers.Sam3LiteTextModel(tiny_full_config()).eval()
    randomise(model.text_encoder)
    randomise(model.text_projection, 1)
    folder = tmp_path_factory.mktemp("full") / "sam3-litetext-tiny"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> Path:
    """A Sam3LiteTextTextModel saved with save_pretrained, plus the projection file our export writes."""
    from safetensors.torch import save_file

    from anatomy.encoders.hf_litetext import PROJECTION_FILE

    model = transformers.Sam3LiteTextTextModel(transformers.Sam3LiteTextTextConfig(**TEXT)).eval()
    randomise(model, 2)
    folder = tmp_path_factory.mktemp("text") / "text-tiny"
    model.save_pretrained(folder)
    projection = torch.nn.Linear(32, 256)
    randomise(projection, 3)
    save_file(
        {f"text_projection.{k}": v.contiguous() for k, v in projection.state_dict().items()},
        folder / PROJECTION_FILE,
    )
    return folder


def ids_of(prompts, context: int = 16):
    return torch.as_tensor(clip_tokenizer()(prompts, context))


def test_full_model_folder_reads_as_a_litetext_student(full_dir):
    model = transformers.Sam3LiteTextModel.from_pretrained(full_dir).eval()
    encoder = load(f"hf:{full_dir}", device="cpu")
    assert encoder.context_length == 16 and encoder.output_dim == 256 and encoder.tokenizer.name == "clip"
    assert load_tokenizer(f"hf:{full_dir}").name == "clip"
    ids = ids_of(PROMPTS)
    with torch.no_grad():
        theirs = model.get_text_features(input_ids=ids).pooler_output
    ours = encoder.encode(PROMPTS)
    assert float((ours.tokens - theirs).abs().max()) < TOL
    assert any("text_projection" in note for note in encoder.load_notes)
    # an explicit longer context resizes the file's table as transformers does at that length
    long = load(f"hf:{full_dir}", device="cpu", context_length=32)
    with torch.no_grad():
        theirs32 = model.get_text_features(input_ids=ids_of(PROMPTS, 32)).pooler_output
    assert float((long.encode(PROMPTS).tokens - theirs32).abs().max()) < TOL
    assert any("resizing" in note for note in long.load_notes)


def test_text_model_folder_reads_with_its_projection(text_dir, real_prompts):
    model = transformers.Sam3LiteTextTextModel.from_pretrained(text_dir).eval()
    from safetensors.torch import load_file

    projection = load_file(text_dir / "text_projection.safetensors")
    encoder = load(f"hf:{text_dir}", device="cpu")
    ids = ids_of(real_prompts)
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state
    theirs = hidden @ projection["text_projection.weight"].T + projection["text_projection.bias"]
    assert float((encoder.encode(real_prompts).tokens - theirs).abs().max()) < TOL


def test_refusals_are_one_line_errors(text_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(text_dir, bare)
    (bare / "text_projection.safetensors").unlink()
    with pytest.raises(AnatomyError, match="text_projection"):
        load(f"hf:{bare}", device="cpu")
    shutil.copyfile(text_dir / "text_projection.safetensors", bare / "text_projection.safetensors")
    config = json.loads((text_dir / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({**config, "repmixer_kernel_size": 7}))
    with pytest.raises(AnatomyError, match="repmixer_kernel_size"):
        load(f"hf:{bare}", device="cpu")


@pytest.fixture(scope="module")
def real_prompts(shared_data) -> list[str]:
    names = json.loads((shared_data / "lvis" / "lvis_v1_categories.json").read_text())
    return [c["name"].replace("_", " ") for c in names[::40]]


def test_hub_cache_offline(full_dir, tmp_path):
    """hf:ORG/NAME through a populated Hugging Face cache (HF_HUB_CACHE), with the hub offline."""
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--org--sam3-litetext-tiny" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in full_dir.iterdir():
        os.link(path, snapshot / path.name)  # the cache normally links blobs; a hard link reads the same
    (cache / "models--org--sam3-litetext-tiny" / "refs").mkdir()
    (cache / "models--org--sam3-litetext-tiny" / "refs" / "main").write_text(commit)
    env = {
        **os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    code = (
        "import json; from anatomy.encoders.registry import load; "
        "e = load('hf:org/sam3-litetext-tiny', device='cpu'); "
        f"print(json.dumps(e.encode({PROMPTS!r}).tokens.tolist()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    via_hub = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    direct = load(f"hf:{full_dir}", device="cpu").encode(PROMPTS).tokens
    assert torch.equal(via_hub, direct)
    missing = subprocess.run(
        [sys.executable, "-c", "from anatomy.encoders.registry import load; load('hf:org/absent', device='cpu')"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode != 0 and "not in the Hugging Face cache" in missing.stderr


def test_audit_agreement_and_init_on_a_saved_model(full_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    words = ["dog", "cat", "red car", "kite", "bench", "tall tree", "boat", "blue cup", "horse", "white bus"]
    prompts.write_text(
        "\n".join(f"{t} {w}" for t in ("a photo of a", "the", "a small", "two") for w in words) + "\n"
    )
    result = CliRunner().invoke(
        app,
        ["audit", str(prompts), "-e", f"hf:{full_dir}", "--out", str(tmp_path / "a"), "--json", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    results = tmp_path / "a" / "encoders" / "hf-sam3-litetext-tiny" / "results"
    assert {"positions.json", "dims.json", "spectrum.json"} <= {p.name for p in results.iterdir()}
    assert f"hf:{full_dir}" in (results.parent / "spec.txt").read_text()
    corpus = tmp_path / "a" / "corpus.parquet"
    assert corpus.exists()
    # the same weights as hf: and through transformers itself: perfect agreement
    result = CliRunner().invoke(
        app,
        ["agreement", "--teacher", f"transformers:{full_dir}", "--student", f"hf:{full_dir}", "--corpus",
         str(corpus), "--out", str(tmp_path / "g"), "--json", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    agreement = json.loads(result.stdout)
    text = json.dumps(agreement)
    assert "token" in text and "cosine" in text
    cosines = [v for k, v in _flat(agreement) if "cosine" in k and "mean" in k]
    assert cosines and all(abs(c - 1.0) < 1e-5 for c in cosines), cosines
    # distill --init hf:DIR: a student of the same body starts from exactly those tensors
    from anatomy.distill.init import initialise_from
    from anatomy.encoders import hf_litetext, mobileclip

    shape, table = hf_litetext.shape_of(TEXT, 256, "test")
    student = mobileclip.build_tower(shape, 16)
    notes = initialise_from(f"hf:{full_dir}", student, 16)
    source = load(f"hf:{full_dir}", device="cpu").module.state_dict()
    target = student.state_dict()
    assert all(torch.equal(target[k], source[k]) for k in source if not k.startswith("projector."))
    assert any("copied" in n for n in notes)


def _flat(obj, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}.{i}")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)


def test_sam3_config_keeps_loading_the_teacher(tmp_path):
    """A `sam3` Hugging Face folder through hf: is the SAM3 teacher (as sam3:FILE reads it)."""
    from anatomy.encoders.checkpoints import save_state_dict
    from anatomy.encoders.sam3 import Sam3Config, Sam3Text, hf_state_dict

    torch.manual_seed(0)
    module = Sam3Text(
        Sam3Config(context_length=32, width=64, layers=2, mlp_width=128, projection_dim=64, output_dim=32)
    )
    folder = tmp_path / "sam3"
    save_state_dict(hf_state_dict(module), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "sam3"}))
    via_hf = load(f"hf:{folder}", device="cpu")
    via_sam3 = load(f"sam3:{folder / 'model.safetensors'}", device="cpu")
    assert via_hf.causal and torch.equal(via_hf.encode(PROMPTS).tokens, via_sam3.encode(PROMPTS).tokens)


def test_cost_measures_ours_beside_transformers(full_dir, tmp_path):
    """`anatomy cost -e hf:X -e transformers:X`: the same weights through both implementations, one run."""
    args = ["cost", "-e", f"hf:{full_dir}", "-e", f"transformers:{full_dir}", "--batch", "1,2", "--repeats", "2",
            "--warmup", "0", "--out", str(tmp_path / "o"), "--json", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["encoder"] for r in rows] == [f"hf:{full_dir}", f"transformers:{full_dir}"]
    assert (
        rows[0]["breakdown"] == rows[1]["breakdown"] and rows[0]["output_dim"] == rows[1]["output_dim"] == 256
    )
    assert all(r["latency_ms_p50"] > 0 and r["context_length"] == 16 for r in rows)
