"""What the Keras adapters (`keras`, `keras-jax`, `keras-torch`) share: importing Keras on
the backend an adapter names, Keras' conventions, the layer of each op, the cache of built
layers and the adapter methods, written once against the hooks of one backend
(`KerasBackend`).

Keras reads KERAS_BACKEND once, at its first import, so a process holds one backend:
`import_keras` sets it for an adapter whose process has not imported Keras yet and refuses
(UsageError) one whose process already has Keras on another backend. Each adapter also
declares it in `Adapter.environment`, which `normspec check` sets for its pytest process
and workers.

Keras' conventions are the same on every backend: channels last, momentum as the old value's
weight, the biased running variance; default eps 1e-3 (RMSNormalization 1e-6), informative.
The layers run in their default numerics configuration, created with dtype = the input
dtype:

- BatchNormalization (momentum is Keras' old-value weight; biased running variance;
  training=True/False is passed to the call; moving statistics loaded and read back).
- LayerNormalization with axis = the trailing len(normalized_shape) axes.
- GroupNormalization(groups=num_groups); InstanceNorm is GroupNormalization(groups=-1),
  Keras' documented way, which keeps no running statistics.
- RMSNormalization (it always has a scale; a None weight leaves the fresh layer's ones).

A None weight/bias builds the layer with scale=False/center=False. Built layers are
cached per configuration and their weights (and BatchNorm's moving statistics, which
each `Layer` here keeps itself) are assigned before every call. eps and momentum are not
part of the cached configuration: they are the layers' `epsilon` and `momentum`
attributes, which Keras' constructors store and only `call` reads, and are set before
every call (building a Keras layer costs several calls; docs/benchmarks.md).
`tests/test_adapters.py` holds a re-used layer to a fresh one, bit for bit.

Mixed precision (NUM-2.3): a float16 or bfloat16 input with float32 parameters runs the layer
Keras users run for it, built with the policy dtype="mixed_float16" or "mixed_bfloat16"
(float32 variables, the input's compute dtype; Layer.__call__ autocasts the variables created
with autocast=True, RMSNormalization's scale among them, to the compute dtype), its gamma/beta
and moving statistics assigned and read back in float32. The policy is part of the cached
configuration.

The backward pass (`vjp`) differentiates the same cached layer with the backend's own
autodiff and takes the gradients of x and of the layer's gamma/beta (RMSNormalization:
scale) where the call has that parameter; BatchNormalization runs with training=True
(batch statistics) or training=False (the loaded moving statistics, which are not
differentiated).
"""
from __future__ import annotations

import os
import sys
from typing import NamedTuple

import numpy as np

from normspec.errors import UsageError

from normspec.dtypes import MIXED_PRECISION

from .base import OP_NAMES, Adapter, Capabilities, Conventions, Layer, python_int


def import_keras(backend: str, adapter_id: str):
    """The keras module on `backend`: imported with KERAS_BACKEND=backend if this process has
    not imported it yet; UsageError if it has, on another backend."""
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = backend
        import keras
    found = keras.backend.backend()
    if found != backend:
        setting = os.environ.get("KERAS_BACKEND")
        raise UsageError(
            f"the {adapter_id} adapter runs Keras on the {backend!r} backend, but this process already imported "
            f"keras with the {found!r} backend (KERAS_BACKEND {'unset' if setting is None else '= ' + repr(setting)}"
            f"; importing TensorFlow imports Keras too). Keras reads KERAS_BACKEND once, at its first import: run "
            f"{adapter_id} in a process of its own started with KERAS_BACKEND={backend} (`normspec check "
            f"{adapter_id}` does), apart from the other Keras adapters and tf-nn.")
    return keras


# Keras' conventions, whatever the backend (spec/defaults.md).
CONVENTIONS = Conventions(channel_axis=-1, momentum_weights="old_value", running_var_estimator="biased",
                          default_eps={"batch_norm": 1e-3, "layer_norm": 1e-3, "group_norm": 1e-3,
                                       "instance_norm": 1e-3, "rms_norm": 1e-6})
# Keras' mixed policies, "mixed_float16" and "mixed_bfloat16", are the pairs NUM-2.3 defines.
CAPABILITIES = Capabilities(devices=("cpu", "cuda"), instance_norm_running_stats=False, backward_ops=OP_NAMES,
                            mixed_precision=MIXED_PRECISION)

_CACHE_SIZE = 512


class KerasBackend:
    """The backend half of a Keras adapter: how arrays and variables cross between NumPy and
    the backend, where calls run, and the backward pass through the backend's autodiff."""

    def __init__(self, keras):
        self.keras = keras

    def version(self) -> str:
        """The backend framework and its version, e.g. "jax 0.10.2"."""
        raise NotImplementedError

    def device_status(self) -> dict:
        raise NotImplementedError

    def device_scope(self, device: str):
        """The context that places the layers' variables and the ops of one call on `device`."""
        return self.keras.device("gpu:0" if device == "cuda" else "cpu:0")

    def to_tensor(self, array):
        """A NumPy array (bfloat16 as ml_dtypes.bfloat16) as a backend tensor of its dtype on the
        scope's device, copied first: the suite's arrays are the caller's."""
        return self.keras.ops.convert_to_tensor(np.array(array))

    def to_numpy(self, tensor) -> np.ndarray:
        """A tensor or Keras variable as a NumPy array of the dtype the backend holds it in."""
        return np.array(self.keras.ops.convert_to_numpy(getattr(tensor, "value", tensor)))

    def assign(self, variable, value) -> None:
        """variable <- value (Keras' assign casts it to the variable's dtype)."""
        variable.assign(self.to_tensor(value))

    def call(self, layer, key: tuple, x, device, call_kwargs: dict):
        """layer(x, **call_kwargs) as this backend's users run it (eagerly, by default), its state
        variables updated; `key` describes the layer's configuration (_built)."""
        return layer(self.to_tensor(x), **call_kwargs)

    def vjp(self, layer, key, x, dy, device, call_kwargs: dict, weight, bias) -> dict:
        """{"x", "weight", "bias"}: the gradients of layer(x, **call_kwargs) for the cotangent dy
        with respect to x and the variables `weight` and `bias` (None: no gradient)."""
        raise NotImplementedError


class _Spec(NamedTuple):
    """The Keras layer of one forward call: keras.layers.<cls>(**config, **call_attributes)
    built for inputs ending in `features`, with `weights` (layer variable name -> value, None:
    keep the layer's own) assigned. `call_attributes` (epsilon, momentum) are constructor
    arguments that the layer only reads in `call`: the cache holds one layer for all their values.
    `param_dtype` (mixed precision) builds it with Keras' mixed policy for the input dtype."""
    cls: str
    config: dict
    features: tuple
    weights: dict
    call_attributes: dict
    key_extra: object = None
    param_dtype: str | None = None  # the variables' dtype under a mixed policy (NUM-2.3), None: the input's


def feature_shape(normalized_shape) -> tuple:
    """normalized_shape (an int or a sequence of ints, NumPy ints included) as a tuple of ints."""
    if np.ndim(normalized_shape) == 0:
        return (int(normalized_shape),)
    return tuple(int(d) for d in normalized_shape)


def _spec(op, *, channels, weight, bias, eps, normalized_shape=None, num_groups=None, momentum=0.99,
          param_dtype=None) -> _Spec:
    """The layer that computes `op` for inputs with `channels` channels (the last axis), with
    variables of `param_dtype` (Keras' mixed policy) where that is given."""
    return _op_spec(op, channels=channels, weight=weight, bias=bias, eps=eps, normalized_shape=normalized_shape,
                    num_groups=num_groups, momentum=momentum)._replace(param_dtype=param_dtype)


def _op_spec(op, *, channels, weight, bias, eps, normalized_shape, num_groups, momentum) -> _Spec:
    affine = dict(gamma=weight, beta=bias)
    epsilon = dict(epsilon=float(eps))
    if op in ("layer_norm", "rms_norm"):
        features = feature_shape(normalized_shape)
        axis = list(range(-len(features), 0))
        if op == "layer_norm":
            return _Spec("LayerNormalization", dict(axis=axis, **_affine_options(weight, bias)), features, affine,
                         epsilon)
        # No flag to drop the scale: the cache key tells weighted layers from the ones that keep
        # their initial ones, which are never assigned.
        return _Spec("RMSNormalization", dict(axis=axis), features, dict(scale=weight), epsilon,
                     key_extra=weight is None)
    if op == "batch_norm":
        return _Spec("BatchNormalization", _affine_options(weight, bias), (channels,), affine,
                     dict(epsilon, momentum=float(momentum)))
    # NumPy integers as int (Keras accepts Python ints only); anything else as given, for Keras to judge.
    groups = -1 if op == "instance_norm" else python_int(num_groups)
    return _Spec("GroupNormalization", dict(groups=groups, **_affine_options(weight, bias)), (channels,), affine,
                 epsilon)


def policy(dtype, param_dtype=None) -> str:
    """The Keras dtype policy of a layer for inputs of `dtype` (a name or a NumPy dtype) and
    variables of `param_dtype`: the dtype's name, or Keras' mixed policy "mixed_float16" /
    "mixed_bfloat16" (float32 variables, half computation) for float32 parameters (NUM-2.3)."""
    dtype = np.dtype(dtype).name
    if param_dtype is None or param_dtype == dtype:
        return dtype
    if param_dtype == "float32" and dtype in ("float16", "bfloat16"):
        return f"mixed_{dtype}"
    raise NotImplementedError(f"Keras has no policy for {dtype} inputs with {param_dtype} variables")


def _affine_options(weight, bias) -> dict:
    """The constructor options every affine layer shares: no scale/center for a None weight/bias."""
    return dict(scale=weight is not None, center=bias is not None)


class KerasLayersAdapter(Adapter):
    """The Keras layers on the backend of `backend` (a KerasBackend, set by each subclass)."""

    framework = "keras"
    conventions, capabilities = CONVENTIONS, CAPABILITIES
    backend: KerasBackend = None

    def __init__(self):
        self._layers = {}  # configuration -> (built keras layer, its initial non-trainable values)

    def framework_version(self) -> str:
        return f"{super().framework_version()} ({self.backend.version()} backend)"

    def device_status(self) -> dict:
        return self.backend.device_status()

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
        spec = _spec("layer_norm", channels=x.shape[-1], weight=weight, bias=bias, eps=eps,
                     normalized_shape=normalized_shape, param_dtype=param_dtype)
        return self._run(spec, x, device)[0]

    def group_norm(self, x, *, num_groups, weight, bias, eps, device, param_dtype=None):
        spec = _spec("group_norm", channels=x.shape[-1], weight=weight, bias=bias, eps=eps, num_groups=num_groups,
                     param_dtype=param_dtype)
        return self._run(spec, x, device)[0]

    def rms_norm(self, x, *, normalized_shape, weight, eps, device, param_dtype=None):
        spec = _spec("rms_norm", channels=x.shape[-1], weight=weight, bias=None, eps=eps,
                     normalized_shape=normalized_shape, param_dtype=param_dtype)
        return self._run(spec, x, device)[0]

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device, param_dtype=None):
        spec = _spec("batch_norm", channels=num_features, weight=weight, bias=bias, eps=eps, momentum=momentum,
                     param_dtype=param_dtype)
        return _BatchNorm(self, spec, dtype, running_mean, running_var, device)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device, param_dtype=None):
        if running_mean is not None or running_var is not None:
            raise NotImplementedError("Keras GroupNormalization(groups=-1) keeps no running statistics")
        spec = _spec("instance_norm", channels=num_features, weight=weight, bias=bias, eps=eps,
                     param_dtype=param_dtype)
        return _Stateless(self, spec, device)

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, param_dtype=None,
            **attrs):
        if op == "instance_norm" and (running_mean is not None or running_var is not None):
            raise NotImplementedError("Keras GroupNormalization(groups=-1) keeps no running statistics")
        spec = _spec(op, channels=x.shape[-1], weight=weight, bias=bias, eps=eps, param_dtype=param_dtype, **attrs)
        state = dict(moving_mean=running_mean, moving_variance=running_var) if op == "batch_norm" else {}
        stateful = op in ("batch_norm", "instance_norm")
        layer, key = self._load(spec, x, device, **state)
        weight_name, bias_name = ("scale", None) if op == "rms_norm" else ("gamma", "beta")
        return self.backend.vjp(layer, key, x, dy, device, {"training": training} if stateful else {},
                                weight=None if weight is None else getattr(layer, weight_name),
                                bias=None if bias is None else getattr(layer, bias_name))

    def _built(self, spec, rank, dtype, device):
        """The cached layer keras.layers.<spec.cls>(**spec.config, **spec.call_attributes,
        dtype=policy(dtype, spec.param_dtype)) built for inputs of this rank whose trailing dims are spec.features (what
        Keras infers the weight shapes from: the configuration), and the initial values of its
        state, and the cache key. Its call attributes are whatever the call that built it or the last `_load` set."""
        dtype = policy(dtype, spec.param_dtype)  # the dtype's name, or Keras' mixed policy (NUM-2.3)
        features = tuple(spec.features)
        key = (spec.cls, repr(sorted(spec.config.items())), rank, features, dtype, device, spec.key_extra)
        entry = self._layers.get(key)
        if entry is None:
            if len(self._layers) >= _CACHE_SIZE:
                self._layers.clear()
            with self.backend.device_scope(device):
                layer = getattr(self.backend.keras.layers, spec.cls)(**spec.config, **spec.call_attributes,
                                                                     dtype=dtype)
                layer.build((None,) * (rank - len(features)) + features)
            initial = {v.path.rsplit("/", 1)[-1]: self.backend.to_numpy(v) for v in layer.non_trainable_weights}
            entry = self._layers[key] = (layer, initial, key)
        return entry

    def _load(self, spec, x, device, **state):
        """The layer built for x's rank and dtype with spec.call_attributes set and spec.weights and
        `state` assigned (None: keep the layer's own), and its cache key."""
        layer, _, key = self._built(spec, x.ndim, x.dtype, device)
        for name, value in spec.call_attributes.items():
            if getattr(layer, name) != value:
                setattr(layer, name, value)
        with self.backend.device_scope(device):
            for name, value in {**spec.weights, **state}.items():
                if value is not None:
                    self.backend.assign(getattr(layer, name), value)
        return layer, key

    def _run(self, spec, x, device, training=None, **state):
        """Call the layer of `spec`, loaded with its weights and `state`, on x: the output and the layer."""
        layer, key = self._load(spec, x, device, **state)
        with self.backend.device_scope(device):
            kwargs = {} if training is None else {"training": training}
            return self.backend.to_numpy(self.backend.call(layer, key, x, device, kwargs)), layer


class _Stateless(Layer):
    """A Layer around a stateless Keras layer (InstanceNorm): training changes nothing."""

    def __init__(self, adapter, spec, device):
        self._adapter, self._spec, self._device = adapter, spec, device

    def __call__(self, x, *, training: bool):
        return self._adapter._run(self._spec, x, self._device, training=training)[0]

    def running_stats(self):
        return None, None


class _BatchNorm(Layer):
    """One BatchNormalization: the moving statistics live here (NumPy) and are loaded into the
    cached Keras layer before each call and read back after it. A fresh layer starts from the
    values Keras' own initializers gave a newly built layer."""

    def __init__(self, adapter, spec, dtype, running_mean, running_var, device):
        self._adapter, self._spec, self._device = adapter, spec, device
        if running_mean is None or running_var is None:
            _, initial, _ = adapter._built(spec, 2, dtype, device)
            running_mean, running_var = initial["moving_mean"], initial["moving_variance"]
        self._mean, self._var = running_mean, running_var

    def __call__(self, x, *, training: bool):
        output, layer = self._adapter._run(self._spec, x, self._device, training=training,
                                           moving_mean=self._mean, moving_variance=self._var)
        to_numpy = self._adapter.backend.to_numpy
        self._mean, self._var = to_numpy(layer.moving_mean), to_numpy(layer.moving_variance)
        return output

    def running_stats(self):
        return self._mean, self._var
