"""`transformers:PATH | transformers:ORG/NAME`: a SAM3-LiteText student run by transformers' own modules.

The reference beside `hf:` (which reads the same folder into our LiteText tower): the same weights, the
same CLIP ids, every position attended (attention_mask=None, as SAM3-LiteText runs its students), per-token
outputs = `Sam3LiteTextModel.get_text_features(ids).pooler_output`. `anatomy cost -e hf:X -e transformers:X`
measures both implementations in one run; `agreement --teacher transformers:X --student hf:X` compares them.
"""

from __future__ import annotations

from pathlib import Path

from anatomy.errors import AnatomyError, EncoderError


def _module_class():
    import torch

    class TransformersLiteText(torch.nn.Module):
        """(ids, valid) -> text_projection(text_encoder(ids).last_hidden_state); padding attended."""

        def __init__(self, text_model, projection):
            super().__init__()
            self.text_encoder, self.text_projection = text_model, projection

        def forward(self, ids, valid=None):
            return self.text_projection(self.text_encoder(input_ids=ids).last_hidden_state)

        def token_embedding_matrix(self):
            return self.text_encoder.embeddings.token_embedding.weight

        def positional_table(self):
            table = self.text_encoder.embeddings.position_embedding.position_embedding
            return table.reshape(table.shape[2], table.shape[3])

        def parameter_breakdown(self) -> dict[str, int]:
            """transformers' modules under the component names `anatomy encoders` uses for our tower."""
            groups: dict[str, int] = {}
            for name, p in self.text_encoder.named_parameters():
                if name.startswith("embeddings.token_embedding"):
                    group = "token_embedding"
                elif name.startswith("embeddings.position_embedding"):
                    group = "positional_embedding"
                elif name.startswith("layers."):
                    layer = self.text_encoder.layers[int(name.split(".")[1])]
                    mixer = type(layer).__name__.endswith("RepMixerBlock")
                    group = "repmixer_blocks" if mixer else "transformer_layers"
                elif name.startswith("final_layer_norm"):
                    group = "final_layer_norm"
                else:
                    group = "projection_layer (unused)"
                groups[group] = groups.get(group, 0) + p.numel()
            groups["projector"] = sum(p.numel() for p in self.text_projection.parameters())
            return groups

    return TransformersLiteText


def load_transformers(
    directory: Path, *, name: str, device: str | None = None, dtype: str = "fp32", context_length=None
):
    """A ModuleEncoder over transformers' Sam3LiteTextTextModel (+ text_projection) of a local folder (the
    family in anatomy.encoders.hf resolves a hub id to its cached snapshot first)."""
    import os

    from anatomy.encoders import hf_litetext
    from anatomy.encoders.base import ModuleEncoder
    from anatomy.tokenizer import clip_tokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = hf_litetext.read_config(directory)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        text_model, projection = _modules(directory, config, name)
    except AnatomyError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged config or weights file inside transformers/safetensors
        why = " ".join(str(error).split())[:300]
        raise EncoderError(
            f"{directory}: transformers cannot load it ({type(error).__name__}: {why})"
        ) from None
    table = int(text_model.config.max_position_embeddings)
    return ModuleEncoder(
        _module_class()(text_model, projection),
        clip_tokenizer(),
        name=name,
        context_length=context_length or table,
        output_dim=int(projection.out_features),
        causal=False,
        trained=True,
        device=device,
        dtype=dtype,
    )


def _modules(directory: Path, config: dict, name: str):
    """(Sam3LiteTextTextModel, text_projection Linear) of the folder, strictly loaded."""
    import torch
    import transformers

    from anatomy.encoders import hf_litetext
    from anatomy.encoders.checkpoints import find_prefix

    kind = config.get("model_type")
    if kind == hf_litetext.FULL_MODEL_TYPE:
        # transformers' own text modules, strictly loaded with the file's text tensors: the vision and
        # detector weights of a full segmenter are never read, so the memory is the text encoder's alone
        files = hf_litetext.weight_files(directory)
        prefix = find_prefix(files, "text_encoder." + hf_litetext.TOKEN_KEY) or ""
        tensors = hf_litetext.read_tensors(
            files, [k for k in files if k.startswith((prefix + "text_encoder.", prefix + "text_projection."))]
        )
        text_cfg = transformers.Sam3LiteTextTextConfig(**(config.get("text_config") or {}))
        text_model = transformers.Sam3LiteTextTextModel(text_cfg)
        weight = tensors[prefix + "text_projection.weight"]
        projection = torch.nn.Linear(weight.shape[1], weight.shape[0])
        for module, part in ((text_model, "text_encoder."), (projection, "text_projection.")):
            state = {k[len(prefix + part) :]: v for k, v in tensors.items() if k.startswith(prefix + part)}
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as error:  # missing / unexpected / mis-shaped keys: one line naming them
                why = " ".join(str(error).split())[:300]
                raise EncoderError(
                    f"{directory}: {part.rstrip('.')} does not load strictly ({why})"
                ) from None
    elif kind == hf_litetext.TEXT_MODEL_TYPE:
        from safetensors.torch import load_file

        text_model = transformers.Sam3LiteTextTextModel.from_pretrained(str(directory), local_files_only=True)
        tensors = load_file(str(directory / hf_litetext.PROJECTION_FILE))
        weight = tensors["text_projection.weight"]
        projection = torch.nn.Linear(weight.shape[1], weight.shape[0])
        projection.load_state_dict({k.rsplit(".", 1)[1]: v for k, v in tensors.items()})
    else:
        raise EncoderError(f"{name}: model_type {kind!r} is not {' or '.join(hf_litetext.MODEL_TYPES)}")
    return text_model, projection
