"""`keras-jax`: the Keras 3 normalization layers of the `keras` adapter on the JAX backend
(KERAS_BACKEND=jax), channels last, each call compiled as Keras' JAX trainer compiles it.

The layers, their cache and the adapter methods are the ones every Keras adapter shares
(_keras_common, which describes them); this module is the JAX half. Importing it imports
Keras with KERAS_BACKEND=jax, or refuses if this process already has Keras on another
backend, and turns on `jax_enable_x64` for the whole process: without it JAX silently
computes float64 inputs in float32, so the float64 cases would test a configuration no
float64 user has (the Flax adapters do the same). Keras computes float16/bfloat16 in
float32 internally and returns the layer's dtype. Half inputs with float32 parameters
(NUM-2.3) run layers built with Keras' mixed policies ("mixed_float16", "mixed_bfloat16").

Keras on JAX runs `fit`, `predict` and `evaluate` (jit_compile="auto") as `jax.jit` of the
model's `stateless_call`, which calls each layer inside a `StatelessScope` holding the
variables' values; the forward call here is that program for the one layer: its `__call__`
in a StatelessScope under `jax.jit`, the moving statistics it updates read back from the
scope and assigned. (An eager layer call, as outside `fit`, dispatches every op on its own
and is about twenty times slower per call: docs/benchmarks.md.) The backward pass is
`jax.jit` of `jax.vjp` of the layer's `__call__` in a StatelessScope, as the trainer compiles its
gradient step (the model's `stateless_call` calls each layer's `__call__`): the trainable variables are the differentiated inputs, the non-trainable ones
(BatchNormalization's moving statistics) constants. Both keep their executables in memory
and on disk as the Flax adapters do (_jax_executables), keyed by the layer's configuration.
Checked against keras 3.15.1 with jax 0.10.2 (CPU).
"""
from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

import jax  # before Keras: without JAX the adapter is not installed, and KERAS_BACKEND stays as it was

jax.config.update("jax_enable_x64", True)

from . import _jax_executables as executables  # noqa: E402
from ._jax_common import FlaxAdapter, gpu_status  # noqa: E402
from ._jax_process import cache  # noqa: E402
from ._keras_common import KerasBackend, KerasLayersAdapter, import_keras  # noqa: E402

keras = import_keras("jax", "keras-jax")

# A key part of every executable: _jax_executables' disk key covers jax, jaxlib and its own
# sources, not keras or the Keras adapters' code.
_KEY = ("keras-jax", keras.__version__,
        hashlib.sha256(b"".join((Path(__file__).parent / name).read_bytes()
                                for name in ("_keras_common.py", "keras_jax.py"))).hexdigest())


class JaxBackend(KerasBackend):
    def version(self) -> str:
        return f"jax {jax.__version__}"

    def device_status(self) -> dict:
        return {"cpu": None, "cuda": gpu_status()}

    def call(self, layer, key, x, device, call_kwargs):
        call_items = tuple(sorted(call_kwargs.items()))
        output, constants = executables.run(
            _jitted_call(layer, call_items), ("forward", _KEY, key, call_items),
            (self.to_tensor(x), _values(layer.trainable_variables), _values(layer.non_trainable_variables),
             _attributes(layer)), static={}, device=device)
        for variable, value in zip(layer.non_trainable_variables, constants):
            variable.assign(value)
        return output

    def vjp(self, layer, key, x, dy, device, call_kwargs, weight, bias) -> dict:
        trainable = list(layer.trainable_variables)
        call_items = tuple(sorted(_call_arguments(layer, call_kwargs).items()))
        with self.device_scope(device):
            dx, dvalues = executables.run(
                _jitted_vjp(layer, call_items), ("vjp", _KEY, key, call_items),
                (self.to_tensor(x), _values(trainable), _values(layer.non_trainable_variables), self.to_tensor(dy),
                 _attributes(layer)), static={}, device=device)
        gradients = {id(variable): gradient for variable, gradient in zip(trainable, dvalues)}
        return {"x": self.to_numpy(dx),
                "weight": None if weight is None else self.to_numpy(gradients[id(weight)]),
                "bias": None if bias is None else self.to_numpy(gradients[id(bias)])}


def _call_arguments(layer, call_kwargs: dict) -> dict:
    """The keyword arguments its `call` takes (a layer's __call__ drops a `training` that `call` does
    not declare, GroupNormalization's): one executable for the calls that differ only in those."""
    accepted = inspect.signature(layer.call).parameters
    return {name: value for name, value in call_kwargs.items() if name in accepted}


# The constructor arguments the layers read only in `call` (_keras_common._Spec.call_attributes).
_CALL_ATTRIBUTES = ("epsilon", "momentum")


def _values(variables) -> list:
    return [variable.value for variable in variables]


def _attributes(layer) -> dict:
    """The layer's call attributes (epsilon, momentum), which the jitted programs take as arguments."""
    return {name: getattr(layer, name) for name in _CALL_ATTRIBUTES if hasattr(layer, name)}


class _CallAttributes:
    """Sets a layer's call attributes to the traced arguments while a program is traced, and restores them."""

    def __init__(self, layer, attributes: dict):
        self.layer, self.attributes = layer, attributes

    def __enter__(self):
        self.saved = {name: getattr(self.layer, name) for name in self.attributes}
        for name, value in self.attributes.items():
            setattr(self.layer, name, value)

    def __exit__(self, *exc_info):
        for name, value in self.saved.items():
            setattr(self.layer, name, value)


@cache
def _jitted_call(layer, call_items: tuple):
    """jax.jit of layer(x, **call_items) in a StatelessScope, as Keras' JAX trainer runs a model:
    (x, trainable values, non-trainable values, call attributes) -> (output, [new non-trainable
    value]). The call attributes are arguments, as in _jitted_vjp, so a new eps compiles nothing."""

    def call(x, values, constants, attributes):
        mapping = list(zip(layer.trainable_variables, values)) + list(zip(layer.non_trainable_variables, constants))
        with _CallAttributes(layer, attributes), keras.StatelessScope(state_mapping=mapping) as scope:
            output = layer(x, **dict(call_items))
            return output, [scope.get_current_value(variable) for variable in layer.non_trainable_variables]

    return jax.jit(call)


@cache
def _jitted_vjp(layer, call_items: tuple):
    """jax.jit of the VJP of the layer's __call__ in a StatelessScope holding the variables' values,
    as Keras' JAX trainer jits its gradient step (the model's stateless_call calls each layer's
    __call__, which autocasts the variables under a mixed policy; the layer's own stateless_call
    would skip that, calling `call`):
    (x, trainable values, non-trainable values, dy, call attributes) -> (dx, [d value]). The call
    attributes (epsilon, momentum) are set on the layer while it is traced, as arguments: Python
    floats, which JAX traces as weakly typed scalars that take the dtype of the array they meet,
    as the attributes' own Python floats do, so a new eps compiles nothing."""

    def forward(x, values, constants):
        mapping = list(zip(layer.trainable_variables, values)) + list(zip(layer.non_trainable_variables, constants))
        with keras.StatelessScope(state_mapping=mapping):
            return layer(x, **dict(call_items))

    def vjp(x, values, constants, dy, attributes):
        with _CallAttributes(layer, attributes):
            _, pullback = jax.vjp(lambda x, values: forward(x, values, constants), x, values)
            return pullback(dy)

    return jax.jit(vjp)


class KerasJaxAdapter(KerasLayersAdapter):
    id = "keras-jax"
    compiles_per_shape = True  # each program compiles once per shape
    environment = {"KERAS_BACKEND": "jax"}
    backend = JaxBackend(keras)
    statistics = FlaxAdapter.statistics  # the same JIT cache counters (normspec bench)

    def configuration(self) -> dict:
        return {"forward": "jax.jit of the layer's __call__ in a StatelessScope, as Keras' JAX trainer runs fit, "
                           "predict and evaluate (not an eager layer call)",
                "backward": "jax.jit of jax.vjp of the layer's __call__ in a StatelessScope",
                "jax_enable_x64": bool(jax.config.jax_enable_x64), "XLA_FLAGS": os.environ.get("XLA_FLAGS")}
