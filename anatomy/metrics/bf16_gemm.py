"""bfloat16 matrix products with float32 accumulation and float32 output, where the CPU runs them fast.

torch's own bfloat16 matmul on CPU returns bfloat16 (its result rounded to 8 significant bits), which would
ruin the error bound of the kNN's candidate search. Intel MKL's `cblas_gemm_bf16bf16f32` (linked into
torch's CPU library on x86) takes bfloat16 operands, accumulates in float32 and writes float32: on CPUs with
AMX tiles it runs about 4x float32's GEMM (measured: 1.2 TFLOP/s vs 0.3 on 2 cores). Each product of two
bfloat16 numbers is exact in float32, so the result is a float32 sum, with the usual bound of recursive
summation whatever order MKL adds in.

Used only where the CPU has AMX (bfloat16 without it is no faster than float32), the symbol loads, and a
self-test of the binding gives the exact products; everything else falls back to float32.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

import numpy as np

log = logging.getLogger(__name__)

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def cpu_flags() -> set[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def _mkl_function():
    """MKL's cblas_gemm_bf16bf16f32 from torch's CPU library, or None."""
    import torch

    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        fn = ctypes.CDLL(path).cblas_gemm_bf16bf16f32
    except (OSError, AttributeError):
        return None
    fn.restype = None
    fn.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    fn.argtypes += [ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
    return fn


@functools.cache
def bf16_available() -> bool:
    """True when bfloat16 products are fast here (AMX) and the MKL binding passes its self-test."""
    if "amx_bf16" not in cpu_flags() or _mkl_function() is None:
        return False
    import torch

    # Odd sizes, exactly representable products: the float32 result must equal float64 arithmetic on the
    # same bfloat16 values up to float32 summation error (a wrong integer width or layout is far off).
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(37, 70, generator=gen).to(torch.bfloat16)
    b = torch.randn(29, 70, generator=gen).to(torch.bfloat16)
    out = np.full((37, 29), np.nan, dtype=np.float32)
    try:
        gram_bf16(a, b, out)
    except Exception:  # noqa: BLE001 - any failure of the foreign call means "not available"
        log.info("bfloat16 GEMM self-test raised; using float32", exc_info=True)
        return False
    exact = (a.double() @ b.double().T).numpy()
    scale = (a.double().abs() @ b.double().abs().T).numpy()
    ok = bool(np.all(np.abs(out - exact) <= 72 * 2.0**-24 * scale + 1e-30))
    if not ok:
        log.info("bfloat16 GEMM self-test gave wrong products; using float32")
    return ok


def gram_bf16(left, right, out: np.ndarray) -> None:
    """out[:] = left @ right.T for contiguous bfloat16 torch tensors [m, K] and [n, K] into float32 [m, n]."""
    m, kdim = left.shape
    n = right.shape[0]
    if not (left.is_contiguous() and right.is_contiguous() and out.flags.c_contiguous):
        raise ValueError("gram_bf16 needs contiguous operands")
    if right.shape[1] != kdim or out.shape != (m, n) or out.dtype != np.float32:
        raise ValueError(f"gram_bf16 shapes: {tuple(left.shape)} x {tuple(right.shape)} -> {out.shape}")
    if m and n:
        _mkl_function()(_ROW_MAJOR, _NO_TRANS, _TRANS, m, n, kdim, 1.0, left.data_ptr(), kdim, right.data_ptr(), kdim, 0.0,
       out.ctypes.data, n)  # fmt: skip
