"""The map between a specialised tokenizer's dense ids and the full tokenizer's ids (shared by both kinds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class KeptIds:
    """New id = position in `original_ids`; `_new_of[original]` is the new id, or -1 where not kept."""

    original_ids: np.ndarray
    _new_of: np.ndarray

    def _set_kept(self, kept: Sequence[int] | np.ndarray, full_size: int) -> None:
        self.original_ids = np.asarray(kept, dtype=np.int64)
        self._new_of = np.full(full_size, -1, dtype=np.int64)
        self._new_of[self.original_ids] = np.arange(len(self.original_ids))

    def to_original(self, ids: Sequence[int]) -> list[int]:
        return self.original_ids[np.asarray(ids, dtype=np.int64)].tolist()

    def from_original(self, ids: Sequence[int]) -> list[int]:
        """New ids of original ids; KeyError naming the first original id that is not kept."""
        new = self._new_of[np.asarray(ids, dtype=np.int64)]
        if (new < 0).any():
            raise KeyError(f"original id {int(np.asarray(ids)[new < 0][0])} is not kept")
        return new.tolist()
