"""`torch-autocast`: the `torch` adapter's float32 torch.nn modules fed float16/bfloat16 inputs
inside `torch.autocast(device_type, dtype=<the input dtype>)`, as an automatic-mixed-precision
training step runs them: the forward inside the region, the backward outside it (torch's AMP
recipe), on "cpu" and "cuda".

Only the mixed-precision items run (`Capabilities.same_dtype=False`): autocast is a mixed-precision
context, and a module in its input's dtype is the `torch` adapter's. What autocast changes depends
on the device's autocast kernels. torch 2.13 registers none for these five modules on CPU, so there
the items run what `torch`'s mixed items run, and a torch that adds some changes this adapter's
results alone. On CUDA it registers kernels for layer_norm, group_norm and rms_norm
(`torch._C._dispatch_dump("aten::layer_norm")` lists AutocastCUDA), and torch's autocast
documentation lists layer_norm and group_norm among the ops that autocast to float32: their inputs
are cast to float32, and so their output is float32. The CUDA items have not run yet (no GPU since
this adapter was written): docs/benchmarks.md, "torch.autocast", says how to run them.
"""
from __future__ import annotations

import dataclasses

import torch

from .torch_modules import TorchAdapter


class TorchAutocastAdapter(TorchAdapter):
    """The `torch` modules under torch.autocast; see the module docstring."""

    id = "torch-autocast"
    capabilities = dataclasses.replace(TorchAdapter.capabilities, dtypes=("float16", "bfloat16"), same_dtype=False)

    def _call(self, module, tensor, device):
        # Every call is a mixed-precision pair (same_dtype=False), so the input is float16 or bfloat16.
        with torch.autocast(device_type=device, dtype=tensor.dtype):
            return module(tensor)
