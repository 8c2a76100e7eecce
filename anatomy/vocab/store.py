"""The saved vocabulary (DIR/vocab.json): which tokens a specialised tokenizer keeps, checked on load.

vocab.json holds the base tokenizer (spec, kind, fingerprint, size), the kept original ids (new id = position),
per kept token its readable text and corpus count, the kept merges (CLIP BPE: "left right", by rank) or the
kept pieces (WordPiece), the --min-count used and the corpus it came from (name, sha256, prompts). Loading
checks that every entry agrees with the installed base tokenizer, so a hand-edited or foreign file is a
clear error naming the file and entry, never a silent wrong tokenization.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.errors import InputError

FORMAT = "anatomy-vocab"
VERSION = 1
KINDS = ("clip-bpe", "wordpiece")


@dataclass
class Vocabulary:
    tokenizer: str  # the base tokenizer's spec: "clip", "minilm", "hf:PATH", or an encoder spec
    kind: str  # clip-bpe | wordpiece
    base_fingerprint: str
    original_size: int
    kept: list[int]  # original ids, ascending; the new id of kept[i] is i
    counts: list[int]  # occurrences of each kept token in the corpus's (full) tokenization
    min_count: int = 1
    corpus: dict[str, Any] = field(default_factory=dict)  # name, sha256, prompts

    @property
    def size(self) -> int:
        return len(self.kept)


@functools.cache
def base_tokenizer(spec: str):
    """The full tokenizer behind a spec, as an object with .kind: ClipTokenizer or WordPieceTokenizer."""
    from anatomy.encoders.hf import HFTokenizer
    from anatomy.encoders.registry import load_tokenizer
    from anatomy.tokenizer import ClipTokenizer
    from anatomy.vocab.wordpiece import WordPieceTokenizer

    tok = load_tokenizer(spec)
    if isinstance(tok, ClipTokenizer):
        return tok
    if isinstance(tok, HFTokenizer):
        return WordPieceTokenizer(tok, None, name=spec.split(":")[0])
    raise InputError(
        f"tokenizer '{spec}' ({type(tok).__name__}) cannot be specialised",
        "use clip (CLIP BPE) or a WordPiece tokenizer: minilm or hf:PATH of a BERT-style model",
    )


def kind_of(base) -> str:
    return getattr(base, "kind", "clip-bpe")


def base_fingerprint(base) -> str:
    return base.fingerprint if kind_of(base) == "clip-bpe" else base.base_fingerprint


def specialise(vocab: Vocabulary, base=None):
    """The specialised tokenizer of a vocabulary (base: the full tokenizer, resolved from the spec if None)."""
    from anatomy.vocab.clip import SpecialisedClipTokenizer
    from anatomy.vocab.wordpiece import WordPieceTokenizer

    base = base or base_tokenizer(vocab.tokenizer)
    if vocab.kind == "clip-bpe":
        return SpecialisedClipTokenizer(vocab.kept, base)
    return WordPieceTokenizer(base.hf, vocab.kept, name=vocab.tokenizer.split(":")[0])


# ------------------------------------------------------------------------------------------- saving


def to_json(vocab: Vocabulary, base=None) -> dict[str, Any]:
    base = base or base_tokenizer(vocab.tokenizer)
    kept = vocab.kept
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "tokenizer": vocab.tokenizer,
        "kind": vocab.kind,
        "base_fingerprint": vocab.base_fingerprint,
        "original_size": vocab.original_size,
        "size": len(kept),
        "min_count": vocab.min_count,
        "corpus": vocab.corpus,
        "kept": kept,
        "counts": vocab.counts,
        "tokens": [base.token_text(i) for i in kept],
    }
    if vocab.kind == "clip-bpe":
        data["merges"] = [" ".join(_merge_symbols(base, i)) for i in kept if _is_merge(i)]
    else:
        data["pieces"] = [base.full_pieces[i] for i in kept]
    return data


def save(vocab: Vocabulary, out_dir: str | Path, base=None) -> Path:
    from anatomy.io import write_json

    return write_json(Path(out_dir) / "vocab.json", to_json(vocab, base))


def _is_merge(i: int) -> bool:
    from anatomy.vocab.clip import FIRST_MERGE_ID, SPECIAL_IDS

    return FIRST_MERGE_ID <= i < SPECIAL_IDS[0]


def _merge_symbols(base, i: int) -> tuple[str, str]:
    from anatomy.vocab.clip import FIRST_MERGE_ID, merge_parts

    a, b = merge_parts(base.bpe)[i - FIRST_MERGE_ID]
    return base.bpe.symbols[a], base.bpe.symbols[b]


# ------------------------------------------------------------------------------------------- loading


def load(path: str | Path) -> Vocabulary:
    """Read and check DIR/vocab.json (or the file itself); InputError naming the file and the bad entry."""
    from anatomy.io import read_json

    path = Path(path)
    if path.is_dir():
        path = path / "vocab.json"

    def bad(what: str, hint: str | None = "rebuild it with `anatomy vocab CORPUS --out DIR`") -> InputError:
        return InputError(f"{path}: {what}", hint)

    data = read_json(path)  # JSON nested too deeply is one line there

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(
            f"not a vocabulary file (format {data.get('format') if isinstance(data, dict) else None!r})"
        )
    if data.get("version") != VERSION:
        raise bad(f"vocabulary version {data.get('version')!r}, this version reads {VERSION}")
    for key in ("tokenizer", "kind", "base_fingerprint", "original_size", "kept", "counts"):
        if key not in data:
            raise bad(f"missing entry '{key}'")
    _check_shapes(data, bad)
    if data["kind"] not in KINDS:
        raise bad(f"entry 'kind': unknown tokenizer kind {data['kind']!r} (known: {', '.join(KINDS)})")
    try:
        base = base_tokenizer(str(data["tokenizer"]))
    except InputError as error:
        raise bad(f"entry 'tokenizer': {error.message}", error.hint) from None
    except Exception as error:  # an unknown spec: the registry's own error text, its message line only
        why = getattr(error, "message", None) or str(error).splitlines()[0]
        raise bad(f"entry 'tokenizer': unknown tokenizer {data['tokenizer']!r} ({why})") from None
    if kind_of(base) != data["kind"]:
        raise bad(f"entry 'kind' is {data['kind']!r} but tokenizer {data['tokenizer']!r} is {kind_of(base)}")
    if data["base_fingerprint"] != base_fingerprint(base):
        raise bad(
            f"built from another tokenizer ({data['base_fingerprint']}); "
            f"'{data['tokenizer']}' here is {base_fingerprint(base)}"
        )
    size = base.vocab_size
    kept = data["kept"]
    if data["original_size"] != size:
        raise bad(f"entry 'original_size' is {data['original_size']}, the tokenizer has {size}")
    if not isinstance(kept, list) or not kept:
        raise bad("entry 'kept' must be a non-empty list of token ids")
    for k, i in enumerate(kept):
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < size:
            raise bad(f"kept[{k}] = {i!r} is not a token id in [0, {size})")
        if k and i <= kept[k - 1]:
            raise bad(f"kept[{k}] = {i} is not above kept[{k - 1}] = {kept[k - 1]} (ids must ascend)")
    counts = data["counts"]
    if not isinstance(counts, list) or len(counts) != len(kept):
        raise bad(f"entry 'counts' must list one count per kept token ({len(kept)})")
    for k, c in enumerate(counts):
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise bad(f"counts[{k}] = {c!r} is not a non-negative integer")
    if data["kind"] == "clip-bpe":
        _check_clip(data, base, bad)
    else:
        _check_wordpiece(data, base, bad)
    return Vocabulary(
        tokenizer=str(data["tokenizer"]),
        kind=data["kind"],
        base_fingerprint=data["base_fingerprint"],
        original_size=size,
        kept=list(kept),
        counts=list(counts),
        min_count=int(data.get("min_count", 1)),
        corpus=dict(data.get("corpus") or {}),
    )


# entry -> (JSON type, what it must be): every entry load reads, checked before any is used
_SHAPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "tokenizer": (str, "a tokenizer spec (a string)"),
    "kind": (str, f"one of {', '.join(KINDS)}"),
    "base_fingerprint": (str, "a fingerprint (a string)"),
    "original_size": (int, "an integer"),
    "min_count": (int, "an integer"),
    "corpus": (dict, "an object (name, sha256, prompts)"),
    "kept": (list, "a list of token ids"),
    "counts": (list, "a list of counts"),
    "merges": (list, "a list of 'left right' strings"),
    "pieces": (list, "a list of WordPiece strings"),
}


def _check_shapes(data: dict, bad) -> None:
    """Each entry of the right JSON type, and the corpus record flat (no nesting to walk later)."""
    for key, (kind, what) in _SHAPES.items():
        value = data.get(key)
        if key not in data or (key == "corpus" and value is None):
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad(f"entry '{key}' must be {what}, got {type(value).__name__}")
    for key, value in (data.get("corpus") or {}).items():
        if not isinstance(value, str | int | float | type(None)) or isinstance(value, bool):
            raise bad(f"entry 'corpus.{key}' must be a string or a number, got {type(value).__name__}")
    for key in ("merges", "pieces"):
        for k, entry in enumerate(data.get(key) or []):
            if not isinstance(entry, str):
                raise bad(f"{key}[{k}] must be a string, got {type(entry).__name__}")


def _check_clip(data: dict, base, bad) -> None:
    from anatomy.vocab.clip import FIRST_MERGE_ID, N_BASE, SPECIAL_IDS, merge_parts

    kept = set(data["kept"])
    missing = [i for i in (*range(N_BASE), *SPECIAL_IDS) if i not in kept]
    if missing:
        raise bad(
            f"entry 'kept' lacks base token {missing[0]} ({base.token_text(missing[0])!r}): "
            f"the {N_BASE} byte tokens and the two specials must all be kept (the fallback needs them)"
        )
    merges = data.get("merges")
    if not isinstance(merges, list):
        raise bad("missing entry 'merges' (a list of 'left right' strings)")
    parts = merge_parts(base.bpe)
    symbols, ids = base.bpe.symbols, base.bpe.ids
    listed = set()
    for k, entry in enumerate(merges):
        pair = entry.split(" ") if isinstance(entry, str) else []
        rank = base.bpe.pair_rank.get((ids.get(pair[0]), ids.get(pair[1]))) if len(pair) == 2 else None
        if rank is None:
            raise bad(f"merges[{k}] = {entry!r} is not a merge of the CLIP BPE")
        token = FIRST_MERGE_ID + rank
        for part, part_id in zip(pair, parts[rank], strict=True):
            if int(part_id) not in kept:
                raise bad(f"merges[{k}] = {entry!r}: its part {part!r} (id {int(part_id)}) is not kept")
        if token not in kept:
            raise bad(f"merges[{k}] = {entry!r}: its product {symbols[token]!r} (id {token}) is not kept")
        listed.add(token)
    for i in sorted(kept):
        if FIRST_MERGE_ID <= i < SPECIAL_IDS[0] and i not in listed:
            raise bad(f"kept token {i} ({base.token_text(i)!r}) has no entry in 'merges'")


def _check_wordpiece(data: dict, base, bad) -> None:
    from anatomy.vocab.wordpiece import wordpiece_closure

    pieces = data.get("pieces")
    if not isinstance(pieces, list) or len(pieces) != len(data["kept"]):
        raise bad(f"entry 'pieces' must list one piece per kept token ({len(data['kept'])})")
    for k, (i, piece) in enumerate(zip(data["kept"], pieces, strict=True)):
        if base.full_pieces[i] != piece:
            raise bad(
                f"pieces[{k}] = {piece!r} but token {i} of '{data['tokenizer']}' is {base.full_pieces[i]!r}"
            )
    kept = set(data["kept"])
    need = wordpiece_closure([], base.full_pieces, [base.original_ids[s] for s in base.special_ids])
    missing = [int(i) for i in need if int(i) not in kept]
    if missing:
        raise bad(
            f"entry 'kept' lacks {base.full_pieces[missing[0]]!r} (id {missing[0]}): every special token, "
            "single-character piece and its ## form must be kept (the fallback needs them)"
        )


def load_specialised(path: str | Path):
    """The specialised tokenizer saved in DIR/vocab.json (checked), ready for a student to hold."""
    return specialise(load(path))


def check_corpus(vocab: Vocabulary, corpus: str | Path) -> None:
    """Refuse a corpus other than the one the vocabulary was built from (by sha256)."""
    from anatomy.io import file_sha256

    want = vocab.corpus.get("sha256")
    got = file_sha256(corpus)
    if want != got:
        raise InputError(
            f"{corpus}: this corpus (sha256 {got[:12]}) is not the one the vocabulary was built from "
            f"({vocab.corpus.get('name')}, sha256 {str(want)[:12]})",
            "rebuild the vocabulary from this corpus with `anatomy vocab CORPUS --out DIR`",
        )
