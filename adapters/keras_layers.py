"""`keras`: the Keras 3 normalization layers on the TensorFlow backend, channels last,
in their default numerics configuration, created with dtype = the input dtype.

The layers, their cache and the adapter methods are the ones every Keras adapter shares
(_keras_common, which describes them); this module is the TensorFlow half: tensors and
devices through _tf_common, variables assigned through the TensorFlow variable that holds
them, and the backward pass under tf.GradientTape. Keras computes float16/bfloat16 in
float32 internally and returns the layer's dtype. Half inputs with float32 parameters
(NUM-2.3) run layers built with Keras' mixed policies ("mixed_float16", "mixed_bfloat16").
Checked against keras 3.15.1 with tensorflow-cpu 2.21.0.
"""
from __future__ import annotations

import numpy as np

from ._keras_common import KerasBackend, KerasLayersAdapter, import_keras
from ._tf_common import device_scope, device_status, tape_vjp, tf_version, to_numpy, to_tensor

keras = import_keras("tensorflow", "keras")


class TensorFlowBackend(KerasBackend):
    def version(self) -> str:
        return tf_version()

    def device_status(self) -> dict:
        return device_status()

    def device_scope(self, device: str):
        return device_scope(device)

    def to_tensor(self, array):
        return to_tensor(array)

    def to_numpy(self, tensor) -> np.ndarray:
        return to_numpy(tensor)

    def assign(self, variable, value) -> None:
        """variable <- value, through the TensorFlow variable that holds the Keras variable's
        value (`variable.value`, outside a call), which skips the conversions and checks Keras'
        own `assign` repeats (docs/benchmarks.md). The value is cast to the variable's dtype
        first, as Keras' assign casts it."""
        target = variable.value
        target.assign(np.asarray(value, dtype=target.dtype.as_numpy_dtype))

    def vjp(self, layer, key, x, dy, device, call_kwargs, weight, bias) -> dict:
        def forward(x, **variables):  # the layer reads its own variables, which the tape watches
            return layer(x, **call_kwargs)
        return tape_vjp(forward, dy, device, x=x, weight=weight, bias=bias)


class KerasAdapter(KerasLayersAdapter):
    id = "keras"
    environment = {"KERAS_BACKEND": "tensorflow"}
    backend = TensorFlowBackend(keras)
