"""Our LiteText bodies equal transformers' Sam3LiteTextTextModel (+ Sam3LiteTextModel.text_projection).

transformers builds the model with its own random init (then every tensor, BatchNorm statistics and layer
scales included, is re-drawn so no branch hides behind an identity); its state dict is mapped into our tower
(anatomy.encoders.hf_litetext.from_hf) and back (to_hf), and both run on real prompts at the students'
context 16, padded as SAM3 pads (CLIP ids, 0 after <end_of_text>, every position attended).
"""

from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Sam3LiteTextTextModel"):
    pytest.skip("this transformers has no Sam3LiteTextTextModel (needs >= 5.x)", allow_module_level=True)

from anatomy.encoders import hf_litetext, mobileclip  # noqa: E402
from anatomy.encoders.litetext_modules import TowerShape  # noqa: E402
from anatomy.tokenizer import clip_tokenizer  # noqa: E402

TOL = 1e-5
CONTEXT = 16


def real_prompts(shared_data, n_long: int = 40, n_short: int = 40) -> list[str]:
    """RefCOCO expressions (several longer than the context: truncated as SAM3 truncates) and LVIS names."""
    with open(shared_data / "refcoco" / "refcocog_umd_val.csv", newline="") as handle:
        sentences = [row["sent"] for row in csv.DictReader(handle)]
    names = [
        c["name"].replace("_", " ")
        for c in json.loads((shared_data / "lvis" / "lvis_v1_categories.json").read_text())
    ]
    long = sorted(set(sentences), key=lambda s: (-len(s), s))[:5] + sorted(set(sentences))[:n_long]
    return long + sorted(names)[::37][:n_short]


def randomise(module) -> None:
    """Every float tensor re-drawn (BatchNorm variances positive), seeded."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if not value.dtype.is_floating_point:
                continue
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
            else:
                value.copy_(torch.randn(value.shape, generator=gen) * 0.05)


def build_hf(shape: TowerShape, table: int):
    config = {k: v for k, v in hf_litetext.text_config(shape, table).items() if k != "model_type"}
    model = transformers.Sam3LiteTextTextModel(transformers.Sam3LiteTextTextConfig(**config)).eval()
    projection = torch.nn.Linear(shape.width, shape.output_dim).eval()
    randomise(model)
    randomise(projection)
    return model, projection


def ours_from(model, projection, shape: TowerShape, context: int, table: int):
    state = hf_litetext.from_hf(model.state_dict(), projection.state_dict(), "test")
    module = mobileclip.empty_tower(shape, context, table)
    mobileclip.load_weights(module, state, "test", [])
    return module.eval()


def compare(module, model, projection, ids) -> tuple[float, float]:
    """(max |diff| per token, max |diff| EOT-pooled) between our tower and transformers on the same ids."""
    with torch.no_grad():
        ours_tokens = module(ids)
        out = model(input_ids=ids)
        theirs_tokens = projection(out.last_hidden_state)  # Sam3LiteTextModel.get_text_features
        rows = torch.arange(ids.shape[0])
        ours_pooled = module.hidden(ids)[rows, ids.argmax(-1)] @ module.encoder.projection_layer
    return float((ours_tokens - theirs_tokens).abs().max()), float(
        (ours_pooled - out.pooler_output).abs().max()
    )


def hf_components(model, projection) -> dict[str, int]:
    """transformers' parameters grouped by its own module names into `anatomy encoders`' components."""
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        if name.startswith("embeddings.token_embedding"):
            group = "token_embedding"
        elif name.startswith("embeddings.position_embedding"):
            group = "positional_embedding"
        elif name.startswith("layers."):
            layer = model.layers[int(name.split(".")[1])]
            group = (
                "repmixer_blocks" if type(layer).__name__.endswith("RepMixerBlock") else "transformer_layers"
            )
        elif name.startswith("final_layer_norm"):
            group = "final_layer_norm"
        else:
            assert name == "projection.weight", name
            group = "projection_layer (unused)"
        groups[group] = groups.get(group, 0) + p.numel()
    groups["projector"] = sum(p.numel() for p in projection.parameters())
    return groups


@pytest.fixture(scope="module")
def prompt_ids(shared_data):
    return torch.as_tensor(clip_tokenizer()(real_prompts(shared_data), CONTEXT))


BODIES = {
    "s0": mobileclip.tower_shape("s0"),
    "s1": mobileclip.tower_shape("s1"),
    "l": mobileclip.tower_shape("l"),
    "custom": TowerShape(96, 4, ("attn",) * 3, mlp_ratio=2, output_dim=64),
}


@pytest.mark.parametrize("body", list(BODIES))
def test_body_equals_transformers(body, prompt_ids):
    shape = BODIES[body]
    model, projection = build_hf(shape, CONTEXT)
    module = ours_from(model, projection, shape, CONTEXT, CONTEXT)
    assert hf_litetext.kind_of(shape) == (None if body == "custom" else body)
    # padding as SAM3 pads: 0 after <end_of_text>, and short prompts are most of the batch
    assert (prompt_ids == 0).any() and (prompt_ids[:, -1] == clip_tokenizer().eot_id).any()
    tokens, pooled = compare(module, model, projection, prompt_ids)
    assert tokens < TOL and pooled < TOL, (body, tokens, pooled)
    # and back: our state dict maps onto exactly transformers' keys and tensors
    text, proj = hf_litetext.to_hf(module.state_dict())
    theirs = model.state_dict()
    assert set(text) == set(theirs)
    assert all(torch.equal(text[k], theirs[k]) for k in theirs)
    assert all(torch.equal(proj[k], v) for k, v in projection.state_dict().items())


@pytest.mark.parametrize("body", ["s0", "s1", "l"])
def test_parameter_counts_match_anatomy_encoders(body):
    """Per component, transformers' counts equal `anatomy encoders` (describe_all, at context 16)."""
    from anatomy.encoders.registry import describe_all

    shape = BODIES[body]
    config = {k: v for k, v in hf_litetext.text_config(shape, CONTEXT).items() if k != "model_type"}
    with torch.device("meta"):
        model = transformers.Sam3LiteTextTextModel(transformers.Sam3LiteTextTextConfig(**config))
        projection = torch.nn.Linear(shape.width, shape.output_dim)
    ours = next(row for row in describe_all(CONTEXT) if row["name"] == f"litetext-{body}")
    theirs = hf_components(model, projection)
    assert theirs == ours["components"]
    assert sum(theirs.values()) == ours["parameters"]
    if body == "s0":  # the fact: 6 layers, 16 positions, + text_projection 512 -> 256
        assert ours["parameters"] == 42_541_312


def test_positional_interpolation_is_the_same(prompt_ids):
    """A 16-row table run at 32 tokens: both resize bilinearly (align_corners=False) and agree."""
    shape = BODIES["s1"]
    model, projection = build_hf(shape, CONTEXT)
    module = ours_from(model, projection, shape, 32, CONTEXT)
    ids = torch.nn.functional.pad(prompt_ids, (0, 16))  # the same prompts padded to 32 (SAM3's length)
    tokens, pooled = compare(module, model, projection, ids)
    assert tokens < TOL and pooled < TOL
    # not vacuous: the resized table differs from the stored one sliced to 16
    assert not torch.allclose(
        module.positional_table()[:CONTEXT], module.encoder.positional_embedding(CONTEXT)[0]
    )


def test_transformers_padding_mask_is_a_documented_difference(prompt_ids):
    """Sam3LiteTextModel passes the processor's attention mask: padding keys leave the attention layers.

    Our tower (and the original LiteText) attends to padding; with all positions valid the two agree, with
    padding masked they differ at the valid positions (by an amount the docstring of hf_litetext names)."""
    shape = BODIES["s0"]
    model, projection = build_hf(shape, CONTEXT)
    module = ours_from(model, projection, shape, CONTEXT, CONTEXT)
    valid = torch.as_tensor(
        [[j <= int(row.argmax()) for j in range(CONTEXT)] for row in prompt_ids], dtype=torch.long
    )
    with torch.no_grad():
        ours = module(prompt_ids)
        full = projection(
            model(input_ids=prompt_ids, attention_mask=torch.ones_like(valid)).last_hidden_state
        )
        masked = projection(model(input_ids=prompt_ids, attention_mask=valid).last_hidden_state)
    assert float((ours - full).abs().max()) < TOL
    padded = valid.sum(1) < CONTEXT
    diff = (ours - masked).abs().amax(-1)  # [B, L]
    assert float(diff[padded][valid[padded].bool()].max()) > 1e-3  # padded prompts change
    assert float(diff[~padded].max()) < TOL  # prompts that fill the context do not
