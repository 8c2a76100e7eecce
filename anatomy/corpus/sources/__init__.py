"""Source readers: each turns one input (file, directory or stdin) into PromptRecords and Skipped records.

A reader is a function `read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]`.
It raises InputError for a file it cannot read at all, and yields Skipped for single bad records.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.errors import InputError
from anatomy.io import check_path

# source name -> module under anatomy.corpus.sources that defines `read`
READERS = {
    "lvis": "lvis",
    "refcoco": "refcoco",
    "saco": "saco",
    "rf100vl": "rf100vl",
    "text": "text",
    "builtin": "builtin",
}


@dataclass(frozen=True)
class ReadOptions:
    synonyms: bool = False  # lvis: add each synonym as its own prompt
    column: str | None = None  # text: csv/tsv column
    field: str | None = None  # text: jsonl field
    encoding: str = "utf-8"
    count: str | None = None  # text: csv column / jsonl field holding each record's request count
    time: str | None = None  # text: csv column / jsonl field holding each record's timestamp


@dataclass(frozen=True)
class SourceFile:
    """One input as given on the command line: a path, a directory, '-' for stdin, or 'builtin:NAME'."""

    spec: str

    @property
    def is_stdin(self) -> bool:
        return self.spec == "-"

    @property
    def path(self) -> Path:
        return Path(self.spec)

    @property
    def name(self) -> str:
        return "<stdin>" if self.is_stdin else self.path.name

    def read_bytes(self) -> bytes:
        if self.is_stdin:
            return sys.stdin.buffer.read()
        from anatomy.io import open_regular

        try:
            with open_regular(self.path) as handle:  # a FIFO or device is refused, never read
                return handle.read()
        except FileNotFoundError:
            if self.spec.startswith("builtin:"):
                raise InputError(
                    f"{self.spec}: a built-in set, not a file",
                    f"ingest it with `anatomy ingest builtin {self.spec}`",
                ) from None
            raise InputError(f"{self.spec}: no such file", "check the path") from None
        except IsADirectoryError:
            raise InputError(f"{self.spec}: is a directory, expected a file") from None
        except OSError as err:  # permissions, a vanished mount, ...
            raise InputError(f"{self.spec}: cannot read ({err.strerror or err})") from None

    def read_text(self, encoding: str = "utf-8", data: bytes | None = None) -> str:
        """Decode strictly; a bad byte is an error naming the file and offset, never a silent replacement."""
        data = self.read_bytes() if data is None else data
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # accept (and drop) a byte-order mark
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as err:
            utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")  # a UTF-16 byte-order mark
            raise InputError(
                f"{self.spec}: bytes at offset {err.start} are not valid {err.encoding} ({err.reason})",
                "the file starts with a UTF-16 byte-order mark: give --encoding utf-16"
                if utf16
                else "give the file's encoding with --encoding (e.g. --encoding latin-1)",
            ) from None
        except LookupError:
            raise InputError(
                f"unknown encoding {encoding!r}", "use a Python codec name such as utf-8 or latin-1"
            ) from None


Reader = Callable[[SourceFile, ReadOptions], Iterator[PromptRecord | Skipped]]


def get_reader(source: str) -> Reader:
    if source not in READERS:
        raise InputError(f"unknown source {source!r}", f"choose one of: {', '.join(READERS)}")
    return importlib.import_module(f"anatomy.corpus.sources.{READERS[source]}").read


# ------------------------------------------------------------------------------------ reader helpers


def load_json(src: SourceFile, options: ReadOptions):
    """Parse a whole JSON input; a syntax error names the file, line and column."""
    import json

    text = src.read_text(options.encoding)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{src.spec}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}",
            "fix the file or check that it is the JSON export it should be",
        ) from None
    except (RecursionError, ValueError) as err:  # nesting too deep, an integer too long to convert
        raise InputError(f"{src.spec}: JSON cannot be read ({type(err).__name__}: {err})") from None


_EOL = re.compile(r"\r\n|\r|\n")


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) with universal line ends: \\n, \\r\\n and a lone \\r (old Mac exports) each end a
    line; nothing else does (str.splitlines would also split on form feeds and Unicode separators inside a
    prompt). One line at a time, so a million-line file is never held twice; no line after a final end."""
    start, number = 0, 0
    for number, end in enumerate(_EOL.finditer(text), start=1):
        yield number, text[start : end.start()]
        start = end.end()
    if start < len(text):
        yield number + 1, text[start:]


def csv_table(
    src: SourceFile, text: str, delimiter: str
) -> tuple[list[str], Iterator[tuple[str, list[str]] | Skipped]]:
    """The header and then (where, fields) per non-blank row. Strict: a stray or unclosed quote is an error
    naming the line, not a prompt that swallows the rest of the file. A row with more (non-empty) fields
    than the header is a counted skip, never cut to the header's width: an unquoted delimiter inside a
    field (a red, white car) would otherwise silently truncate it."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    def malformed(err: csv.Error) -> InputError:
        return InputError(f"{src.spec}: malformed CSV at line {reader.line_num}: {err}")

    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as err:
        raise malformed(err) from None

    def rows() -> Iterator[tuple[str, list[str]] | Skipped]:
        width = len(header)
        try:
            for row in reader:
                if not row:
                    continue  # a blank line is not a record
                where = f"{src.name}:{reader.line_num}"
                if len(row) > width and any(field.strip() for field in row[width:]):
                    yield Skipped(
                        f"row has {len(row)} fields, the header {width} (an unquoted {delimiter!r} in a field? "
                        "quote it)",
                        where,
                        delimiter.join(row)[:80],
                    )
                else:
                    yield where, row[:width] if len(row) > width else row
        except csv.Error as err:
            raise malformed(err) from None

    return header, rows()


def describe(value: object) -> str:
    """A short description of what was found, for 'expected X, found Y' messages."""
    if isinstance(value, dict):
        keys = sorted(map(str, value))
        return f"an object with keys {keys[:12]}{' ...' if len(keys) > 12 else ''}"
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value[:100]})
        return f"a list of {len(value)} ({', '.join(kinds) or 'nothing'})"
    return f"a {type(value).__name__}"


def structure_error(src: SourceFile, expected: str, found: object, hint: str | None = None) -> InputError:
    return InputError(f"{src.spec}: expected {expected}; found {describe(found)}", hint)


def text_record(value: object, subset: str, ref: str, meta: dict | None = None) -> PromptRecord | Skipped:
    """A PromptRecord for a string, a counted skip for anything else (numbers, null, nested values)."""
    if isinstance(value, str):
        return PromptRecord(value, subset, ref, meta or {})
    return Skipped(f"not a string ({type(value).__name__})", ref, repr(value)[:80])


# ------------------------------------------------------------------------------------ source detection

# File extensions that say which reader applies without looking inside.
_TEXT_SUFFIXES = {".txt", ".text", ".lst", ".list", ".tsv", ".jsonl", ".ndjson"}
_PICKLE_SUFFIXES = {".p", ".pkl", ".pickle"}
_REFCOCO_CSV_COLUMNS = {"sent", "ref_id"}
_DETECT_JSON_MAX_BYTES = 512 << 20  # parse to detect up to this size; beyond, only the name can tell


def detect_source(path: str | Path) -> str:
    """Which reader fits `path` (lvis, refcoco, saco, rf100vl, text, builtin), from its name and structure.

    Raises InputError naming the candidates when the structure does not decide, so the caller can ask the
    user to name the source explicitly.
    """
    spec = str(path)
    if spec.startswith("builtin:"):
        return "builtin"
    if spec == "-":
        return "text"
    p = check_path(spec, "any")  # a FIFO or device is refused before anything opens it
    if p.is_dir():
        if next(p.rglob("_annotations.coco.json"), None) is not None:
            return "rf100vl"
        raise InputError(
            f"{spec}: a directory without _annotations.coco.json files, so no reader fits it",
            "only rf100vl reads directories; give the files themselves and name the source",
        )
    suffix = p.suffix.lower()
    if p.name == "_annotations.coco.json":
        return "rf100vl"
    if suffix in _PICKLE_SUFFIXES:
        return "refcoco"
    if suffix in _TEXT_SUFFIXES:
        return "text"
    if suffix == ".csv":
        return _detect_csv(p)
    if suffix == ".json":
        return _detect_json(p)
    raise InputError(
        f"{spec}: cannot tell the source from the extension {suffix or '(none)'}",
        "name it: `anatomy ingest text|lvis|refcoco|saco|rf100vl PATH` (text reads .txt/.csv/.tsv/.jsonl)",
    )


def _detect_csv(p: Path) -> str:
    import csv
    import io

    from anatomy.io import open_regular

    with (
        open_regular(p) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as handle,
    ):
        header = next(csv.reader(handle), [])
    return "refcoco" if _REFCOCO_CSV_COLUMNS <= {h.strip() for h in header} else "text"


def _detect_json(p: Path) -> str:
    if p.stat().st_size > _DETECT_JSON_MAX_BYTES:
        raise InputError(
            f"{p}: too large ({p.stat().st_size >> 20} MiB) to inspect for its source type",
            "name the source: `anatomy ingest lvis|saco|rf100vl|text PATH`",
        )
    data = load_json(SourceFile(str(p)), ReadOptions())
    candidates = _json_candidates(data)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(
            f"{p}: no reader recognises this JSON ({describe(data)})",
            "expected LVIS categories, SA-Co annotations, RF100 metadata or COCO _annotations, or a list of strings",
        )
    raise InputError(f"{p}: ambiguous JSON, fits {' and '.join(candidates)}", "name the source explicitly")


def _json_candidates(data: object) -> list[str]:
    """Readers whose expected structure `data` has."""
    if isinstance(data, dict):
        images = data.get("images")
        has_text_input = isinstance(images, list) and any(
            isinstance(i, dict) and "text_input" in i for i in images
        )
        anns = data.get("annotations")
        has_noun_phrase = isinstance(anns, list) and any(
            isinstance(a, dict) and "noun_phrase" in a for a in anns
        )
        if has_text_input or has_noun_phrase or "video_np_pairs" in data:
            return ["saco"]
        cats = data.get("categories")
        if isinstance(cats, list) and cats and all(isinstance(c, dict) for c in cats):
            if any("frequency" in c or "synonyms" in c for c in cats):
                return ["lvis"]
            if any(c.get("supercategory") == "none" for c in cats):
                return ["rf100vl"]
            return ["lvis", "rf100vl"]  # plain COCO categories: either reader would take them
        return []
    if isinstance(data, list) and data:
        if all(isinstance(c, dict) for c in data):
            if all("classes" in c and "name" in c for c in data):
                return ["rf100vl"]
            if all("name" in c for c in data):
                return ["lvis"]
            return []
        if all(
            isinstance(c, str) or (isinstance(c, list) and all(isinstance(s, str) for s in c)) for c in data
        ):
            return ["text"]
    return []
