"""`keras-jax`: the Keras 3 normalization layers of the `keras` adapter on the JAX backend
(KERAS_BACKEND=jax), called eagerly as a user calls a layer, channels last.

The layers, their cache and the adapter methods are the ones every Keras adapter shares
(_keras_common, which describes them); this module is the JAX half. Importing it imports
Keras with KERAS_BACKEND=jax, or refuses if this process already has Keras on another
backend, and turns on `jax_enable_x64` for the whole process: without it JAX silently
computes float64 inputs in float32, so the float64 cases would test a configuration no
float64 user has (the Flax adapters do the same). Keras computes float16/bfloat16 in
float32 internally and returns the layer's dtype.

The backward pass is `jax.jit` of `jax.vjp` of the layer's `stateless_call`, as Keras' own
JAX trainer compiles its gradient step: the trainable variables are the differentiated inputs,
the non-trainable ones (BatchNormalization's moving statistics) are constants. Forward calls
run eagerly, as a user's layer call does.
Checked against keras 3.15.1 with jax 0.10.2 (CPU).
"""
from __future__ import annotations

import inspect

import jax  # before Keras: without JAX the adapter is not installed, and KERAS_BACKEND stays as it was

jax.config.update("jax_enable_x64", True)

from ._jax_common import gpu_status  # noqa: E402
from ._jax_process import cache, note_jitted_call  # noqa: E402
from ._keras_common import KerasBackend, KerasLayersAdapter, import_keras  # noqa: E402

keras = import_keras("jax", "keras-jax")


class JaxBackend(KerasBackend):
    def version(self) -> str:
        return f"jax {jax.__version__}"

    def device_status(self) -> dict:
        return {"cpu": None, "cuda": gpu_status()}

    def note_call(self) -> None:
        """Every eager op compiles once per shape, as does the jitted VJP: past half of the process's
        memory-mapping limit _jax_process drops them all (its docstring says why)."""
        note_jitted_call(lambda: None)

    def vjp(self, layer, x, dy, device, call_kwargs, weight, bias) -> dict:
        trainable = list(layer.trainable_variables)
        attributes = {name: getattr(layer, name) for name in _CALL_ATTRIBUTES if hasattr(layer, name)}
        with self.device_scope(device):
            dx, dvalues = _jitted_vjp(layer, tuple(sorted(_call_arguments(layer, call_kwargs).items())))(
                self.to_tensor(x), [variable.value for variable in trainable],
                [variable.value for variable in layer.non_trainable_variables], self.to_tensor(dy), attributes)
        gradients = {id(variable): gradient for variable, gradient in zip(trainable, dvalues)}
        return {"x": self.to_numpy(dx),
                "weight": None if weight is None else self.to_numpy(gradients[id(weight)]),
                "bias": None if bias is None else self.to_numpy(gradients[id(bias)])}


def _call_arguments(layer, call_kwargs: dict) -> dict:
    """The keyword arguments its `call` takes: stateless_call passes them on as they are, where a
    layer's __call__ drops a `training` that `call` does not declare (GroupNormalization)."""
    accepted = inspect.signature(layer.call).parameters
    return {name: value for name, value in call_kwargs.items() if name in accepted}


# The constructor arguments the layers read only in `call` (_keras_common._Spec.call_attributes).
_CALL_ATTRIBUTES = ("epsilon", "momentum")


@cache
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
