"""WordPiece (BERT / the `minilm` teacher) over a kept subset of pieces: greedy longest match, never unknown.

Kept: the pieces the corpus uses, every single-character piece and its `##` form, and the special tokens.
Greedy longest match over a subset picks, at each position of a corpus word, the same piece as over the
full vocabulary (that piece is kept and nothing longer exists in the subset), so corpus words are exact;
any other word falls back to shorter kept pieces, down to single characters. Normalisation and
pre-tokenisation are the Hugging Face tokenizer's own (its Rust normalizer and pre-tokenizer), and special
tokens written in the text are matched first, as Hugging Face does. With every piece kept this is the full
tokenizer; tests check it against Hugging Face's ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np

from anatomy.errors import EncoderError
from anatomy.tokenizer import pack
from anatomy.vocab.ids import KeptIds

PREFIX = "##"


def hf_vocabulary(hf_tokenizer) -> list[str]:
    """Pieces by id of a Hugging Face WordPiece tokenizer (an anatomy HFTokenizer or the raw one)."""
    tok = getattr(hf_tokenizer, "_tok", hf_tokenizer)
    model = tok.backend_tokenizer.model
    if type(model).__name__ != "WordPiece":
        raise EncoderError(
            f"{getattr(hf_tokenizer, 'name', 'tokenizer')}: a {type(model).__name__} tokenizer, not WordPiece",
            "vocabulary specialisation supports CLIP BPE (clip) and WordPiece (minilm, BERT-style hf:PATH)",
        )
    vocab = tok.get_vocab()
    pieces = [""] * (max(vocab.values()) + 1)
    for piece, i in vocab.items():
        pieces[i] = piece
    return pieces


def wordpiece_closure(used: Iterable[int], pieces: Sequence[str], specials: Iterable[int]) -> np.ndarray:
    """Sorted original ids: used pieces, every single-character piece and its ## form, the specials."""
    kept = {int(i) for i in used} | {int(i) for i in specials}
    for i, piece in enumerate(pieces):
        body = piece.removeprefix(PREFIX)
        if len(body) == 1:
            kept.add(i)
    return np.array(sorted(kept), dtype=np.int64)


class WordPieceTokenizer(KeptIds):
    """Greedy longest-match WordPiece over kept pieces (all pieces when kept is None), dense new ids."""

    kind = "wordpiece"

    def __init__(self, hf_tokenizer, kept: Sequence[int] | None = None, name: str = "minilm"):
        tok = getattr(hf_tokenizer, "_tok", hf_tokenizer)
        self.hf = tok
        self.full_pieces = hf_vocabulary(tok)
        n = len(self.full_pieces)
        self._set_kept(np.arange(n) if kept is None else kept, n)
        self.pieces = [self.full_pieces[int(o)] for o in self.original_ids]
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        model = tok.backend_tokenizer.model
        self.unk_id = self.ids[model.unk_token]
        self.max_chars = int(model.max_input_chars_per_word)
        self.full = kept is None
        self.name = name if self.full else f"{name}-specialised"
        self.vocab_size = len(self.pieces)
        self.sot_id = self.ids[tok.cls_token]
        self.eot_id = self.ids[tok.sep_token]
        self.pad_id = self.ids[tok.pad_token]
        self.special_ids = [self.ids[s] for s in tok.all_special_tokens]
        specials = sorted(tok.all_special_tokens, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(map(re.escape, specials)) + ")").split
        backend = tok.backend_tokenizer
        self._normalize = backend.normalizer.normalize_str
        self._pretokenize = backend.pre_tokenizer.pre_tokenize_str
        self._cache: dict[str, list[int]] = {}
        self.base_fingerprint = (
            "wordpiece:" + hashlib.sha256("\n".join(self.full_pieces).encode()).hexdigest()[:16]
        )

    @property
    def fingerprint(self) -> str:
        if self.full:
            return self.base_fingerprint
        digest = hashlib.sha256(self.original_ids.astype("<i8").tobytes()).hexdigest()[:16]
        return f"{self.base_fingerprint}/kept:{len(self.original_ids)}:{digest}"

    # ------------------------------------------------------------------------------------------ encoding

    def words(self, text: str) -> list[str]:
        """Pre-tokenised words of one text; a special token written in the text is one word of its own."""
        out: list[str] = []
        for k, part in enumerate(self._special_split(text)):
            if k % 2:
                out.append(part)
            elif part:
                out += [w for w, _ in self._pretokenize(self._normalize(part))]
        return out

    def word_ids(self, word: str) -> list[int]:
        found = self._cache.get(word)
        if found is not None:
            return found
        ids = self._cache[word] = self._greedy(word)
        return ids

    def _greedy(self, word: str) -> list[int]:
        ids = self.ids
        if len(word) > self.max_chars:
            return [self.unk_id]
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else PREFIX + word[start:end]
                found = ids.get(piece)
                if found is not None:
                    break
                end -= 1
            else:
                return [self.unk_id]  # a character no piece covers: the whole word is unknown
            out.append(found)
            start = end
        return out

    def encode_words(self, words: Sequence[str]) -> list[list[int]]:
        return [self.word_ids(w) for w in words]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts; wrap a single text in a list")
        out = []
        for text in texts:
            ids: list[int] = []
            for w in self.words(text):
                ids += self.word_ids(w)
            out.append(ids)
        return out

    def __call__(self, texts: Sequence[str], context_length: int) -> np.ndarray:
        return pack(self.encode(texts), context_length, self.sot_id, self.eot_id, self.pad_id)

    def token_text(self, token_id: int) -> str:
        return self.pieces[int(token_id)]

    def decode(self, ids: Sequence[int]) -> str:
        """Pieces joined: ## pieces glue onto the previous one, others start a new word."""
        text = ""
        for i in ids:
            piece = self.pieces[int(i)]
            text += piece[len(PREFIX) :] if piece.startswith(PREFIX) and text else " " + piece
        return text.strip()
