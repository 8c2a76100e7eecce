"""RefCOCO / RefCOCO+ / RefCOCOg referring expressions: the official refs pickles and the CSV form.

Pickles (`refs(unc).p`, `refs(umd).p`, `refs(google).p`): a list of ref dicts, each with `split` and
`sentences: [{sent, raw, tokens, sent_id}]`; every `sentences[].sent` is a prompt. The dataset is the folder
the pickle sits in (the official layout is refcoco/refs(unc).p, refcoco+/refs(unc).p, refcocog/refs(umd).p).
CSV: a `sent` column, one expression per row; dataset and split come from `dataset`/`split` columns when
present, else from the file name (refcoco+_unc_testA.csv). The subset reads like the official names:
"refcoco+(unc)/testA".

Pickles can run code when loaded, so they are read with an unpickler that refuses every global: the refs
data is plain lists, dicts, strings and numbers.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, csv_table, lines, structure_error, text_record
from anatomy.errors import InputError

_PICKLE_SUFFIXES = {".p", ".pkl", ".pickle"}
_DATASET = re.compile(r"refcocog|refcoco\+|refcoco(?![a-z])", re.IGNORECASE)
_SPLIT_BY = re.compile(r"(?<![a-z])(unc|umd|google)(?![a-z])", re.IGNORECASE)
_SPLIT = re.compile(r"(?<![a-zA-Z])(train|val|testA|testB|test)(?![a-zA-Z])")
REFER_HEADER = "uid,ref_id,img_id,sent_id,sent,bbox"
# uid,ref_id,img_id,sent_id,"sent","[x, y, w, h]": the sentence is whatever lies between the fourth comma's
# quote and the quoted bbox at the end of the line.
_REFER_LINE = re.compile(r'[^,"]*,[^,"]*,[^,"]*,[^,"]*,"(.*)","\[[^"\]]*\]"')
# Only these constructors may appear in a refs pickle (Python 2 pickles name builtins via __builtin__).
_SAFE_GLOBALS = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
}


def read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]:
    suffix = Path(src.name).suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        yield from _read_pickle(src)
    elif suffix in (".csv", ".tsv"):
        yield from _read_csv(src, options, "\t" if suffix == ".tsv" else ",")
    else:
        raise InputError(
            f"{src.spec}: refcoco reads refs pickles (.p) or CSV with a 'sent' column, not {suffix or 'this file'}",
            "for other prompt files use `anatomy ingest text`",
        )


def subset_name(dataset: str | None, split_by: str | None, split: str | None, fallback: str) -> str:
    """E.g. refcoco+(unc)/testA; without a known dataset the file name stands in: refs(unc)/train."""
    name = dataset + (f"({split_by})" if split_by else "") if dataset else fallback
    return f"{name}/{split}" if split else name


def _from_name(text: str) -> tuple[str | None, str | None, str | None]:
    """(dataset, splitBy, split) as far as a file or folder name tells them."""
    dataset, split_by, split = _DATASET.search(text), _SPLIT_BY.search(text), _SPLIT.search(text)
    return (
        dataset.group(0).lower() if dataset else None,
        split_by.group(1).lower() if split_by else None,
        split.group(1) if split else None,
    )


class _RefsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return set if name == "set" else frozenset
        raise pickle.UnpicklingError(f"refuses to load {module}.{name}")


def _unpickle(src: SourceFile) -> object:
    data = src.read_bytes()
    errors = []
    # Python 2 pickles hold byte strings: try UTF-8 first, then latin-1 (which always decodes).
    for encoding in ("utf-8", "latin-1"):
        try:
            return _RefsUnpickler(io.BytesIO(data), encoding=encoding).load()
        except UnicodeDecodeError as err:
            errors.append(str(err))
        except pickle.UnpicklingError as err:
            if "refuses to load" in str(err):
                raise InputError(
                    f"{src.spec}: pickle {err}, which a refs file never contains; not loaded (pickles can run code)",
                    "use the official refs(unc|umd|google).p files or the CSV form",
                ) from None
            errors.append(str(err))
        except Exception as err:  # truncated or foreign bytes raise EOFError, ValueError, KeyError, ...
            errors.append(f"{type(err).__name__}: {err}")
            break
    raise InputError(f"{src.spec}: not a readable pickle ({errors[-1]})", "is it a refs(...).p file?")


def _read_pickle(src: SourceFile) -> Iterator[PromptRecord | Skipped]:
    refs = _unpickle(src)
    expected = "a list of ref dicts with 'sentences' and 'split' (refs(unc).p)"
    if not isinstance(refs, list):
        raise structure_error(src, expected, refs)
    if refs and not any(isinstance(r, dict) and "sentences" in r for r in refs):
        raise structure_error(src, expected, refs[0] if isinstance(refs[0], dict) else refs)
    folder = "" if src.is_stdin else src.path.resolve().parent.name
    dataset, _, _ = _from_name(folder)
    _, split_by, _ = _from_name(src.name)
    fallback = Path(src.name).stem
    for i, ref in enumerate(refs):
        where = f"{src.name}:[{i}]"
        sentences = ref.get("sentences") if isinstance(ref, dict) else None
        if not isinstance(sentences, list):
            yield Skipped("ref without a sentences list", where, repr(ref)[:80])
            continue
        split = ref.get("split")
        subset = subset_name(dataset, split_by, split if isinstance(split, str) else None, fallback)
        for j, sentence in enumerate(sentences):
            ref_j = f"{where}.sentences[{j}].sent"
            if not isinstance(sentence, dict) or "sent" not in sentence:
                yield Skipped("sentence without 'sent'", ref_j, repr(sentence)[:80])
            else:
                yield text_record(sentence["sent"], subset, ref_j)


def _read_csv(src: SourceFile, options: ReadOptions, delimiter: str) -> Iterator[PromptRecord | Skipped]:
    text = src.read_text(options.encoding)
    header_line = next(lines(text), (1, ""))[1].strip()
    dataset, split_by, split = _from_name(Path(src.name).stem)
    fallback = Path(src.name).stem
    if header_line == REFER_HEADER and delimiter == ",":
        subset = subset_name(dataset, split_by, split, fallback)
        yield from _read_refer_csv(src, text, subset)
        return
    header, rows = csv_table(src, text, delimiter)
    if "sent" not in header:
        raise InputError(
            f"{src.spec}: expected a CSV header with a 'sent' column ({REFER_HEADER}); found {header[:12]}",
            "for other CSV files use `anatomy ingest text --column NAME`",
        )
    sent_at = header.index("sent")
    dataset_at = header.index("dataset") if "dataset" in header else None
    split_at = header.index("split") if "split" in header else None
    for item in rows:
        if isinstance(item, Skipped):
            yield item
            continue
        where, row = item
        if len(row) <= sent_at:
            yield Skipped("row has fewer fields than the header", where, delimiter.join(row)[:80])
            continue
        row_dataset = row[dataset_at] if dataset_at is not None and dataset_at < len(row) else None
        row_split = row[split_at] if split_at is not None and split_at < len(row) else None
        subset = subset_name(row_dataset or dataset, split_by, row_split or split, fallback)
        yield text_record(row[sent_at], subset, where)


def _read_refer_csv(src: SourceFile, text: str, subset: str) -> Iterator[PromptRecord | Skipped]:
    """The refer CSV export, one expression per line. Its `sent` is quoted without escaping the quotes
    inside it ("a boat with " mfos " written on it"), which a CSV parser mangles; a line that is not valid
    CSV is therefore matched against the layout, taking everything between the fourth comma's quote and
    the quoted bbox as the sentence."""
    for number, line in lines(text):
        if number == 1:
            continue  # the header
        if not line.strip():
            continue  # a blank line is not a record
        where = f"{src.name}:{number}"
        try:
            row = next(csv.reader([line], strict=True))
        except csv.Error:
            match = _REFER_LINE.fullmatch(line)
            row = ["", "", "", "", match.group(1), ""] if match else []
        if len(row) == 6:
            yield PromptRecord(row[4], subset, where)
        else:
            yield Skipped("line does not fit uid,ref_id,img_id,sent_id,sent,bbox", where, line[:80])
