"""The CLIP BPE vocabulary and merges (open_clip's file), and byte-pair encoding of pre-split pieces.

`ClipBPE.piece_ids` merges one piece (open_clip's rank-by-rank passes; a heap for long pieces);
`ClipBPE.many_piece_ids` merges many pieces at once in numpy, one rank round for all of them per step, with
the same result. The merges file ships inside open_clip_torch and is located without importing open_clip
(which would import torch). `anatomy.tokenizer` re-exports these names.
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


_KEY = 1 << 16  # a pair's key: left id * _KEY + right id (ids are below 49,408 < 2**16)


def _read_merges(raw: bytes, path: Path) -> tuple[list[str], list[str]]:
    """Left and right parts of the N_MERGES merges (the lines after the header), by rank."""
    inflate, parts, newlines = zlib.decompressobj(wbits=31), [], 0  # gzip framing
    for s in range(0, len(raw), 1 << 16):  # the merges are the file's first fifth: stop once they are out
        parts.append(inflate.decompress(raw[s : s + (1 << 16)]))
        newlines += parts[-1].count(b"\n")
        if newlines > N_MERGES:
            break
    lines = b"".join(parts).decode("utf-8").split("\n", N_MERGES + 1)[1 : N_MERGES + 1]
    tokens = " ".join(lines).split()
    if len(lines) != N_MERGES or len(tokens) != 2 * N_MERGES:
        raise InputError(
            f"{path}: not a CLIP BPE merges file ({N_MERGES:,} lines of two symbols after the header expected)",
            "leave the merges path unset to use open_clip's",
        )
    return tokens[0::2], tokens[1::2]


class _RankTable:
    """Merge rank of many pair keys at once: an open-addressing hash table (linear probing) in numpy."""

    def __init__(self, keys: np.ndarray):
        bits = max(4, int(np.ceil(np.log2(4 * len(keys)))))  # at most a quarter full: short probes
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        self.keys = np.full(1 << bits, -1, dtype=np.int64)
        self.ranks = np.zeros(1 << bits, dtype=np.int64)
        slot, pending = self._home(keys), np.arange(len(keys))
        while pending.size:  # place each key in the first free slot from its home, in rank order
            free = self.keys[slot] == -1
            taken, first = np.unique(slot[free], return_index=True)  # one key per free slot per pass
            placed = pending[free][first]
            self.keys[taken], self.ranks[taken] = keys[placed], placed
            left = np.ones(pending.size, dtype=bool)
            left[np.flatnonzero(free)[first]] = False
            pending, slot = pending[left], (slot[left] + 1) & self.mask

    def _home(self, keys: np.ndarray) -> np.ndarray:
        mixed = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing (wraps mod 2**64)
        return (mixed >> self.shift).astype(np.int64)

    def rank(self, keys: np.ndarray) -> np.ndarray:
        """Each key's merge rank, or N_MERGES where the pair is not a merge."""
        out = np.full(keys.size, N_MERGES, dtype=np.int64)
        todo, slot = np.arange(keys.size), self._home(keys)
        while todo.size:
            found = self.keys[slot]
            hit = found == keys[todo]
            out[todo[hit]] = self.ranks[slot[hit]]
            go = (found != -1) & ~hit  # an occupied slot holding another key: probe the next one
            todo, slot = todo[go], (slot[go] + 1) & self.mask
        return out


def _batch_merge(ids: np.ndarray, lens: np.ndarray, table: _RankTable) -> list[list[int]]:
    """`ClipBPE._merge` of many id sequences together (valid when `heap_exact`, like the heap BPE).

    Each round applies, in every unfinished sequence, its best-ranked pair at all its occurrences, left to
    right without overlap (a run x x x merges its first two): one pass of `_merge`'s outer loop. A merge only
    creates pairs of higher rank, so the occurrences present at the start of a round are exactly the ones
    `_merge` applies. Finished sequences leave the working arrays, so a round costs the unfinished ids only.
    `ids` holds the sequences one after another, `lens` their lengths (each at least 1).
    """
    n_seqs = len(lens)
    if not n_seqs:
        return []
    ids = np.array(ids, dtype=np.int64)  # a copy: merged in place
    seq = np.repeat(np.arange(n_seqs), lens)  # which sequence each id belongs to (contiguous, ascending)
    done_ids, done_seq = [], []
    while ids.size:
        n = ids.size
        starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
        rank = np.full(n, N_MERGES, dtype=np.int64)  # rank[i]: of the pair (i, i + 1) inside one sequence
        inside = np.flatnonzero(seq[:-1] == seq[1:])
        rank[inside] = table.rank(ids[inside] * _KEY + ids[inside + 1])
        best = np.minimum.reduceat(rank, starts)
        width = np.diff(np.r_[starts, n])
        over = best == N_MERGES
        if over.any():  # sequences with no merge left are final
            finished = np.repeat(over, width)
            done_ids.append(ids[finished])
            done_seq.append(seq[finished])
            live = ~finished
            ids, seq, rank, best, width = ids[live], seq[live], rank[live], best[~over], width[~over]
            if not ids.size:
                break
        hit = rank == np.repeat(best, width)
        position = np.arange(ids.size)
        run_start = np.maximum.accumulate(np.where(hit & ~np.r_[False, hit[:-1]], position, 0))
        merge = hit & ((position - run_start) % 2 == 0)  # every other pair of a run, from its start
        ids[merge] = FIRST_MERGE_ID + rank[merge]
        keep = ~np.r_[False, merge[:-1]]  # the right part of each merged pair goes
        ids, seq = ids[keep], seq[keep]
    flat_ids = np.concatenate(done_ids)
    order = np.argsort(np.concatenate(done_seq), kind="stable")
    flat = flat_ids[order].tolist()
    bounds = np.r_[0, np.cumsum(np.bincount(np.concatenate(done_seq), minlength=n_seqs))].tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class ClipBPE:
    """The CLIP vocabulary and merge ranks, and BPE of one pre-split piece (used on cache misses only)."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path else merges_path()
        if not path.is_file():
            raise InputError(
                f"{path}: CLIP BPE merges file not found", "leave the merges path unset to use open_clip's"
            )
        raw = path.read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        # Only the first lines are merges: decompress no further than they reach, split them in one C call.
        left, right = _read_merges(raw, path)
        order, self.byte_char = _byte_alphabet()
        chars = [self.byte_char[b] for b in order]
        self.char_byte = {c: b for b, c in enumerate(self.byte_char)}
        merged = list(map(str.__add__, left, right))
        vocab = chars + [c + END_OF_WORD for c in chars] + merged + list(CLIP_SPECIALS)
        self.symbols = vocab
        self.ids = dict(zip(vocab, range(len(vocab)), strict=True))
        # BPE runs on ids: merge r joins the pair (left id, right id) into id FIRST_MERGE_ID + r.
        self.byte_id = [0] * 256
        for i, byte in enumerate(order):
            self.byte_id[byte] = i
        get = self.ids.__getitem__
        self.merge_left = np.fromiter(map(get, left), np.int64, count=len(left))
        self.merge_right = np.fromiter(map(get, right), np.int64, count=len(right))
        self.whole_words = self.sha256 == WHOLE_WORDS_VERIFIED_SHA256
        # The heap BPE equals open_clip's rank-by-rank passes when a merge never creates a pair of lower or
        # equal rank: true when every merge joins tokens made before it and no pair repeats (checked, not
        # assumed). The batch BPE (`_batch_merge`) rests on the same property.
        made_at = FIRST_MERGE_ID + np.arange(len(left))
        # (Distinct symbols imply distinct pairs: a repeated pair would make one symbol twice.)
        self.heap_exact = bool(
            len(self.ids) == len(vocab) and (np.maximum(self.merge_left, self.merge_right) < made_at).all()
        )
        self._rank_table: _RankTable | None = None

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
        """`piece_ids` of many pieces: bytes mapped in numpy, the short pieces merged together (`_batch_merge`)."""
        if type(self).piece_ids is not ClipBPE.piece_ids or not self.heap_exact:  # (a subclass's own BPE)
            return [self.piece_ids(p) for p in pieces]
        out: list[list[int] | None] = [None] * len(pieces)
        if self.whole_words:
            char = self.byte_char
            symbols = [
                p if p.isascii() and p.isprintable() else "".join([char[b] for b in p.encode("utf-8")])
                for p in pieces
            ]
            get = self.ids.get
            out = [None if w is None else [w] for w in (get(s + END_OF_WORD) for s in symbols)]
        for i, p in enumerate(pieces):
            if p in CLIP_SPECIALS:
                out[i] = [self.ids[p]]
        todo = [i for i, ids in enumerate(out) if ids is None]
        if not todo:
            return out  # type: ignore[return-value]
        data = [pieces[i].encode("utf-8") for i in todo]
        lens = np.fromiter(map(len, data), np.int64, count=len(data))
        flat = np.asarray(self.byte_id)[np.frombuffer(b"".join(data), np.uint8)]
        flat[np.cumsum(lens) - 1] += 256  # the last byte of each piece carries the end-of-word mark
        long = lens >= HEAP_BPE_FROM  # merged one by one in O(n log n): a round costs all unfinished ids
        starts = np.cumsum(lens) - lens
        for i in np.flatnonzero(long).tolist():
            out[todo[i]] = self._merge_heap(flat[starts[i] : starts[i] + lens[i]].tolist())
        if self._rank_table is None:
            self._rank_table = _RankTable(self.merge_left * _KEY + self.merge_right)
        short = np.flatnonzero(~long)
        merged = _batch_merge(flat[np.repeat(~long, lens)], lens[short], self._rank_table)
        for i, ids in zip(short.tolist(), merged, strict=True):
            out[todo[i]] = ids
        return out  # type: ignore[return-value]

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
