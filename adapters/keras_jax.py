"""`keras-jax`: the Keras 3 normalization layers of the `keras` adapter on the JAX backend
(KERAS_BACKEND=jax), called eagerly as a user calls a layer, channels last.

The layers, their cache and the adapter methods are the ones every Keras adapter shares
(_keras_common, which describes them); this module is the JAX half. Importing it imports
Keras with KERAS_BACKEND=jax, or refuses if this process already has Keras on another
backend, and turns on `jax_enable_x64` for the whole process: without it JAX silently
computes float64 inputs in float32, so the float64 cases would test a configuration no
float64 user has (the Flax adapters do the same). Keras computes float16/bfloat16 in
float32 internally and returns the layer's dtype.

The backward pass is `jax.vjp` of the layer's `stateless_call`, as Keras' own JAX trainer
differentiates layers: the trainable variables are the differentiated inputs, the
non-trainable ones (BatchNormalization's moving statistics) are constants.
Checked against keras 3.15.1 with jax 0.10.2 (CPU).
"""
from __future__ import annotations

from functools import lru_cache

import jax  # before Keras: without JAX the adapter is not installed, and KERAS_BACKEND stays as it was

jax.config.update("jax_enable_x64", True)

from ._keras_common import KerasBackend, KerasLayersAdapter, import_keras  # noqa: E402

keras = import_keras("jax", "keras-jax")


class JaxBackend(KerasBackend):
    def version(self) -> str:
        return f"jax {jax.__version__}"

    def device_status(self) -> dict:
        try:
            gpu = None if jax.devices("gpu") else "cuda: jax.devices('gpu') is empty"
        except RuntimeError as error:  # no GPU backend in this jaxlib
            gpu = f"cuda: not available ({error})"
        return {"cpu": None, "cuda": gpu}

    def vjp(self, layer, x, dy, device, call_kwargs, weight, bias) -> dict:
        trainable = list(layer.trainable_variables)
        attributes = {name: getattr(layer, name) for name in _CALL_ATTRIBUTES if hasattr(layer, name)}
        with self.device_scope(device):
            dx, dvalues = _jitted_vjp(layer, tuple(sorted(call_kwargs.items())))(
                self.to_tensor(x), [variable.value for variable in trainable],
                [variable.value for variable in layer.non_trainable_variables], self.to_tensor(dy), attributes)
        gradients = {id(variable): gradient for variable, gradient in zip(trainable, dvalues)}
        return {"x": self.to_numpy(dx),
                "weight": None if weight is None else self.to_numpy(gradients[id(weight)]),
                "bias": None if bias is None else self.to_numpy(gradients[id(bias)])}


# The constructor arguments the layers read only in `call` (_keras_common._Spec.call_attributes).
_CALL_ATTRIBUTES = ("epsilon", "momentum")


@lru_cache(maxsize=512)
def _jitted_vjp(layer, call_items: tuple):
    """jax.jit of the VJP of layer.stateless_call, as Keras' JAX trainer jits its gradient step:
    (x, trainable values, non-trainable values, dy, call attributes) -> (dx, [d value]). The call
    attributes (epsilon, momentum) are set on the layer while it is traced, as arguments: Python
    floats, which JAX traces as weakly typed scalars that take the dtype of the array they meet,
    as the attributes' own Python floats do, so a new eps compiles nothing."""

    def vjp(x, values, constants, dy, attributes):
        saved = {name: getattr(layer, name) for name in attributes}
        try:
            for name, value in attributes.items():
                setattr(layer, name, value)
            _, pullback = jax.vjp(lambda x, values: layer.stateless_call(values, constants, x, **dict(call_items))[0],
                                  x, values)
            return pullback(dy)
        finally:
            for name, value in saved.items():
                setattr(layer, name, value)

    return jax.jit(vjp)


class KerasJaxAdapter(KerasLayersAdapter):
    id = "keras-jax"
    compiles_per_shape = True  # JAX compiles each op of an eager call, and the jitted VJP, once per shape
    environment = {"KERAS_BACKEND": "jax"}
    backend = JaxBackend(keras)
