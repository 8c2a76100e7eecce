"""One encoder's outputs, each distinct token sequence encoded once, shared by every analysis that reads them.

Two prompts with the same token ids (after truncation to the encoder's context) have the same outputs, so the
store keys outputs by token sequence. An analysis asks for the pooled (or per-token) outputs of a list of
prompts; only sequences never seen before are encoded. When an `anatomy embed` cache of the same encoder and
corpus exists (the default place is beside the corpus: embeddings/<encoder slug>/), its rows are read instead
of encoding them again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anatomy.batching import sequence_keep

log = logging.getLogger(__name__)

Key = tuple[int, ...]


def default_cache(corpus: str | Path, spec: str) -> Path:
    """Where `anatomy embed` writes, and analyses look for, one encoder's embeddings of a corpus."""
    from anatomy.layout import slug

    return Path(corpus).parent / "embeddings" / slug(spec)


class EmbeddingStore:
    def __init__(self, encoder, keep_tokens: bool = False):
        self.encoder = encoder
        self.keep_tokens = keep_tokens  # also keep per-token outputs of everything encoded
        self.rows_encoded = 0  # sequences this store ran through the encoder
        self._pooled: dict[Key, np.ndarray] = {}
        self._tokens: dict[Key, np.ndarray] = {}  # [valid length, D] per sequence
        self._keep = sequence_keep(encoder)  # the same sequences as `anatomy embed` encodes once
        self.memo: dict = {}  # what analyses derive from this encoder's tokenization of a corpus, computed once

    # ------------------------------------------------------------------------------------------- keys

    def keys(self, prompts: Sequence[str]) -> list[Key]:
        return [tuple(ids[: self._keep]) for ids in self.encoder.tokenizer.encode(list(prompts))]

    def distinct(self, prompts: Sequence[str]) -> tuple[list[str], list[Key]]:
        """One representative prompt per distinct token sequence (first in sorted order), and the sequences."""
        seen: dict[Key, str] = {}
        for prompt, key in zip(prompts, self.keys(prompts), strict=True):
            seen.setdefault(key, prompt)
        return list(seen.values()), list(seen)

    # ------------------------------------------------------------------------------------------ cache

    def load_cache(self, cache_dir: str | Path, corpus: str | Path) -> bool:
        """Read an `anatomy embed` cache of this encoder over `corpus` when it matches; True if used."""
        from anatomy.corpus import load_corpus
        from anatomy.embed import MANIFEST, encoder_fingerprint, load_embeddings
        from anatomy.errors import AnatomyError
        from anatomy.io import file_sha256, read_json

        cache_dir = Path(cache_dir)
        if not (cache_dir / MANIFEST).exists():
            return False
        try:
            manifest = read_json(cache_dir / MANIFEST)
            expected = encoder_fingerprint(self.encoder.name)
            same = (
                {k: manifest["encoder"].get(k) for k in expected} == expected
                and manifest["corpus_sha256"] == file_sha256(corpus)
                and manifest["context_length"] == self.encoder.context_length
                and manifest["dtype"] == "fp32"
            )
            if not same:
                log.info("%s: embeddings of another encoder, corpus or context; not used", cache_dir)
                return False
            arrays = load_embeddings(cache_dir, per_token=self.keep_tokens)  # verified against its sha256
            prompts = load_corpus(corpus)["prompt"].tolist()
            if len(prompts) != arrays.pooled.shape[0]:
                return False
            tokens = arrays.tokens if self.keep_tokens else None
            if self.keep_tokens and tokens is None:
                return False  # per-token outputs are needed and the cache has none: encode instead
            for row, key in enumerate(self.keys(prompts)):
                if key in self._pooled:
                    continue
                self._pooled[key] = np.asarray(arrays.pooled[row], dtype=np.float32)
                if tokens is not None and arrays.mask is not None:
                    n = int(arrays.mask[row].sum())
                    self._tokens[key] = np.asarray(tokens[row, :n], dtype=np.float32)
        except (AnatomyError, KeyError, ValueError, OSError) as error:
            log.warning("%s: embeddings cache not usable (%s); encoding instead", cache_dir, error)
            return False
        log.info("%s: reusing %d cached embeddings", cache_dir, len(self._pooled))
        return True

    # ---------------------------------------------------------------------------------------- outputs

    def _ensure(self, prompts: Sequence[str], keys: list[Key], per_token: bool) -> None:
        have = self._tokens if per_token else self._pooled
        todo: dict[Key, str] = {}
        for prompt, key in zip(prompts, keys, strict=True):
            if key not in have and key not in todo:
                todo[key] = prompt
        if not todo:
            return
        from anatomy.batching import embed_prompts

        want_tokens = per_token or self.keep_tokens
        got = embed_prompts(self.encoder, list(todo.values()), per_token=want_tokens)
        self.rows_encoded += len(todo)
        for i, key in enumerate(todo):
            self._pooled[key] = got["pooled"][i]
            if want_tokens:
                n = int(got["mask"][i].sum())
                self._tokens[key] = got["tokens"][i, :n]

    def pooled(self, prompts: Sequence[str]) -> np.ndarray:
        """[N, D] float32 pooled outputs, in the order of `prompts`."""
        keys = self.keys(prompts)
        self._ensure(prompts, keys, per_token=False)
        if not keys:
            return np.zeros((0, self.encoder.output_dim), dtype=np.float32)
        return np.stack([self._pooled[k] for k in keys])

    def per_token(self, prompts: Sequence[str]):
        """(pooled [N, D], tokens [N, W, D] zero outside the mask, mask [N, W]) in the order of `prompts`."""
        keys = self.keys(prompts)
        self._ensure(prompts, keys, per_token=True)
        pooled = self.pooled(prompts)
        lengths = [len(self._tokens[k]) for k in keys]
        width = max(lengths, default=1)
        dim = pooled.shape[1] if len(pooled) else self.encoder.output_dim
        tokens = np.zeros((len(keys), width, dim), dtype=np.float32)
        mask = np.zeros((len(keys), width), dtype=bool)
        for i, (key, n) in enumerate(zip(keys, lengths, strict=True)):
            tokens[i, :n] = self._tokens[key]
            mask[i, :n] = True
        return pooled, tokens, mask
