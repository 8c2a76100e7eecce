"""The kNN's search space: squared distances from one low-precision GEMM, with a rigorous error bound per row.

With c the centred float64 points (scaled by a power of two, see build_operand), h = round(c) in the search
dtype (bfloat16, float32 or float64) and p + q = round(|c|^2) in two pieces, one GEMM of the augmented rows

    left_i = [-2 h_i, p_i, q_i, 1, 1]      right_j = [h_j, 1, 1, p_j, q_j]

gives value_ij ~ |c_i - c_j|^2 directly (no pass adding the norms). Against the exact squared distance,

    |value_ij - |c_i - c_j|^2| <= eps_i + eps_j + 2 (|h_i| e_j + e_i |c_j|) + gamma_K (2 |h_i||h_j| + P_i + P_j)

where e_i = |c_i - h_i| (computed exactly), eps_i = ||c_i|^2 - p_i - q_i|, P_i = |p_i| + |q_i|, and gamma_K =
K u / (1 - K u) bounds summing K = d + 4 exact products in the accumulator (unit roundoff u: 2^-24 for the
float32 accumulation of bfloat16 and float32, 2^-53 for float64) in any order. `bound[i]` takes the maxima
over j, plus terms for the float64 centring and the final distances' own rounding, and for AMX's flushing of
subnormal numbers; it bounds value_ji's error too (|h| and |c| both taken at their larger), so a block's
values serve the rows of its columns as well. Rows are stored in the search order (a permutation of the
points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_CHUNK = 1024  # rows per task (small temporaries: big ones freed in worker threads stay in malloc arenas)
UNIT_ROUNDOFF = {"bfloat16": 2.0**-24, "float32": 2.0**-24, "float64": 2.0**-53}  # of the accumulation


def search_dtype(fast: bool) -> str:
    """bfloat16 where the CPU multiplies it fast (AMX), else float32; float64 when `fast` is off."""
    from anatomy.metrics.bf16_gemm import bf16_available

    if not fast:
        return "float64"
    return "bfloat16" if bf16_available() else "float32"


@dataclass
class SearchOperand:
    dtype: str
    right: Any  # torch.Tensor [n, K], search dtype: [h_j, 1, 1, p_j, q_j, 0...], rows in search order
    d: int
    bound: np.ndarray  # [n] float64: |value_ij - unit * exact squared distance| <= bound[i] for every j
    norm_max: float  # max_j |x_j - mean| (the points' own units)
    unit: float  # a power of two: values are unit x squared distances (the points scaled into range)

    @property
    def value_dtype(self):
        return np.float64 if self.dtype == "float64" else np.float32

    def left(self, start: int, stop: int):
        """The left operand of rows start:stop: [-2 h_i, p_i, q_i, 1, 1, 0...] (scaling by -2 is exact)."""

        return self.left_rows(slice(start, stop))

    def left_rows(self, rows):
        """The left operand of the given rows (an index array or a slice)."""
        import torch

        rows, d = self.right[rows], self.d
        out = torch.zeros_like(rows)
        torch.mul(rows[:, :d], -2, out=out[:, :d])
        out[:, d : d + 2] = rows[:, d + 2 : d + 4]
        out[:, d + 2 : d + 4] = 1
        return out

    def gram(self, left, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """out = left @ right[start:stop].T (the squared-distance values of left's rows against those)."""
        import torch

        if self.dtype == "bfloat16":
            from anatomy.metrics.bf16_gemm import gram_bf16

            gram_bf16(left, self.right[start:stop], out)
        else:
            torch.mm(left, self.right[start:stop].T, out=torch.from_numpy(out))
        return out


def build_operand(x: np.ndarray, mean: np.ndarray, order: np.ndarray | None, dtype: str, pool=None):
    """The augmented right operand of x's rows (in `order`, if given) and each row's error bound (chunks of
    rows in `pool`'s threads, if given)."""
    import torch

    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}[dtype]
    n, d = x.shape
    # Scaled by a power of two (exact) so that every |c| < 1: bfloat16 and float32 hold the squares of points
    # up to 1e19 only (beyond, values overflowed and the search went wrong), and tiny points stay normal.
    # (points.check_array refuses spreads whose squared distances overflow float64)
    radius = float(np.maximum(x.max(axis=0) - mean, mean - x.min(axis=0)).max()) * np.sqrt(d)  # >= every |c|
    scale = 2.0 ** -np.frexp(radius)[1]
    # Zero columns pad K to a multiple of 32: MKL's bfloat16 kernels (AMX tiles) run K = 388 at 2/3 the speed.
    right = torch.zeros((n, -(-(d + 4) // 32) * 32), dtype=torch_dtype)
    norm, h_norm, err, eps, pieces = (np.empty(n) for _ in range(5))

    def rows_from(s: int) -> None:
        rows = order[s : s + _CHUNK] if order is not None else slice(s, s + _CHUNK)
        c = x[rows] - mean
        c *= scale
        e = s + len(c)
        h = torch.from_numpy(c).to(torch_dtype)
        hd = h.double().numpy()
        sq = np.einsum("ij,ij->i", c, c)
        p = torch.from_numpy(sq).to(torch_dtype)
        q = torch.from_numpy(sq - p.double().numpy()).to(torch_dtype)
        pd, qd = p.double().numpy(), q.double().numpy()
        block = right[s:e]
        block[:, :d] = h
        block[:, d : d + 2] = 1
        block[:, d + 2], block[:, d + 3] = p, q
        norm[s:e] = np.sqrt(sq)
        h_norm[s:e] = np.sqrt(np.einsum("ij,ij->i", hd, hd))
        c -= hd
        err[s:e] = np.sqrt(np.einsum("ij,ij->i", c, c))
        eps[s:e] = np.abs(sq - pd - qd)
        pieces[s:e] = np.abs(pd) + np.abs(qd)

    list((pool.map if pool is not None else map)(rows_from, range(0, n, _CHUNK)))
    k_dim = d + 4
    u = UNIT_ROUNDOFF[dtype]
    gamma = k_dim * u / (1 - k_dim * u)
    n_max, h_max, p_max = norm.max(), h_norm.max(), pieces.max()
    # |h_i| e_j + e_i |c_j| <= reach_i e_max + e_i reach_max, and so for value_ji (the bound is symmetric)
    reach = np.maximum(norm, h_norm)
    bound = (
        eps
        + eps.max()
        + 2 * (reach * err.max() + err * reach.max())
        + gamma * (2 * h_norm * h_max + pieces + p_max)
        + (9 * d + 4) * 2.0**-53 * (norm + n_max) ** 2  # float64 centring and the final distances' rounding
        + k_dim * 2.0**-120 * (1 + 2 * h_max + p_max)  # subnormals flushed to zero (AMX)
    ) * (1 + 1e-6)  # the float64 evaluation of the terms above
    return SearchOperand(dtype, right, d, bound, float(n_max / scale), scale * scale)
