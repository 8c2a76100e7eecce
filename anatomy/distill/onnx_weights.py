"""What an int8 ONNX graph leaves in fp32, for its sidecar and the bill: dynamic quantisation rewrites the
MatMul/Gemm weights and the token-embedding table (Gather) to 8 bits; everything else stays fp32 (the positional
table, biases and norms, the quantisation scales themselves, and the kernels of ops it does not quantise, such
as the 1x1 and depthwise convolutions of the LiteText bodies). The record groups the fp32 weights by what uses
them, so a reader sees at once whether what stays fp32 is noise or a tenth of the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SMALL = (
    4096  # a 0-d or 1-d fp32 initializer up to this size is a bias, a norm's scale or shift, or a constant
)
LARGEST = 3  # the largest fp32 tensors named in the record


def _label(name: str, dims: list[int], users: set[str]) -> str:
    if "position" in name.lower():
        return "positional embedding"
    if name.endswith(("_scale", "_zero_point")) or users & {"DequantizeLinear", "DynamicQuantizeLinear"}:
        return "quantisation scales"
    if "Conv" in users and len(dims) >= 3:
        return "Conv kernels (not quantised)"
    if len(dims) <= 1 and int(np.prod(dims)) <= SMALL:
        return "biases, norms and constants"
    return f"{'/'.join(sorted(users)) or 'unused'} inputs"


def stays_fp32(model) -> dict[str, Any]:
    """{weights, share, parts: {what: weights}, largest: [[name, weights]]} of an ONNX model's fp32 initializers."""
    import onnx

    users: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    total, parts, tensors = 0, dict[str, int](), list[tuple[int, str]]()
    for init in model.graph.initializer:
        size = int(np.prod(init.dims))
        total += size
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        label = _label(init.name, list(init.dims), users.get(init.name, set()))
        parts[label] = parts.get(label, 0) + size
        tensors.append((size, init.name))
    kept = sum(parts.values())
    largest = [[name, size] for size, name in sorted(tensors, reverse=True)[:LARGEST]]
    return {"weights": kept, "share": kept / total if total else 0.0,
            "parts": dict(sorted(parts.items(), key=lambda kv: -kv[1])), "largest": largest}  # fmt: skip


def describe(record: dict[str, Any] | None) -> str:
    """One line: what stays fp32 and how much of the weights it is ("" without a record)."""
    if not record:
        return ""
    if not record["weights"]:
        return "every weight is in 8 bits"
    parts = ", ".join(f"{what} {n:,}" for what, n in record["parts"].items())
    return f"stays fp32: {record['share']:.1%} of the weights ({record['weights']:,}: {parts})"
