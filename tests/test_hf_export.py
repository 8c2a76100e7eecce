"""`anatomy export --format hf`: a student as transformers' Sam3LiteTextTextModel, or with --base as a full
Sam3LiteTextModel; loaded back by transformers itself and by hf:OUT."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Sam3LiteTextModel"):
    pytest.skip("this transformers has no Sam3LiteTextModel (needs >= 5.x)", allow_module_level=True)

from test_hf_read import tiny_full_config  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from anatomy.cli import app  # noqa: E402
from anatomy.encoders.registry import load  # noqa: E402
from anatomy.encoders.student import StudentConfig, build_student, load_student, save_student  # noqa: E402
from anatomy.tokenizer import clip_tokenizer  # noqa: E402

PROMPTS = ["a red car parked near the tall building on the left of the road", "dog", "aerosol can", "the man"]


def _student(folder: Path, cfg: StudentConfig, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    module = build_student(cfg)
    with torch.no_grad():  # nothing left at its init value: BatchNorm statistics and layer scales too
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                value.copy_(
                    torch.rand_like(value) + 0.5
                    if key.endswith("running_var")
                    else torch.randn_like(value) * 0.05
                )
    save_student(module, cfg, folder / "checkpoints" / "best")
    return folder


def export(args: list[str]) -> dict:
    result = CliRunner().invoke(app, ["export", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def s0_run(tmp_path_factory) -> Path:
    return _student(tmp_path_factory.mktemp("s0") / "run", StudentConfig("litetext-s0", context_length=16))


def test_s0_export_loads_in_transformers_and_back(s0_run, tmp_path, shared_data):
    out = tmp_path / "s0-hf"
    summary = export([str(s0_run), "--format", "hf", "--out", str(out)])
    assert summary["model"] == "Sam3LiteTextTextModel" and summary["round_trip_max_abs_diff"] <= 1e-6
    assert json.loads((out / "anatomy_export.json").read_text())["widened_vocabulary"] is False
    model, info = transformers.Sam3LiteTextTextModel.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.config.max_position_embeddings == 16 and model.config.use_repmixer_blocks
    # round trip: hf:OUT gives the student's outputs
    names = json.loads((shared_data / "lvis" / "lvis_v1_categories.json").read_text())
    prompts = PROMPTS + [c["name"].replace("_", " ") for c in names[::50]]
    student = load_student(s0_run / "checkpoints" / "best", device="cpu").encode(prompts)
    back = load(f"hf:{out}", device="cpu").encode(prompts)
    assert float((student.tokens - back.tokens).abs().max()) <= 1e-6
    assert float((student.pooled - back.pooled).abs().max()) <= 1e-6
    # the tokenizer files: transformers' CLIP tokenizers give our ids (SAM3 pads with 0)
    ids = clip_tokenizer()(prompts, 16)
    for cls in (transformers.CLIPTokenizer, transformers.AutoTokenizer):
        tok = cls.from_pretrained(out)
        theirs = tok(prompts, padding="max_length", max_length=16, truncation=True)["input_ids"]
        mine = ids.tolist()
        # transformers truncates before the end token; SAM3 keeps <end_of_text> last: compare unclipped rows
        short = [i for i, row in enumerate(mine) if row[-1] == 0]
        assert [theirs[i] for i in short] == [mine[i] for i in short] and len(short) > len(prompts) // 2


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A tiny random Sam3LiteTextModel (256-wide detector, as SAM3) with its image processor config."""
    torch.manual_seed(0)
    model = transformers.Sam3LiteTextModel(tiny_full_config()).eval()
    folder = tmp_path_factory.mktemp("base") / "base"
    model.save_pretrained(folder)
    transformers.Sam3ImageProcessor(size={"height": 56, "width": 56}).save_pretrained(folder)
    return folder


def test_base_export_is_a_full_segmenter_with_our_text_encoder(base_dir, tmp_path):
    run = _student(
        tmp_path / "run", StudentConfig("custom", layers=2, width=64, heads=2, context_length=16), 1
    )
    out = tmp_path / "full"
    summary = export([str(run), "--format", "hf", "--out", str(out), "--base", str(base_dir)])
    assert summary["model"] == "Sam3LiteTextModel" and summary["base"] == str(base_dir)
    model, info = transformers.Sam3LiteTextModel.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    base = transformers.Sam3LiteTextModel.from_pretrained(base_dir)
    theirs, ours = base.state_dict(), model.state_dict()
    others = [k for k in theirs if not k.startswith(("text_encoder.", "text_projection."))]
    assert others and all(torch.equal(theirs[k], ours[k]) for k in others)  # vision, detector, masks kept
    # transformers' get_text_features == our encoder (attention_mask None: every position attended)
    student = load_student(run / "checkpoints" / "best", device="cpu")
    ids, valid = student.tokenize(PROMPTS)
    with torch.no_grad():
        features = model.eval().get_text_features(input_ids=torch.as_tensor(ids)).pooler_output
    assert float((features - student.encode_ids(ids, valid).tokens).abs().max()) < 1e-5
    # the processor (image processor from the base, our CLIP tokenizer files) loads from OUT
    processor = transformers.AutoProcessor.from_pretrained(out)
    text = processor(text="a red car", return_tensors="pt")["input_ids"][0].tolist()
    assert text[:5] == clip_tokenizer()(["a red car"], 32)[0].tolist()[:5]
    # a segmenter runs end to end with the student's text features
    with torch.no_grad():
        result = model(pixel_values=torch.randn(1, 3, 56, 56), input_ids=torch.as_tensor(ids[:1]))
    assert result.pred_masks.shape[0] == 1
    # refused: a base whose detector width is not the student's output width
    narrow = _student(
        tmp_path / "narrow", StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24)
    )
    result = CliRunner().invoke(
        app, ["export", str(narrow), "--format", "hf", "--out", str(tmp_path / "x"), "--base", str(base_dir)]
    )
    assert result.exit_code == 1 and "wide" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        app, ["export", str(run), "--format", "litetext", "--out", "x.pt", "--base", "y"]
    )
    assert result.exit_code == 2


def test_specialised_student_is_widened_with_a_warning(tmp_path_factory, tmp_path, caplog):
    from test_distill_train import make_tiny_setup
    from test_vocab_students import _specialised_student, _vocab

    tiny = make_tiny_setup(tmp_path_factory.mktemp("tiny"))
    tiny["vocab"], tiny["result"] = _vocab(tiny["corpus"], tmp_path_factory.mktemp("vocab"))
    run = _specialised_student(tmp_path / "run", tiny, "custom", layers=1, width=32, heads=2)
    out = tmp_path / "wide"
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(app, ["export", str(run), "--format", "hf", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "mean kept row" in result.output
    sidecar = json.loads((out / "anatomy_export.json").read_text())
    assert sidecar["widened_vocabulary"] is True and "mean kept row" in sidecar["notes"][0]
    model = transformers.Sam3LiteTextTextModel.from_pretrained(out)
    assert model.config.vocab_size == 49408
    prompts = ["a red car on the table", "a large bench"]  # words the vocabulary keeps
    original = load_student(run / "checkpoints" / "best", device="cpu").encode(prompts).tokens
    assert torch.allclose(load(f"hf:{out}", device="cpu").encode(prompts).tokens, original, atol=1e-5)


def test_a_sam3_base_gets_our_text_encoder_instead_of_clip(tmp_path):
    """--base with the SAM3 teacher's layout (model_type sam3, a CLIP text tower): its text parts replaced."""
    c = tiny_full_config().to_dict()
    parts = ("vision_config", "geometry_encoder_config", "detr_encoder_config", "detr_decoder_config")
    config = transformers.Sam3Config(
        **{k: c[k] for k in (*parts, "mask_decoder_config")},
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
    )
    torch.manual_seed(0)
    base = transformers.Sam3Model(config).eval()
    base.save_pretrained(tmp_path / "sam3")
    run = _student(
        tmp_path / "run", StudentConfig("custom", layers=1, width=32, heads=2, context_length=16), 2
    )
    summary = export(
        [str(run), "--format", "hf", "--out", str(tmp_path / "out"), "--base", str(tmp_path / "sam3")]
    )
    assert any("replaced the base's text encoder" in n for n in summary["notes"])
    model, info = transformers.Sam3LiteTextModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    theirs, ours = base.state_dict(), model.state_dict()
    kept = [k for k in theirs if k.startswith(("vision_encoder.", "detr_decoder.", "mask_decoder."))]
    assert kept and all(torch.equal(theirs[k], ours[k]) for k in kept)
    student = load_student(run / "checkpoints" / "best", device="cpu")
    ids, valid = student.tokenize(PROMPTS)
    with torch.no_grad():
        features = model.eval().get_text_features(input_ids=torch.as_tensor(ids)).pooler_output
    assert float((features - student.encode_ids(ids, valid).tokens).abs().max()) < 1e-5


BANG_PROMPTS = ["a dog!", "a dog!!", "?!", "hey!you", "!", "!!!", "wow! a cat?! no!!", "a <|endoftext|> b",
                "<|startoftext|>x", "Hello World", "don't!"]  # fmt: skip


def test_tokenizer_files_give_open_clips_ids_with_bang_and_pad_with_zero(tmp_path):
    """The pad token "!" (id 0, as SAM3 pads) must not become an added token transformers splits prompts on."""
    from open_clip.tokenizer import SimpleTokenizer

    from anatomy.distill.hf_export import write_tokenizer

    write_tokenizer(tmp_path, 16)
    reference = SimpleTokenizer()
    expected = [[reference.sot_token_id, *reference.encode(p), reference.eot_token_id] for p in BANG_PROMPTS]
    classes = [transformers.CLIPTokenizer, transformers.AutoTokenizer]
    classes += [c for c in [getattr(transformers, "CLIPTokenizerFast", None)] if c is not None]
    for cls in classes:
        for kwargs in ({}, {"use_fast": False}) if cls is transformers.AutoTokenizer else ({},):
            tok = cls.from_pretrained(tmp_path, **kwargs)
            assert tok(BANG_PROMPTS)["input_ids"] == expected, (cls, kwargs)
            assert tok.pad_token_id == 0
            padded = tok(["a dog!", "x"], padding="max_length", max_length=8)["input_ids"]
            assert padded == [[49406, 320, 1929, 256, 49407, 0, 0, 0], [49406, 343, 49407, 0, 0, 0, 0, 0]]
