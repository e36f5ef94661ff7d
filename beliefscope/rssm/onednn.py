"""Linear layers of CPU inference through oneDNN rather than the BLAS.

PyTorch's CPU `F.linear` calls MKL, whose fp32 GEMM takes its AVX2 path on AMD CPUs: about
105 GFLOP/s per core on the development machine's AVX-512 Zen CPU, where oneDNN's kernels (the
ones PyTorch's CPU convolutions already use) reach about 230; `bench/ingest.py --profile`
prints both peaks. The weight is reordered into oneDNN's layout once, on first use. Whatever
oneDNN does not take here (a GPU tensor, another dtype, autocast, autograd) goes through
`F.linear` unchanged; results agree with it to fp32 rounding (another summation order).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


class Linear:
    """`F.linear(x, weight, bias)` with the weight kept in oneDNN's layout for CPU inference."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias
        self._packed: tuple[Tensor, Tensor | None] | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if not _takes(x, self.weight):
            return F.linear(x, self.weight, self.bias)
        if self._packed is None:
            bias = None if self.bias is None else self.bias.to_mkldnn()
            self._packed = (self.weight.to_mkldnn(), bias)
        return torch._C._nn.mkldnn_linear(x.to_mkldnn(), *self._packed).to_dense()


_HAS_OP = hasattr(torch._C._nn, "mkldnn_linear")
"""The op is internal to PyTorch: a release without it takes `F.linear`."""


def _takes(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and _HAS_OP
        and torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )
