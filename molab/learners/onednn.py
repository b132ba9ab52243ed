"""Linear layers through oneDNN on the CPUs where torch's own matmul leaves half the machine unused.

torch's CPU builds multiply float32 matrices with MKL, which runs its AVX-512 kernels only on Intel processors: on
an AMD processor with AVX-512 (Zen 4 and later) it runs its AVX2 ones, at half the arithmetic a cycle. oneDNN, which
torch ships too, picks its kernels by what the processor can do. On a 2-core AMD EPYC (Zen 5) one thread multiplied
the demo's 448 x 128 by 128 x 512 in 547 us through MKL and 249 us through oneDNN; a demo run (300 steps, its
answers) took 11.3-11.9 s against 14.2-15.1 s with one thread, and 0.98-1.17x less time with two
(bench/runs_per_hour.py).

`faster_linears(model)` makes the model's `nn.Linear` layers compute the same float32 products through oneDNN (its
own order of additions, so results differ from MKL's in the last bits, as they do with the thread count) where that
pays: a CPU whose vendor is known and is not Intel, with AVX-512, a torch with oneDNN. A layer falls back to
`nn.Linear`'s own forward wherever oneDNN's would not be the same computation or cannot run: other devices and
dtypes, autocast (which gives matmuls in bfloat16 their own oneDNN kernels), inputs of `torch.func` transforms
(stacked runs), tracing by torch.compile, empty inputs and non-contiguous weights.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn


def pays() -> bool:
    """Whether oneDNN's float32 matmul beats MKL's on this CPU: a processor with AVX-512 whose vendor is known and
    is not Intel (and a torch with oneDNN, not turned off with `torch.backends.mkldnn.enabled = False`)."""
    return (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and torch.backends.cpu.get_cpu_capability().startswith("AVX512") and _vendor() not in ("GenuineIntel", ""))


@functools.cache
def _vendor() -> str:
    """The CPU's vendor as /proc/cpuinfo names it ("GenuineIntel", "AuthenticAMD"); "" where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def faster_linears(model: nn.Module, force: bool = False) -> nn.Module:
    """`model`, its `nn.Linear` layers computing through oneDNN where that `pays` (or with `force`), in place."""
    if force or pays():
        for module in model.modules():
            if type(module) is nn.Linear:
                module.__class__ = OneDNNLinear
    return model


def _plain(t: torch.Tensor) -> bool:
    """A float32 tensor on the CPU, not one of torch.func's wrappers (vmap's batched tensors)."""
    return (t.device.type == "cpu" and t.dtype == torch.float32
            and not torch._C._functorch.is_functorch_wrapped_tensor(t))


class OneDNNLinear(nn.Linear):
    """`nn.Linear`, its float32 products on the CPU through oneDNN (`_OneDNN`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu") or not x.numel()  # (none: oneDNN fails)
                or not (_plain(x) and _plain(self.weight) and self.weight.is_contiguous())):
            return super().forward(x)
        return _OneDNN.apply(x.contiguous(), self.weight, self.bias)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T (+ bias) through oneDNN; `weight` contiguous."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNN(torch.autograd.Function):
    """A linear layer whose three products (forward, the input's gradient, the weight's) are oneDNN's."""

    @staticmethod
    def forward(x, weight, bias):
        return _linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        rows = grad.reshape(-1, grad.shape[-1])
        grad_x = _linear(grad, weight.t().contiguous()) if ctx.needs_input_grad[0] else None
        grad_w = (_linear(rows.t().contiguous(), x.reshape(-1, x.shape[-1]).t().contiguous())
                  if ctx.needs_input_grad[1] else None)
        grad_b = rows.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b
