"""Any open_clip text tower (CLIP BPE tokenizer) as a TextEncoder with per-token outputs.

`open_clip:MODEL` builds the text tower of an open_clip model config with random weights (untrained);
`open_clip:MODEL:WEIGHTS` loads a local checkpoint strictly: a full CLIP state dict (text keys at the top,
`visual.*` and `logit_*` ignored and reported) or a CustomTextCLIP one (keys under `text.`);
`open_clip:MODEL:TAG` takes the weights of one of open_clip's pretrained tags (e.g. ViT-B-32 +
laion2b_s34b_b79k), resolved and cached by open_clip itself (the Hugging Face cache for hub-hosted tags);
`open_clip:hf-hub:ORG/NAME` takes config and weights from a Hugging Face hub repository (open_clip's
`hf-hub:` schema, same cache). The cache is always asked first (anatomy.encoders.hub): a cached model never
touches the network, and one that is not cached while the hub is offline (HF_HUB_OFFLINE=1, or no
connection) is a one-line error at once naming the model and how to make it available. Only the text
tower is built, never the image tower. Per-token outputs are ln_final(transformer(x)) at width D, before
any pooling or projection; a context shorter than the model's uses the first positions of its table.
"""

from __future__ import annotations

from pathlib import Path

from anatomy.errors import EncoderError
from anatomy.tokenizer import CLIP_VOCAB_SIZE

AVAILABILITY_HINT = (
    "download it where there is network (it lands in the Hugging Face cache, ~/.cache/huggingface/hub) and "
    "copy that cache here, or point HF_HUB_CACHE / HF_HOME at a cache that holds it; or give a local weights file"
)


def _fetch(what: str, fn):
    """Run an open_clip hub download, cache first; any failure is one EncoderError line naming `what`."""
    from anatomy.encoders.hub import from_cache_or_hub

    return from_cache_or_hub(what, fn, AVAILABILITY_HINT)


def _download_tag(what: str, pretrained: dict) -> str:
    """The weights file of an open_clip pretrained tag: from the hub (cache first) or its URL (cached file first)."""
    import open_clip
    from open_clip.pretrained import has_hf_hub

    url = pretrained.get("url", "")
    if pretrained.get("hf_hub") and has_hf_hub() or not url:
        return _fetch(what, lambda: open_clip.download_pretrained(pretrained))
    from anatomy.encoders.hub import from_cache_or_hub

    def cached() -> str:  # where open_clip keeps URL downloads; it checks the file's hash itself
        if not (Path("~/.cache/clip").expanduser() / Path(url).name).is_file():
            raise FileNotFoundError(f"{Path(url).name} is not in ~/.cache/clip")
        return open_clip.download_pretrained(pretrained)

    return from_cache_or_hub(
        what, lambda: open_clip.download_pretrained(pretrained), AVAILABILITY_HINT, cached=cached, url=url
    )


def resolve(model_name: str, weights: str | Path | None) -> tuple[dict, str | None]:
    """(open_clip model config, local weights file or None) for MODEL[:WEIGHTS|:TAG] and hf-hub:ORG/NAME."""
    import open_clip

    if model_name == "hf-hub":
        if not weights:
            raise EncoderError("open_clip:hf-hub: names no repository", "use open_clip:hf-hub:ORG/NAME")
        from open_clip.factory import _get_hf_config
        from open_clip.pretrained import download_pretrained_from_hf

        what = f"open_clip:hf-hub:{weights}"
        config = _fetch(what, lambda: _get_hf_config(str(weights)))
        if "model_cfg" not in config:
            raise EncoderError(f"{what}: its open_clip_config.json has no model_cfg")
        return config["model_cfg"], _fetch(what, lambda: download_pretrained_from_hf(str(weights)))
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise EncoderError(
            f"open_clip has no model config '{model_name}'",
            "list them with: python -c 'import open_clip; print(open_clip.list_models())'",
        )
    if weights is None or Path(weights).exists():
        return config, None if weights is None else str(weights)
    tag = str(weights)
    pretrained = open_clip.get_pretrained_cfg(model_name, tag)
    if not pretrained:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise EncoderError(
            f"open_clip:{model_name}:{tag}: {tag} is neither a file nor one of open_clip's pretrained tags "
            f"for {model_name}",
            f"its tags: {', '.join(tags) or 'none'}; or give the path of a local weights file",
        )
    return config, _download_tag(f"open_clip:{model_name}:{tag}", pretrained)


def _clip_text_cfg(model_name: str, config: dict):
    """The config's text tower settings, refused unless it is a CLIP BPE text transformer."""
    from open_clip.model import CLIPTextCfg

    text_cfg = CLIPTextCfg(**config["text_cfg"])
    if text_cfg.hf_model_name or text_cfg.hf_tokenizer_name or text_cfg.vocab_size != CLIP_VOCAB_SIZE:
        raise EncoderError(
            f"open_clip:{model_name} does not use the CLIP BPE tokenizer and text transformer",
            "load Hugging Face text towers with hf:PATH instead",
        )
    return text_cfg


def _text_tower(model_name: str, config: dict | None = None):
    from open_clip.model import _build_text_tower

    config = config if config is not None else resolve(model_name, None)[0]
    text_cfg = _clip_text_cfg(model_name, config)
    if text_cfg.embed_cls:
        raise EncoderError(
            f"open_clip:{model_name}: CoCa-style towers (appended class token) are not supported"
        )
    return _build_text_tower(config["embed_dim"], text_cfg, quick_gelu=config.get("quick_gelu", False))


def _module_class():
    import torch

    class OpenClipText(torch.nn.Module):
        """(ids, valid) -> ln_final(transformer(tokens + positions)) [B, L, width]."""

        def __init__(self, tower):
            super().__init__()
            self.tower = tower

        def forward(self, ids, valid=None):
            length = ids.shape[1]
            x, mask = self.tower._embeds(ids)  # open_clip's own embedding and mask logic
            if mask is not None and mask.dim() == 2 and mask.shape[-1] != length:
                mask = mask[:length, :length]  # the causal mask is built for the full table
            return self.tower.ln_final(self.tower.transformer(x, attn_mask=mask))

        def token_embedding_matrix(self):
            return self.tower.token_embedding.weight

        def positional_table(self):
            return self.tower.positional_embedding

        def parameter_breakdown(self) -> dict[str, int]:
            groups: dict[str, int] = {}
            for name, p in self.tower.named_parameters():
                groups[name.split(".")[0]] = groups.get(name.split(".")[0], 0) + p.numel()
            return groups

    return OpenClipText


def text_state(state: dict, notes: list[str]) -> dict:
    """The text tower's keys of a CLIP or CustomTextCLIP state dict."""
    from anatomy.encoders.checkpoints import take_prefix

    if any(k.startswith("text.") for k in state):
        return take_prefix(state, "text.", notes)
    dropped = [k for k in state if k.startswith("visual.") or k.startswith("logit_")]
    if dropped:
        notes.append(f"ignored {len(dropped)} image-tower and logit keys")
    return {k: v for k, v in state.items() if not (k.startswith("visual.") or k.startswith("logit_"))}


def load_open_clip(
    model_name: str,
    weights: str | Path | None,
    *,
    name: str,
    device: str | None = None,
    dtype: str = "fp32",
    context_length: int | None = None,
):
    from anatomy.encoders.base import ModuleEncoder
    from anatomy.encoders.checkpoints import load_strict, read_state_dict
    from anatomy.tokenizer import clip_tokenizer

    config, weights = resolve(model_name, weights)
    tower = _text_tower(model_name, config)
    notes: list[str] = []
    if weights is not None:
        state, notes = read_state_dict(weights)
        notes = load_strict(tower, text_state(state, notes), source=weights, notes=notes).notes
    table = tower.positional_embedding.shape[0]
    context = context_length or table
    if context > table:
        from anatomy.encoders.family import ContextError

        raise ContextError(f"{name}: context {context} exceeds the model's {table} positions", table)
    pad_masked = bool(getattr(tower, "use_pad_mask", False))
    encoder = ModuleEncoder(
        _module_class()(tower),
        clip_tokenizer(),
        name=name,
        context_length=context,
        output_dim=int(tower.width),
        causal=tower.attn_mask is not None and not pad_masked,
        trained=weights is not None,
        device=device,
        dtype=dtype,
    )
    encoder.masks_padding = pad_masked
    encoder.load_notes = notes
    return encoder


# ------------------------------------------------------------------------------------ the open_clip family


def _parse(prefix: str, rest: str | None):
    from anatomy.encoders.family import Spec

    if rest is None:
        raise EncoderError("encoder 'open_clip' needs a model name", "use open_clip:MODEL[:WEIGHTS]")
    model, _, weights = rest.partition(":")
    return Spec("open_clip", path=weights or None, kind=model)


def _load(spec, request):
    weights = (
        spec.path
    )  # a local file, one of open_clip's pretrained tags, or ORG/NAME after hf-hub (resolve())
    return load_open_clip(
        spec.kind,
        weights,
        name=request.name,
        device=request.device,
        dtype=request.dtype,
        context_length=request.context_length,
    )


def _warm_up() -> None:
    import open_clip  # noqa: F401  (its import is a runtime cost of the family, not of a model)


def _family():
    from anatomy.encoders.family import Family

    return Family(
        "open_clip", "open_clip:MODEL[:WEIGHTS|:TAG] | open_clip:hf-hub:ORG/NAME", load=_load, parse=_parse,
        fingerprint=_fingerprint, tokenizer=_tokenizer, warm_up=_warm_up,
    )  # fmt: skip


def _tokenizer(spec):
    """CLIP BPE, after checking the model's config (no tower built, no weights fetched)."""
    from anatomy.tokenizer import clip_tokenizer

    if spec.kind == "hf-hub":
        from open_clip.factory import _get_hf_config

        what = f"open_clip:hf-hub:{spec.path}"
        config = _fetch(what, lambda: _get_hf_config(str(spec.path))).get("model_cfg")
        if not config:
            raise EncoderError(f"{what}: its open_clip_config.json has no model_cfg")
    else:
        import open_clip

        config = open_clip.get_model_config(spec.kind)
        if config is None:
            raise EncoderError(f"open_clip has no model config '{spec.kind}'")
    _clip_text_cfg(str(spec.kind), config)
    return clip_tokenizer()


def _fingerprint(spec):
    """Local weights are hashed; a pretrained tag or hub repository is identified by the spec itself."""
    return Path(spec.path) if spec.path is not None and Path(spec.path).exists() else None


FAMILIES = {"open_clip": _family()}
