"""`keras-torch`: the Keras 3 normalization layers of the `keras` adapter on the PyTorch
backend (KERAS_BACKEND=torch), called eagerly as a user calls a layer, channels last.

The layers, their cache and the adapter methods are the ones every Keras adapter shares
(_keras_common, which describes them); this module is the PyTorch half. Importing it
imports Keras with KERAS_BACKEND=torch, or refuses if this process already has Keras on
another backend. On this backend Keras computes LayerNormalization and RMSNormalization
with torch's kernels (F.layer_norm, F.rms_norm) and BatchNormalization and
GroupNormalization from its own ops; float16/bfloat16 are computed in float32 and returned
in the layer's dtype; half inputs with float32 parameters (NUM-2.3) run layers built with
Keras' mixed policies ("mixed_float16", "mixed_bfloat16"). Calls run with autograd on, as a
user's do.

The backward pass is torch.autograd.grad of one layer call, with respect to the input and
the torch parameters that hold the layer's gamma/beta (scale); the moving statistics are
not parameters that require a gradient.
Checked against keras 3.15.1 with torch 2.13.0+cpu.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import torch  # before Keras: without torch the adapter is not installed, and KERAS_BACKEND stays as it was

from ._keras_common import KerasBackend, KerasLayersAdapter, import_keras

keras = import_keras("torch", "keras-torch")


class TorchBackend(KerasBackend):
    def version(self) -> str:
        return f"torch {torch.__version__}"

    def device_status(self) -> dict:
        return {"cpu": None, "cuda": None if torch.cuda.is_available() else "cuda: torch.cuda.is_available() is False"}

    def to_numpy(self, tensor) -> np.ndarray:
        """Through torch itself: Keras' convert_to_numpy warns under NumPy 2 (torch's __array__
        takes no `copy`)."""
        tensor = getattr(tensor, "value", tensor).detach().cpu()
        if tensor.dtype == torch.bfloat16:  # NumPy has no torch bfloat16; float32 holds it exactly
            return tensor.float().numpy().astype(ml_dtypes.bfloat16)
        return tensor.numpy().copy()

    def vjp(self, layer, key, x, dy, device, call_kwargs, weight, bias) -> dict:
        with self.device_scope(device):
            x = self.to_tensor(x).requires_grad_(True)
            sources = {"x": x, "weight": None if weight is None else weight.value,
                       "bias": None if bias is None else bias.value}
            present = {name: source for name, source in sources.items() if source is not None}
            y = layer(x, **call_kwargs)
            gradients = torch.autograd.grad(y, list(present.values()), grad_outputs=self.to_tensor(dy),
                                            allow_unused=True)
        by_name = dict(zip(present, gradients))
        return {name: None if by_name.get(name) is None else self.to_numpy(by_name[name]) for name in sources}


class KerasTorchAdapter(KerasLayersAdapter):
    id = "keras-torch"
    environment = {"KERAS_BACKEND": "torch"}
    backend = TorchBackend(keras)
