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
each `Layer` here keeps itself) are assigned before every call. Keras computes
float16/bfloat16 in float32 internally and returns the layer's dtype.
Checked against keras 3.15.1 with tensorflow-cpu 2.21.0.
"""
from __future__ import annotations

import os

import numpy as np

from normspec.errors import UsageError

from ._tf_common import DEVICES, device_scope, device_status, feature_shape, tf_version, to_numpy, to_tensor
from .base import Adapter, Capabilities, Conventions, Layer

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise UsageError(
        f"the keras adapter runs Keras on the TensorFlow backend, but keras was loaded with the "
        f"{keras.backend.backend()!r} backend (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}); "
        f"set KERAS_BACKEND=tensorflow before anything imports keras.")

_CACHE_SIZE = 512


class KerasAdapter(Adapter):
    id = "keras"
    framework = "keras"
    conventions = Conventions(channel_axis=-1, momentum_weights="old_value", running_var_estimator="biased",
                              default_eps={"batch_norm": 1e-3, "layer_norm": 1e-3, "group_norm": 1e-3,
                                           "instance_norm": 1e-3, "rms_norm": 1e-6})
    capabilities = Capabilities(devices=DEVICES, instance_norm_running_stats=False)

    def __init__(self):
        self._layers = {}  # configuration -> (built keras layer, its initial non-trainable values)

    def framework_version(self) -> str:
        return f"{super().framework_version()} ({tf_version()} backend)"

    def device_status(self) -> dict:
        return device_status()

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        features = feature_shape(normalized_shape)
        config = dict(axis=list(range(-len(features), 0)), **_options(weight, bias, eps))
        return self._run(keras.layers.LayerNormalization, config, x, device, features, gamma=weight, beta=bias)[0]

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        config = dict(groups=int(num_groups), **_options(weight, bias, eps))
        return self._run(keras.layers.GroupNormalization, config, x, device, x.shape[-1:], gamma=weight,
                         beta=bias)[0]

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        features = feature_shape(normalized_shape)
        # No flag to drop the scale: the cache key tells weighted layers from the ones that keep
        # their initial ones, which are never assigned.
        config = dict(axis=list(range(-len(features), 0)), epsilon=float(eps))
        return self._run(keras.layers.RMSNormalization, config, x, device, features, scale=weight,
                         key_extra=weight is None)[0]

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device):
        config = dict(momentum=float(momentum), **_options(weight, bias, eps))
        return _BatchNorm(self, config, num_features, dtype, weight, bias, running_mean, running_var, device)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device):
        if running_mean is not None or running_var is not None:
            raise NotImplementedError("Keras GroupNormalization(groups=-1) keeps no running statistics")
        config = dict(groups=-1, **_options(weight, bias, eps))
        return _Stateless(self, keras.layers.GroupNormalization, config, device, (num_features,), gamma=weight,
                          beta=bias)

    def _built(self, cls, config, rank, features, dtype, device, key_extra=None):
        """The cached layer cls(**config, dtype=dtype) built for inputs of this rank whose trailing
        dims are `features` (what Keras infers the weight shapes from: the configuration), and
        the initial values of its state."""
        dtype = np.dtype(dtype).name
        key = (cls.__name__, repr(sorted(config.items())), rank, features, dtype, device, key_extra)
        entry = self._layers.get(key)
        if entry is None:
            if len(self._layers) >= _CACHE_SIZE:
                self._layers.clear()
            with device_scope(device):
                layer = cls(**config, dtype=dtype)
                layer.build((None,) * (rank - len(features)) + features)
            initial = {v.path.rsplit("/", 1)[-1]: to_numpy(v) for v in layer.non_trainable_weights}
            entry = self._layers[key] = (layer, initial)
        return entry

    def _run(self, cls, config, x, device, features, key_extra=None, training=None, **weights):
        """Assign the given weights (None: keep the layer's own) to the layer built for inputs of
        x's rank ending in `features`, call it on x and return the output and the layer."""
        layer, _ = self._built(cls, config, x.ndim, tuple(features), x.dtype, device, key_extra)
        with device_scope(device):
            for name, value in weights.items():
                if value is not None:
                    getattr(layer, name).assign(value)
            kwargs = {} if training is None else {"training": training}
            return to_numpy(layer(to_tensor(x), **kwargs)), layer


def _options(weight, bias, eps) -> dict:
    """The constructor options every affine layer shares: no scale/center for a None weight/bias."""
    return dict(epsilon=float(eps), scale=weight is not None, center=bias is not None)


class _Stateless(Layer):
    """A Layer around a stateless Keras layer (InstanceNorm): training changes nothing."""

    def __init__(self, adapter, cls, config, device, features, **weights):
        self._adapter, self._cls, self._config = adapter, cls, config
        self._device, self._features, self._weights = device, features, weights

    def __call__(self, x, *, training: bool):
        output, _ = self._adapter._run(self._cls, self._config, x, self._device, self._features,
                                       training=training, **self._weights)
        return output

    def running_stats(self):
        return None, None


class _BatchNorm(Layer):
    """One BatchNormalization: the moving statistics live here (NumPy) and are loaded into the
    cached Keras layer before each call and read back after it. A fresh layer starts from the
    values Keras' own initializers gave a newly built layer."""

    def __init__(self, adapter, config, channels, dtype, weight, bias, running_mean, running_var, device):
        self._adapter, self._config, self._device = adapter, config, device
        self._features, self._weight, self._bias = (channels,), weight, bias
        if running_mean is None or running_var is None:
            _, initial = adapter._built(keras.layers.BatchNormalization, config, 2, (channels,), dtype, device)
            running_mean, running_var = initial["moving_mean"], initial["moving_variance"]
        self._mean, self._var = running_mean, running_var

    def __call__(self, x, *, training: bool):
        output, layer = self._adapter._run(keras.layers.BatchNormalization, self._config, x, self._device,
                                           self._features, training=training, gamma=self._weight, beta=self._bias,
                                           moving_mean=self._mean, moving_variance=self._var)
        self._mean, self._var = to_numpy(layer.moving_mean), to_numpy(layer.moving_variance)
        return output

    def running_stats(self):
        return self._mean, self._var
