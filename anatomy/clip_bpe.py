"""The CLIP BPE vocabulary and merges (open_clip's file), and byte-pair encoding of pre-split pieces.

`ClipBPE.piece_ids` merges one piece (open_clip's rank-by-rank passes; a heap for long pieces);
`ClipBPE.piece_table` does many pieces at once: whole words by one Arrow lookup, the rest merged together
in numpy (`anatomy.bpe_batch`), one rank round for all of them per step, with the same result. The merges
file ships inside open_clip_torch and is located without importing open_clip (which would import torch);
it is parsed in numpy and Arrow, and the Python dict forms of the tables are built only when used.
`anatomy.tokenizer` re-exports these names.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import importlib.util
import itertools
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anatomy.bpe_batch import KEY, RankTable, batch_merge, string_bytes
from anatomy.errors import InputError

CLIP_VOCAB_SIZE = 49408
CLIP_SPECIALS = ("<start_of_text>", "<end_of_text>")
MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - len(CLIP_SPECIALS)  # 48,894: the first lines after the header
END_OF_WORD = "</w>"
FIRST_MERGE_ID = 2 * 256  # merges follow the 256 byte tokens and their 256 end-of-word forms
# In this merges file (open_clip's) every word-final token w</w> BPE-encodes to itself, so a piece that is a
# whole vocabulary word maps straight to its id; tests/test_tokenizer.py checks all 34,483 such tokens.
WHOLE_WORDS_VERIFIED_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
HEAP_BPE_FROM = 48  # pieces of this many bytes or more are merged by the O(n log n) heap BPE


def merges_path() -> Path:
    """The BPE merges file inside the installed open_clip_torch (found without importing the package)."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        if (Path(folder) / MERGES_FILE).is_file():
            return Path(folder) / MERGES_FILE
    raise InputError(
        f"the CLIP BPE merges file {MERGES_FILE} was not found in the open_clip_torch package",
        "install the project's dependencies (`make install`), which include open_clip_torch",
    )


def _byte_alphabet() -> tuple[list[int], list[str]]:
    """Bytes in CLIP's vocabulary order, and the printable character standing for each byte value.

    Bytes that are already visible Latin-1 characters stand for themselves and come first; the other 68
    (controls, space, soft hyphen, ...) follow in byte order as code points 256, 257, ...
    """
    visible = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    hidden = sorted(set(range(256)) - set(visible))
    char_of = {b: chr(b) for b in visible} | {b: chr(256 + k) for k, b in enumerate(hidden)}
    return visible + hidden, [char_of[b] for b in range(256)]


def _inflate_merges(raw: bytes) -> bytes:
    """The start of the gzip'd merges file: at least its first N_MERGES + 1 lines (all of it if shorter)."""
    inflate, parts, newlines = zlib.decompressobj(wbits=31), [], 0  # gzip framing
    for s in range(0, len(raw), 1 << 16):  # the merges are the file's first fifth: stop once they are out
        parts.append(inflate.decompress(raw[s : s + (1 << 16)]))
        newlines += parts[-1].count(b"\n")
        if newlines > N_MERGES:
            break
    text = b"".join(parts)
    return text if text.endswith(b"\n") else text + b"\n"


def _strings(data: np.ndarray, offsets: np.ndarray):
    """An Arrow large_string array over `data` (uint8) cut at `offsets` (no copy)."""
    import pyarrow as pa

    buffers = [None, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.large_string(), len(offsets) - 1, buffers)


def _read_merges(raw: bytes, path: Path):
    """The N_MERGES merges (the lines after the header) as Arrow strings: (parts, merged symbols).

    parts holds left, right of each merge in rank order; merged, left + right. Both are views of one copy of
    the lines with their spaces and newlines taken out, cut in numpy: no Python string per line.
    """
    import pyarrow as pa

    text = np.frombuffer(_inflate_merges(raw), np.uint8)
    newline = np.flatnonzero(text == ord("\n"))
    bad = len(newline) <= N_MERGES
    if not bad:
        lines = text[newline[0] + 1 : newline[N_MERGES] + 1]  # each merge line with its newline
        line_end = newline[1 : N_MERGES + 1] - (newline[0] + 1)
        line_start = np.r_[0, line_end[:-1] + 1]
        space = np.flatnonzero(lines == ord(" "))
        packed = lines[lines > ord(" ")]  # symbols hold no spaces or control bytes
        bad = bool(
            len(space) != N_MERGES
            or packed.size != lines.size - 2 * N_MERGES
            or (space <= line_start).any()
            or (space >= line_end - 1).any()
        )
    if bad:
        raise InputError(
            f"{path}: not a CLIP BPE merges file ({N_MERGES:,} lines of two symbols after the header expected)",
            "leave the merges path unset to use open_clip's",
        )
    removed = 2 * np.arange(N_MERGES)  # a space and a newline per line before this one
    cuts = np.empty(2 * N_MERGES + 1, dtype=np.int64)
    cuts[0:-1:2], cuts[1::2], cuts[-1] = line_start - removed, space - removed, packed.size
    parts, merged = _strings(packed, cuts), _strings(packed, cuts[::2])
    try:
        parts.validate(full=True)  # UTF-8
    except pa.ArrowInvalid as error:
        raise InputError(
            f"{path}: the merges are not UTF-8 text ({error})", "use open_clip's merges file"
        ) from None
    return parts, merged


class ClipBPE:
    """The CLIP vocabulary and merge ranks, and BPE of pre-split pieces, one by one or many at once.

    Built from the merges file in numpy and Arrow (the vocabulary is an Arrow array, looked up with Arrow's
    hash kernels); the Python dict and list forms (`ids`, `symbols`, `pair_rank`) are made on first use.
    """

    def __init__(self, path: str | Path | None = None):
        import pyarrow as pa
        import pyarrow.compute as pc

        path = Path(path) if path else merges_path()
        if not path.is_file():
            raise InputError(
                f"{path}: CLIP BPE merges file not found", "leave the merges path unset to use open_clip's"
            )
        raw = path.read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        parts, merged = _read_merges(raw, path)
        order, self.byte_char = _byte_alphabet()
        chars = [self.byte_char[b] for b in order]
        self.char_byte = {c: b for b, c in enumerate(self.byte_char)}
        single_bytes = pa.array(chars + [c + END_OF_WORD for c in chars], pa.large_string())
        specials = pa.array(CLIP_SPECIALS, pa.large_string())
        self.vocab = pa.concat_arrays([single_bytes, merged, specials])
        n = len(self.vocab)
        # The last of equal symbols wins, as in open_clip's dict: look up in the vocabulary reversed.
        self._reversed_vocab = self.vocab.take(pa.array(np.arange(n - 1, -1, -1)))
        # BPE runs on ids: merge r joins the pair (left id, right id) into id FIRST_MERGE_ID + r.
        self.byte_id = [0] * 256
        for i, byte in enumerate(order):
            self.byte_id[byte] = i
        # Codes in order of first appearance: with distinct symbols, a symbol's code is its id.
        codes = pc.dictionary_encode(pa.concat_arrays([self.vocab, parts]))
        first = codes.indices.to_numpy()
        distinct = len(codes.dictionary) == n and bool((first[:n] == np.arange(n)).all())
        part_ids = first[n:].astype(np.int64) if distinct else self.vocab_ids(parts)
        if (part_ids < 0).any():
            missing = parts[int(np.flatnonzero(part_ids < 0)[0])].as_py()
            raise InputError(
                f"{path}: merge part {missing!r} is no symbol of the vocabulary", "use open_clip's"
            )
        self.merge_left, self.merge_right = part_ids[0::2], part_ids[1::2]
        self.whole_words = self.sha256 == WHOLE_WORDS_VERIFIED_SHA256
        # The heap BPE equals open_clip's rank-by-rank passes when a merge never creates a pair of lower or
        # equal rank: true when every merge joins tokens made before it and no pair repeats (checked, not
        # assumed). The batch BPE (`batch_merge`) rests on the same property.
        made_at = FIRST_MERGE_ID + np.arange(N_MERGES)
        # (Distinct symbols imply distinct pairs: a repeated pair would make one symbol twice.)
        self.heap_exact = distinct and bool((np.maximum(self.merge_left, self.merge_right) < made_at).all())
        self._byte_ids = np.array(self.byte_id, dtype=np.int64)
        self._rank_table: RankTable | None = None

    def vocab_ids(self, symbols) -> np.ndarray:
        """The id of each symbol of an Arrow string array, -1 where it is no vocabulary symbol."""
        import pyarrow.compute as pc

        n = len(self._reversed_vocab)
        found = pc.index_in(symbols, value_set=self._reversed_vocab).fill_null(n).to_numpy()
        return n - 1 - found.astype(np.int64)

    @functools.cached_property
    def symbols(self) -> list[str]:
        """Each id's symbol (byte characters, </w> on word-final tokens)."""
        return self.vocab.to_pylist()

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        """symbol -> id (the last of equal symbols, as open_clip)."""
        return dict(zip(self.symbols, range(len(self.symbols)), strict=True))

    @functools.cached_property
    def pair_rank(self) -> dict[tuple[int, int], int]:
        """(left id, right id) -> merge rank; built on first use (the batch path does not need it)."""
        pairs = zip(self.merge_left.tolist(), self.merge_right.tolist(), strict=True)
        return dict(zip(pairs, range(len(self.merge_left)), strict=True))

    def piece_ids(self, piece: str) -> list[int]:
        """Ids of one piece of the split pattern (specials map to themselves)."""
        done, ids = self._start(piece)
        if done:
            return ids
        if len(ids) >= HEAP_BPE_FROM and self.heap_exact:
            return self._merge_heap(ids)
        return self._merge(ids)

    def _start(self, piece: str) -> tuple[bool, list[int]]:
        """(True, ids) for a special or a whole vocabulary word; else (False, byte ids, last one end-marked)."""
        if piece in CLIP_SPECIALS:
            return True, [self.ids[piece]]
        data = piece.encode("utf-8")  # lone surrogates never get here: ftfy replaces them
        if self.whole_words:  # most pieces are whole vocabulary words: skip the merge loop for them
            printable_ascii = piece.isascii() and piece.isprintable()  # such bytes stand for themselves
            symbol = piece if printable_ascii else "".join([self.byte_char[b] for b in data])
            whole = self.ids.get(symbol + END_OF_WORD)
            if whole is not None:
                return True, [whole]
        ids = [self.byte_id[b] for b in data]
        ids[-1] += 256  # the last byte carries the end-of-word mark
        return False, ids

    def many_piece_ids(self, pieces: Sequence[str]) -> list[list[int]]:
        """`piece_ids` of many pieces (through `piece_table`)."""
        import pyarrow as pa

        flat, starts, lens = self.piece_table(pa.array(list(pieces), pa.large_string()))
        ids = flat.tolist()
        return [ids[s : s + n] for s, n in zip(starts.tolist(), lens.tolist(), strict=True)]

    def piece_table(self, pieces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`piece_ids` of each string of an Arrow string array, as a ragged table (flat, starts, lens).

        Specials and whole vocabulary words are found by one Arrow lookup; the other pieces' bytes are
        mapped to ids in numpy and merged together (`batch_merge`), those of HEAP_BPE_FROM bytes or more one
        by one (the heap BPE: a batch round costs all unfinished ids).
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        pieces = pieces.cast(pa.large_string())
        n = len(pieces)
        if type(self).piece_ids is not ClipBPE.piece_ids or not self.heap_exact:  # (a subclass's own BPE)
            lists = [self.piece_ids(p) for p in pieces.to_pylist()]
            lens = np.fromiter(map(len, lists), np.int64, count=n)
            flat = np.fromiter(itertools.chain.from_iterable(lists), np.int64, count=int(lens.sum()))
            return flat, np.cumsum(lens) - lens, lens
        specials = pa.array(CLIP_SPECIALS, pa.large_string())
        special = pc.is_in(pieces, value_set=specials).to_numpy(zero_copy_only=False)
        single = np.full(n, -1, dtype=np.int64)  # the one id of a special or (below) of a whole word
        if special.any():
            single[special] = self.vocab_ids(pieces.filter(special))
        if self.whole_words:  # most pieces are whole vocabulary words: no merging for them
            plain = pc.and_(pc.string_is_ascii(pieces), pc.ascii_is_printable(pieces))  # bytes as themselves
            symbols = pieces
            if not pc.all(plain).as_py():
                other = pc.invert(plain)
                char = self.byte_char
                spelled = ["".join([char[b] for b in p.encode()]) for p in pieces.filter(other).to_pylist()]
                symbols = pc.replace_with_mask(pieces, other, pa.array(spelled, pa.large_string()))
            end, nothing = pa.scalar(END_OF_WORD, pa.large_string()), pa.scalar("", pa.large_string())
            word = pc.binary_join_element_wise(symbols, end, nothing)  # symbol + </w>
            single[~special] = self.vocab_ids(word)[~special]
        sizes = pc.binary_length(pieces).to_numpy().astype(np.int64)
        starts, lens = np.arange(n), (single >= 0).astype(np.int64)  # `single` is the table's first part
        todo = np.flatnonzero((single < 0) & (sizes > 0))
        if not todo.size:
            return single, starts, lens
        data, cuts = string_bytes(pieces.take(pa.array(todo)))  # their bytes, one after another
        ids = self._byte_ids[data[cuts[0] : cuts[-1]]]
        size = sizes[todo]
        ids[np.cumsum(size) - 1] += 256  # the last byte of each piece carries the end-of-word mark
        long = size >= HEAP_BPE_FROM
        if self._rank_table is None:
            self._rank_table = RankTable(self.merge_left * KEY + self.merge_right, N_MERGES)
        flat, short_starts, short_lens = batch_merge(
            ids[np.repeat(~long, size)], size[~long], self._rank_table, FIRST_MERGE_ID
        )
        starts[todo[~long]], lens[todo[~long]] = n + short_starts, short_lens
        parts, end = [single, flat], n + flat.size
        for i in np.flatnonzero(long).tolist():
            first = int(cuts[i] - cuts[0])
            parts.append(np.array(self._merge_heap(ids[first : first + int(size[i])].tolist()), np.int64))
            starts[todo[i]], lens[todo[i]] = end, parts[-1].size
            end += parts[-1].size
        return np.concatenate(parts), starts, lens

    def _merge_heap(self, ids: list[int]) -> list[int]:
        """The same merges as `_merge` in O(n log n): a heap of (rank, position) over a linked list.

        Popping the lowest rank, leftmost first, and skipping entries whose pair has changed applies every
        occurrence of the best pair left to right before any later rank, as open_clip does; a merge only
        creates pairs of higher rank (`heap_exact`), so no pass is interrupted. Words of 100,000 bytes take
        well under a second instead of minutes (the list version is quadratic).
        """
        rank_of = self.pair_rank.get
        n = len(ids)
        sym = ids[:]  # -1 marks a position merged into its left neighbour
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        stride = n + 1  # heap entries are rank * stride + position: ints order like (rank, position)
        heap = [
            r * stride + i
            for i, r in enumerate(map(rank_of, zip(ids, ids[1:], strict=False)))
            if r is not None
        ]
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            r, i = divmod(pop(heap), stride)
            a = sym[i]
            if a < 0:
                continue
            j = nxt[i]
            if j >= n or rank_of((a, sym[j])) != r:
                continue  # stale: the pair at i changed since this entry was pushed
            new = FIRST_MERGE_ID + r
            sym[i], sym[j] = new, -1
            k = nxt[j]
            nxt[i] = k
            if k < n:
                prv[k] = i
                right = rank_of((new, sym[k]))
                if right is not None:
                    push(heap, right * stride + i)
            p = prv[i]
            if p >= 0:
                left = rank_of((sym[p], new))
                if left is not None:
                    push(heap, left * stride + p)
        return [t for t in sym if t >= 0]

    def _merge(self, ids: list[int]) -> list[int]:
        """Apply the best-ranked adjacent merge at each of its occurrences, left to right, until none applies.

        `ranks[j]` is the merge rank of the pair (ids[j], ids[j+1]); a merge changes only its neighbours'
        ranks, so they alone are looked up again. A merge's product never forms the same pair again, and
        an overlapping run (x, x, x) merges its first two: the same result as open_clip's rescan per rank.
        """
        rank_of = self.pair_rank.get
        ranks = list(map(rank_of, zip(ids, ids[1:], strict=False), itertools.repeat(N_MERGES, len(ids) - 1)))
        while ranks:
            best = min(ranks)
            if best == N_MERGES:
                break
            new_id, at = FIRST_MERGE_ID + best, ranks.index(best)
            while True:
                ids[at : at + 2] = [new_id]
                del ranks[at]
                if at > 0:
                    ranks[at - 1] = rank_of((ids[at - 1], new_id), N_MERGES)
                if at < len(ranks):
                    ranks[at] = rank_of((new_id, ids[at + 1]), N_MERGES)
                if best not in ranks:  # (a test, not an exception: most words hold a pair once)
                    break
                at = ranks.index(best, at)
        return ids

    def readable(self, token_id: int) -> str:
        """The token's text with bytes decoded (invalid partial UTF-8 shown escaped) and </w> kept."""
        symbol = self.symbols[int(token_id)]
        if symbol in CLIP_SPECIALS:
            return symbol
        end = symbol.endswith(END_OF_WORD)
        body = symbol[: -len(END_OF_WORD)] if end else symbol
        text = bytes(self.char_byte[c] for c in body).decode("utf-8", errors="backslashreplace")
        return text + (END_OF_WORD if end else "")
