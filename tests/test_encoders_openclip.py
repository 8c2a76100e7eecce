"""open_clip text towers: per-token outputs equal open_clip's own forward; weights load strictly."""

from __future__ import annotations

import pytest
import torch

from anatomy.encoders import load
from anatomy.errors import CheckpointError, EncoderError

PROMPTS = ["a photo of a dog", "aerosol can", "the man on the left holding a red umbrella"]


def reference_tower(model_name: str, seed: int = 1):
    import open_clip
    from open_clip.model import _build_text_tower

    torch.manual_seed(seed)
    config = open_clip.get_model_config(model_name)
    tower = _build_text_tower(config["embed_dim"], config["text_cfg"]).eval()
    tower.output_tokens = True
    return tower


def open_clip_tokens(tower, prompts):
    from open_clip.tokenizer import tokenize

    with torch.no_grad():
        return tower(tokenize(prompts, context_length=tower.context_length))[1]


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    """A full CLIP-layout checkpoint (text keys at the top, an image tower and logit_scale beside them)."""
    tower = reference_tower("ViT-B-32")
    state = {k: v for k, v in tower.state_dict().items()} | {
        "visual.proj": torch.zeros(2),
        "logit_scale": torch.ones(()),
    }
    path = tmp_path_factory.mktemp("oc") / "open_clip_model.bin"
    torch.save({"state_dict": state}, path)
    return path, open_clip_tokens(tower, PROMPTS)


def test_clip_layout_matches_open_clip(clip_checkpoint):
    path, expected = clip_checkpoint
    encoder = load(f"open_clip:ViT-B-32:{path}", device="cpu")
    got = encoder.encode(PROMPTS)
    assert got.tokens.shape == (3, 77, 512) and encoder.causal and encoder.trained
    torch.testing.assert_close(got.tokens, expected, atol=1e-5, rtol=1e-5)
    assert "ignored 2 image-tower and logit keys" in encoder.load_notes


def test_shorter_context_of_a_causal_tower(clip_checkpoint):
    path, expected = clip_checkpoint
    encoder = load(f"open_clip:ViT-B-32:{path}", device="cpu", context_length=16)
    torch.testing.assert_close(encoder.encode(PROMPTS).tokens, expected[:, :16], atol=1e-5, rtol=1e-5)


def test_custom_text_layout_bidirectional(tmp_path):
    """MobileCLIP-S1's text tower (no causal mask) saved CustomTextCLIP-style under `text.`."""
    tower = reference_tower("MobileCLIP-S1")
    torch.save({"text." + k: v for k, v in tower.state_dict().items()}, tmp_path / "s1.pt")
    encoder = load(f"open_clip:MobileCLIP-S1:{tmp_path / 's1.pt'}", device="cpu")
    assert not encoder.causal
    torch.testing.assert_close(
        encoder.encode(PROMPTS).tokens, open_clip_tokens(tower, PROMPTS), atol=1e-5, rtol=1e-5
    )


def test_wrong_architecture_is_refused(clip_checkpoint):
    path, _ = clip_checkpoint
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load(f"open_clip:ViT-L-14:{path}")


def test_bare_tower_and_unknown_models():
    bare = load("open_clip:ViT-B-32", device="cpu")
    assert not bare.trained and bare.context_length == 77
    assert sum(bare.parameter_breakdown().values()) == bare.n_parameters
    with pytest.raises(EncoderError, match="no model config 'nope'"):
        load("open_clip:nope")
    with pytest.raises(EncoderError, match="does not use the CLIP BPE tokenizer"):
        load("open_clip:ViT-B-16-SigLIP")


def test_tokenizer_of_an_open_clip_spec_needs_no_weights_and_checks_the_config():
    """distill validates the teacher's tokenizer before any teacher work: an open_clip spec gives CLIP BPE
    from its config alone (no tower, no download, even for a tag that is not cached), and a model whose text
    tower is not CLIP BPE is refused rather than tokenized as if it were."""
    from anatomy.encoders.registry import load_tokenizer
    from anatomy.errors import EncoderError
    from anatomy.tokenizer import clip_tokenizer

    tok = load_tokenizer("open_clip:ViT-B-32:some-tag-that-is-not-cached")
    assert tok.encode(["a red car"]) == clip_tokenizer().encode(["a red car"])
    with pytest.raises(EncoderError, match="does not use the CLIP BPE tokenizer"):
        load_tokenizer("open_clip:ViT-SO400M-14-SigLIP")
