"""The sidecar FILE.onnx.json of an ONNX export: what the graph is and exactly how to tokenize for it.

The tokenizer record names the base tokenizer by algorithm ("clip-bpe": CLIP's byte-level BPE, the one of
open_clip's SimpleTokenizer; "wordpiece": a BERT-style WordPiece; "hf": another Hugging Face tokenizer) and,
for the last two, a folder FILE.onnx.tokenizer/ that transformers.AutoTokenizer loads. A student with a
specialised vocabulary (`anatomy distill --vocab`) embeds only some of the base tokenizer's ids: its record
has "specialised" naming FILE.onnx.vocab.json, whose entry "kept" lists the base ids the graph keeps (graph id
= position in that list). Every id the base tokenizer gives a word of the corpus the vocabulary was built from
is kept; words outside it are tokenized with the kept pieces only (CLIP BPE: the kept merges in rank order;
WordPiece: greedy longest match over the kept pieces), which anatomy does for you (`-e FILE.onnx`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anatomy.errors import InputError

KINDS = ("clip-bpe", "wordpiece", "hf")
LAYOUT = (
    "input_ids = [sot_id] + content ids truncated to context_length - 2 + [eot_id], then pad_id up to "
    "context_length; attention_mask = 1 from sot to eot, 0 on padding"
)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def tokenizer_record(encoder, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the sidecar's tokenizer record, {file name beside `out`: bytes or a folder writer}) for an encoder."""
    from anatomy.encoders.hf import HFTokenizer
    from anatomy.tokenizer import ClipTokenizer
    from anatomy.vocab.wordpiece import WordPieceTokenizer

    tok = encoder.tokenizer
    config = getattr(encoder, "config", None)
    base = getattr(config, "tokenizer", None) or ("clip" if isinstance(tok, ClipTokenizer) else encoder.name)
    record: dict[str, Any] = {"base": base, "vocab_size": int(tok.vocab_size), "sot_id": int(tok.sot_id),
                              "eot_id": int(tok.eot_id), "pad_id": int(tok.pad_id), "layout": LAYOUT}  # fmt: skip
    files: dict[str, Any] = {}
    hf = None
    if isinstance(tok, ClipTokenizer):
        record.update(kind="clip-bpe", reference="open_clip.tokenizer.SimpleTokenizer (CLIP BPE, 49,408 ids)")
    elif isinstance(tok, WordPieceTokenizer):
        record["kind"], hf = "wordpiece", tok.hf
    elif isinstance(tok, HFTokenizer):
        model = (
            type(tok._tok.backend_tokenizer.model).__name__ if hasattr(tok._tok, "backend_tokenizer") else ""
        )
        record["kind"], hf = ("wordpiece" if model == "WordPiece" else "hf"), tok._tok
    else:
        raise InputError(
            f"{encoder.name}: its tokenizer ({type(tok).__name__}) cannot be described in a sidecar"
        )
    if hf is not None:
        name = out.name + ".tokenizer"
        record.update(files=name, reference=f"transformers.AutoTokenizer.from_pretrained('{name}')")
        files[name] = hf.save_pretrained
    original = getattr(tok, "original_ids", None)
    if original is not None and len(original) < _base_size(tok):
        name = out.name + ".vocab.json"
        files[name] = _vocab_bytes(encoder)
        record["specialised"] = {
            "file": name,
            "fingerprint": getattr(config, "vocab", None) or tok.fingerprint,
            "kept": len(original),
            "rule": "graph id = position of the base id in the file's 'kept' list; a base id not kept: tokenize "
            "that word with the kept pieces only (anatomy.vocab)",
        }
        if record["kind"] == "wordpiece":  # the base (full) tokenizer's specials, as the graph sees them
            record["base_vocab_size"] = _base_size(tok)
    return record, files


def _base_size(tok) -> int:
    full = getattr(tok, "full_pieces", None)
    if full is not None:
        return len(full)
    from anatomy.tokenizer import CLIP_VOCAB_SIZE

    return CLIP_VOCAB_SIZE


def _vocab_bytes(encoder) -> bytes:
    """The student's own vocab.json (the file its weights were trained with)."""
    from anatomy.encoders.student import VOCAB_FILE, student_dir

    if not encoder.name.startswith("student:"):
        raise InputError(
            f"{encoder.name}: a specialised tokenizer outside a student directory cannot be exported"
        )
    path = student_dir(encoder.name.removeprefix("student:")) / VOCAB_FILE
    return path.read_bytes()


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of an ONNX export, checked enough to tokenize with; InputError naming the file."""
    from anatomy.io import read_json

    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise InputError(f"{path}: no sidecar {side.name}", "give an ONNX file `anatomy export` wrote")
    data = read_json(side)
    missing = [k for k in ("format", "context_length", "output_dim", "tokenizer") if k not in data]
    if missing:
        raise InputError(
            f"{side}: missing entries {missing}", "export the encoder again with `anatomy export`"
        )
    record = data["tokenizer"]
    if record.get("kind") not in KINDS:
        raise InputError(
            f"{side}: tokenizer kind {record.get('kind')!r} is not one of {', '.join(KINDS)}",
            "an export older than this version: export the encoder again",
        )
    _check_graph(path, side, data)
    special = record.get("specialised")
    if special and not (path.parent / special["file"]).is_file():
        raise InputError(f"{path}: its vocabulary {special['file']} is missing", "copy it beside the graph")
    return data


def _check_graph(path: Path, side: Path, data: dict[str, Any]) -> None:
    """The graph must be the one the sidecar describes (its size, then its sha256), or nothing fits it."""
    import hashlib

    size = path.stat().st_size if path.is_file() else None
    if size is None:
        raise InputError(f"{path}: no such file", "give the .onnx file `anatomy export` wrote")
    hint = "export the encoder again, or put the graph back beside its own sidecar"
    if isinstance(data.get("bytes"), int) and size != data["bytes"]:
        raise InputError(f"{path}: {size:,} bytes, its sidecar {side.name} records {data['bytes']:,}", hint)
    if isinstance(data.get("sha256"), str):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != data["sha256"]:
            raise InputError(f"{path}: its sha256 is not the one its sidecar {side.name} records", hint)


def sidecar_tokenizer(path: Path, data: dict[str, Any] | None = None):
    """The tokenizer the graph at `path` expects (anatomy's, exactly as the sidecar describes it)."""
    path = Path(path)
    data = data or read_sidecar(path)
    record = data["tokenizer"]
    special = record.get("specialised")
    if special:
        from anatomy.vocab.store import load_specialised

        return load_specialised(path.parent / special["file"])
    if record["kind"] == "clip-bpe":
        from anatomy.tokenizer import clip_tokenizer

        return clip_tokenizer()
    from anatomy.encoders.hf import load_hf_tokenizer

    return load_hf_tokenizer(path.parent / record["files"])
