"""`keras`: the Keras 3 normalization layers on the TensorFlow backend, channels last,
in their default numerics configuration, created with dtype = the input dtype.

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
every call. (Building a Keras layer costs several calls; with one layer per eps and momentum,
the ci profile's LayerNorm float32 tests built a layer for 394 of 2,336 calls.)
`tests/test_adapters.py` holds a re-used layer to a fresh one, bit for bit. Keras computes
float16/bfloat16 in float32 internally and returns the layer's dtype.

The backward pass (`vjp`) calls the same cached layer under tf.GradientTape and takes the
gradients of x and of the layer's gamma/beta (RMSNormalization: scale) where the call has
that parameter; BatchNormalization runs with training=True (batch statistics) or
training=False (the loaded moving statistics, which are not differentiated).
Checked against keras 3.15.1 with tensorflow-cpu 2.21.0.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from normspec.errors import UsageError

from ._tf_common import (CAPABILITIES, CONVENTIONS, device_scope, device_status, feature_shape, tape_vjp, tf_version,
                          to_numpy, to_tensor)
from .base import Adapter, Layer

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise UsageError(
        f"the keras adapter runs Keras on the TensorFlow backend, but keras was loaded with the "
        f"{keras.backend.backend()!r} backend (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}); "
        f"set KERAS_BACKEND=tensorflow before anything imports keras.")

_CACHE_SIZE = 512


class _Spec(NamedTuple):
    """The Keras layer of one forward call: cls(**config, **call_attributes) built for inputs
    ending in `features`, with `weights` (layer variable name -> value, None: keep the layer's
    own) assigned. `call_attributes` (epsilon, momentum) are constructor arguments that the
    layer only reads in `call`: the cache holds one layer for all their values."""
    cls: type
    config: dict
    features: tuple
    weights: dict
    call_attributes: dict
    key_extra: object = None


def _spec(op, *, channels, weight, bias, eps, normalized_shape=None, num_groups=None, momentum=0.99) -> _Spec:
    """The layer that computes `op` for inputs with `channels` channels (the last axis)."""
    affine = dict(gamma=weight, beta=bias)
    epsilon = dict(epsilon=float(eps))
    if op in ("layer_norm", "rms_norm"):
        features = feature_shape(normalized_shape)
        axis = list(range(-len(features), 0))
        if op == "layer_norm":
            return _Spec(keras.layers.LayerNormalization, dict(axis=axis, **_affine_options(weight, bias)), features,
                         affine, epsilon)
        # No flag to drop the scale: the cache key tells weighted layers from the ones that keep
        # their initial ones, which are never assigned.
        return _Spec(keras.layers.RMSNormalization, dict(axis=axis), features, dict(scale=weight), epsilon,
                     key_extra=weight is None)
    if op == "batch_norm":
        return _Spec(keras.layers.BatchNormalization, _affine_options(weight, bias), (channels,), affine,
                     dict(epsilon, momentum=float(momentum)))
    groups = -1 if op == "instance_norm" else int(num_groups)
    return _Spec(keras.layers.GroupNormalization, dict(groups=groups, **_affine_options(weight, bias)), (channels,),
                 affine, epsilon)


class KerasAdapter(Adapter):
    id = "keras"
    framework = "keras"
    conventions, capabilities = CONVENTIONS, CAPABILITIES

    def __init__(self):
        self._layers = {}  # configuration -> (built keras layer, its initial non-trainable values)

    def framework_version(self) -> str:
        return f"{super().framework_version()} ({tf_version()} backend)"

    def device_status(self) -> dict:
        return device_status()

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        spec = _spec("layer_norm", channels=x.shape[-1], weight=weight, bias=bias, eps=eps,
                     normalized_shape=normalized_shape)
        return self._run(spec, x, device)[0]

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        spec = _spec("group_norm", channels=x.shape[-1], weight=weight, bias=bias, eps=eps, num_groups=num_groups)
        return self._run(spec, x, device)[0]

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        spec = _spec("rms_norm", channels=x.shape[-1], weight=weight, bias=None, eps=eps,
                     normalized_shape=normalized_shape)
        return self._run(spec, x, device)[0]

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device):
        spec = _spec("batch_norm", channels=num_features, weight=weight, bias=bias, eps=eps, momentum=momentum)
        return _BatchNorm(self, spec, dtype, running_mean, running_var, device)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device):
        if running_mean is not None or running_var is not None:
            raise NotImplementedError("Keras GroupNormalization(groups=-1) keeps no running statistics")
        spec = _spec("instance_norm", channels=num_features, weight=weight, bias=bias, eps=eps)
        return _Stateless(self, spec, device)

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, **attrs):
        if op == "instance_norm" and (running_mean is not None or running_var is not None):
            raise NotImplementedError("Keras GroupNormalization(groups=-1) keeps no running statistics")
        spec = _spec(op, channels=x.shape[-1], weight=weight, bias=bias, eps=eps, **attrs)
        state = dict(moving_mean=running_mean, moving_variance=running_var) if op == "batch_norm" else {}
        stateful = op in ("batch_norm", "instance_norm")
        layer = self._load(spec, x, device, **state)
        weight_name, bias_name = ("scale", None) if op == "rms_norm" else ("gamma", "beta")

        def forward(x, **variables):  # the layer reads its own variables
            return layer(x, training=training) if stateful else layer(x)
        return tape_vjp(forward, dy, device, x=x, weight=None if weight is None else getattr(layer, weight_name),
                        bias=None if bias is None else getattr(layer, bias_name))

    def _built(self, spec, rank, dtype, device):
        """The cached layer spec.cls(**spec.config, **spec.call_attributes, dtype=dtype) built for
        inputs of this rank whose trailing dims are spec.features (what Keras infers the weight
        shapes from: the configuration), and the initial values of its state. Its call attributes
        are whatever the call that built it or the last `_load` set."""
        dtype = np.dtype(dtype).name
        features = tuple(spec.features)
        key = (spec.cls.__name__, repr(sorted(spec.config.items())), rank, features, dtype, device, spec.key_extra)
        entry = self._layers.get(key)
        if entry is None:
            if len(self._layers) >= _CACHE_SIZE:
                self._layers.clear()
            with device_scope(device):
                layer = spec.cls(**spec.config, **spec.call_attributes, dtype=dtype)
                layer.build((None,) * (rank - len(features)) + features)
            initial = {v.path.rsplit("/", 1)[-1]: to_numpy(v) for v in layer.non_trainable_weights}
            entry = self._layers[key] = (layer, initial)
        return entry

    def _load(self, spec, x, device, **state):
        """The layer built for x's rank and dtype with spec.call_attributes set and spec.weights and
        `state` assigned (None: keep the layer's own)."""
        layer, _ = self._built(spec, x.ndim, x.dtype, device)
        for name, value in spec.call_attributes.items():
            if getattr(layer, name) != value:
                setattr(layer, name, value)
        with device_scope(device):
            for name, value in {**spec.weights, **state}.items():
                if value is not None:
                    _assign(getattr(layer, name), value)
        return layer

    def _run(self, spec, x, device, training=None, **state):
        """Call the layer of `spec`, loaded with its weights and `state`, on x: the output and the layer."""
        layer = self._load(spec, x, device, **state)
        with device_scope(device):
            kwargs = {} if training is None else {"training": training}
            return to_numpy(layer(to_tensor(x), **kwargs)), layer


def _assign(variable, value) -> None:
    """variable <- value, through the TensorFlow variable that holds the Keras variable's
    value (`variable.value`, outside a call), which skips the conversions and checks Keras'
    own `assign` repeats (docs/benchmarks.md). The value is cast to the variable's dtype
    first, as Keras' assign casts it."""
    target = variable.value
    target.assign(np.asarray(value, dtype=target.dtype.as_numpy_dtype))


def _affine_options(weight, bias) -> dict:
    """The constructor options every affine layer shares: no scale/center for a None weight/bias."""
    return dict(scale=weight is not None, center=bias is not None)


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
            _, initial = adapter._built(spec, 2, dtype, device)
            running_mean, running_var = initial["moving_mean"], initial["moving_variance"]
        self._mean, self._var = running_mean, running_var

    def __call__(self, x, *, training: bool):
        output, layer = self._adapter._run(self._spec, x, self._device, training=training,
                                           moving_mean=self._mean, moving_variance=self._var)
        self._mean, self._var = to_numpy(layer.moving_mean), to_numpy(layer.moving_variance)
        return output

    def running_stats(self):
        return self._mean, self._var
