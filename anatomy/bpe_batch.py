"""Byte-pair merging of many id sequences at once in numpy, and ragged tables (ids of many items in one array).

A ragged table is (flat, starts, lens): item i's ids are flat[starts[i] : starts[i] + lens[i]]. Items need
not be stored in order, so tables built piece by piece are joined without copying into place.
`batch_merge` is the BPE of `anatomy.clip_bpe.ClipBPE` for many pieces together (see its docstring).
"""

from __future__ import annotations

import numpy as np

KEY = 1 << 16  # a pair's key: left id * KEY + right id (ids are below 49,408 < 2**16)
SEPARATOR = KEY - 1  # an id of no merge: ends each sequence in `batch_merge`, so no pair spans two
_FREE = np.uint32(2**32 - 1)  # a free slot of RankTable (the key of the pair SEPARATOR, SEPARATOR)


def string_bytes(strings) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of an Arrow large_string array and each string's (start, end) cuts: (data, offsets).

    String i is data[offsets[i] : offsets[i + 1]] (views of Arrow's buffers, no copy).
    """
    offsets = np.frombuffer(strings.buffers()[1], np.int64)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    data = strings.buffers()[2]
    return (np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)), offsets


def ragged_take(flat: np.ndarray, starts: np.ndarray, lens: np.ndarray, which: np.ndarray):
    """The ids of items `which` (indices into a ragged table), one after another: (flat ids, lens)."""
    got = lens[which]
    ends = np.cumsum(got)
    position = np.repeat(starts[which] - (ends - got), got) + np.arange(int(ends[-1]) if got.size else 0)
    return flat[position], got


def ragged_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive groups of `values` of sizes `counts` (groups may be empty)."""
    total = np.r_[0, np.cumsum(values)]
    return np.diff(total[np.r_[0, np.cumsum(counts)]])


class RankTable:
    """Merge rank of many pair keys at once: an open-addressing hash table (linear probing) in numpy.

    Keys are placed in the order of their home slot, each in the first free slot from its home: slot i is
    max(home i, slot i-1 + 1), one cumulative maximum. So every slot from a key's home to its own is taken,
    and a lookup walks from the home until it meets the key or a free slot. The table runs past its last
    home instead of wrapping around, and ends with a free slot. Free slots hold the rank `missing`.
    """

    def __init__(self, keys: np.ndarray, missing: int):
        bits = max(4, int(np.ceil(np.log2(4 * max(len(keys), 1)))))  # at most a quarter full: short probes
        self.shift, self.missing = np.uint32(32 - bits), missing
        keys = np.asarray(keys).astype(np.uint32)
        home = self._home(keys)
        order = np.argsort(home, kind="stable")
        step = np.arange(len(keys))
        slot = step + np.maximum.accumulate(home[order] - step) if len(keys) else step
        size = max(1 << bits, int(slot[-1]) + 2 if len(keys) else 1)
        self.keys = np.full(size, _FREE, dtype=np.uint32)
        self.ranks = np.full(size, missing, dtype=np.int32)
        self.keys[slot], self.ranks[slot] = keys[order], order

    def _home(self, keys: np.ndarray) -> np.ndarray:
        mixed = keys * np.uint32(0x9E3779B1)  # Fibonacci hashing (wraps mod 2**32)
        return (mixed >> self.shift).astype(np.intp)  # (numpy indexes fastest with intp)

    def rank(self, keys: np.ndarray) -> np.ndarray:
        """Each key's merge rank (int32), or `missing` where the pair is not a merge."""
        keys = np.asarray(keys).astype(np.uint32, copy=False)
        slot = self._home(keys)
        found = self.keys[slot]
        out = self.ranks[slot]  # right where the home slot holds the key or is free
        todo = np.flatnonzero((found != keys) & (found != _FREE))
        out[todo], slot = self.missing, slot[todo]
        while todo.size:  # an occupied slot holding another key: probe the next one
            slot += 1
            found = self.keys[slot]
            hit = found == keys[todo]
            out[todo[hit]] = self.ranks[slot[hit]]
            go = ~hit & (found != _FREE)
            todo, slot = todo[go], slot[go]
        return out


def batch_merge(ids: np.ndarray, lens: np.ndarray, table: RankTable, first_merge_id: int):
    """BPE of many id sequences together: a ragged table (flat, starts, lens) of the merged sequences.

    `ids` holds the sequences one after another, `lens` their lengths (each at least 1). Merge r joins the
    pair with key r's into id first_merge_id + r; valid when a merge only creates pairs of higher rank (the
    `heap_exact` property of `ClipBPE`). Each round applies, in every unfinished sequence, its best-ranked
    pair at all its occurrences, left to right without overlap (a run x x x merges its first two): one pass
    of `ClipBPE._merge`'s outer loop. A merge only creates pairs of higher rank, so the occurrences present
    at the start of a round are exactly the ones `_merge` applies. Only the pairs next to a merge are looked
    up again, and finished sequences leave the working array, so a round costs the unfinished ids only.
    """
    n_seqs, none = len(lens), table.missing
    starts, out_lens = np.zeros(n_seqs, dtype=np.int64), np.zeros(n_seqs, dtype=np.int64)
    if not n_seqs:
        return np.zeros(0, dtype=np.int64), starts, out_lens
    # the sequences, each followed by SEPARATOR: no pair with it is a merge
    ends = np.cumsum(lens)
    work = np.full(int(ends[-1]) + n_seqs, SEPARATOR, dtype=np.uint32)
    work[np.arange(work.size - n_seqs) + np.repeat(np.arange(n_seqs), lens)] = ids
    rank = np.r_[table.rank((work[:-1] << 16) | work[1:]), np.int32(none)]  # rank[i]: of pair (i, i + 1)
    live = np.arange(n_seqs)  # which sequence each working segment is
    done: list[np.ndarray] = []
    n_done = 0
    while live.size:
        seps = np.flatnonzero(work == SEPARATOR)
        width = np.diff(np.r_[-1, seps])  # each segment's length, its separator included
        best = np.minimum.reduceat(rank, seps - width + 1)
        over = best == none  # no merge left: the segment is final
        if over.any():
            finished = np.repeat(over, width)
            out = work[finished]
            done.append(out[out != SEPARATOR])
            size = width[over] - 1
            starts[live[over]] = n_done + np.cumsum(size) - size
            out_lens[live[over]] = size
            n_done += int(size.sum())
            best[over] = -1  # matches no rank: nothing merges there
        hit = rank == np.repeat(best, width)
        twice = hit[1:] & hit[:-1]  # pair i + 1 hits after pair i: a run x x x
        merge = hit.copy()
        merge[1:] ^= twice  # the first pair of each run of hits
        inner = np.flatnonzero(twice) + 1
        if inner.size:  # merge every other pair of a run, from its start
            first = np.flatnonzero(merge)
            run_start = first[np.searchsorted(first, inner, side="right") - 1]
            merge[inner] = (inner - run_start) % 2 == 0
        merged = np.flatnonzero(merge)
        work[merged] = first_merge_id + rank[merged]
        keep = ~finished if over.any() else np.ones(work.size, dtype=bool)
        keep[1:] &= ~merge[:-1]  # the right part of each merged pair goes
        live = live[~over]
        kept = np.flatnonzero(keep)
        work, rank = work[kept], rank[kept]
        changed = np.flatnonzero(merge[kept])  # where each merged id is now
        changed = np.concatenate([changed, changed - 1])  # the pairs left and right of a new id
        changed = changed[changed >= 0]
        rank[changed] = table.rank((work[changed] << 16) | work[changed + 1])
    return np.concatenate(done).astype(np.int64), starts, out_lens
