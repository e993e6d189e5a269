"""A cheaper (k+1)-token verify forward on CPU at fp32: oneDNN's prepacked matmul for multi-token inputs.

On CPU, MKL's fp32 GEMM for a few rows costs far more than its 1-row GEMV: measured here on
SmolLM2-135M (AMD EPYC, AVX2, 1 thread), a forward over 5 new tokens took 1.7x a 1-token step and
11 tokens 2.4x. oneDNN with the weight packed once for small batches takes about 1.3x and 1.8x
(docs/benchmarks/speculative.md). So the verifier keeps each Linear's 1-token path exactly as it
is (plain decoding's numerics and speed are untouched) and sends inputs of 2 or more rows through
the packed weight. The packed copy costs memory: one more set of the Linear weights, so it is made
only where that fits (`MEMORY_HEADROOM`).
"""

from __future__ import annotations

import copy
import logging
import threading
import weakref

import psutil
import torch
from torch import nn

log = logging.getLogger(__name__)

#: the packed copy is made only if this much memory stays free after it
MEMORY_HEADROOM = 2 << 30
#: the batch size oneDNN packs the weight for (rows of a typical verify forward)
PACKED_FOR_ROWS = 8
_VERIFIERS: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class PackedLinear(nn.Module):
    """nn.Linear's own path for one row; oneDNN's prepacked fp32 matmul for more rows."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), PACKED_FOR_ROWS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] == 1:
            return nn.functional.linear(x, self.weight, self.bias)
        y = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
        return y.reshape(*x.shape[:-1], self.out_features)


def packable(model: nn.Module) -> bool:
    """fp32 on CPU with oneDNN present, every Linear plain, and room for the packed copy."""
    params = list(model.parameters())
    if not params or any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    need = sum(m.weight.numel() * 4 for m in linears)
    return bool(linears) and psutil.virtual_memory().available > need + MEMORY_HEADROOM


def verifier(model: nn.Module) -> nn.Module:
    """The model with multi-row Linear inputs on oneDNN's packed path (made once per model), or the
    model itself where that does not apply. Shares every weight with it."""
    with _LOCK:
        if model in _VERIFIERS:
            return _VERIFIERS[model]
        result = model
        if packable(model):
            try:
                memo = {id(m): PackedLinear(m) for m in model.modules() if type(m) is nn.Linear}
                # Parameters map to themselves: the copy shares every weight, only Linears change.
                memo.update({id(p): p for p in model.parameters()})
                memo.update({id(b): b for b in model.buffers()})
                result = copy.deepcopy(model, memo)
            except RuntimeError as exc:  # an oneDNN build that cannot pack: keep MKL's path
                log.warning("packed verifier unavailable (%s): verifying with the model as is", exc)
        _VERIFIERS[model] = result
        return result
