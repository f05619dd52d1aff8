"""`tf-nn`: the normalizations as users compose them from `tf.nn.moments` and
`tf.nn.batch_normalization` (channels last), the way the TensorFlow docs show it.

There is no layer object: this adapter shows what the naive, idiomatic compositions
get right or wrong. Everything runs in the input dtype, as the user's code would:
`tf.nn.moments` upcasts float16 (only float16) to float32 for the statistics, and
`tf.nn.batch_normalization` computes x * inv + (offset - mean * inv).

- BatchNorm: moments over every axis but the last; the running update written as
  running = m * running + (1 - m) * batch with the biased batch variance; evaluation
  normalizes with the running statistics; a fresh state is zeros and ones.
- LayerNorm: moments over the trailing axes, keepdims.
- GroupNorm: reshape (N, ..., C) to (N, ..., G, C/G), moments over the spatial and
  within-group axes (as tensorflow-addons' GroupNormalization did).
- InstanceNorm: moments over the spatial axes; no running statistics.
- RMSNorm: x * rsqrt(mean(x^2) + eps) * weight.

tf.nn has no default eps; default_eps lists the Keras layer defaults a user would copy.
Checked against tensorflow-cpu 2.21.0.
"""
from __future__ import annotations

from ._tf_common import DEVICES, device_scope, device_status, feature_shape, tf, tf_version, to_numpy, to_tensor
from .base import Adapter, Capabilities, Conventions, Layer


class TfNnAdapter(Adapter):
    id = "tf-nn"
    framework = "tensorflow"
    conventions = Conventions(channel_axis=-1, momentum_weights="old_value", running_var_estimator="biased",
                              default_eps={"batch_norm": 1e-3, "layer_norm": 1e-3, "group_norm": 1e-3,
                                           "instance_norm": 1e-3, "rms_norm": 1e-6})
    capabilities = Capabilities(devices=DEVICES, instance_norm_running_stats=False)

    def framework_version(self) -> str:
        return tf_version()

    def device_status(self) -> dict:
        return device_status()

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        axes = _trailing_axes(x.ndim, normalized_shape)
        with device_scope(device):
            x = to_tensor(x)
            mean, variance = tf.nn.moments(x, axes=axes, keepdims=True)
            y = tf.nn.batch_normalization(x, mean, variance, to_tensor(bias), to_tensor(weight), eps)
            return to_numpy(y)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        *leading, channels = x.shape
        grouped = (-1, *leading[1:], num_groups, channels // num_groups)
        axes = list(range(1, len(grouped) - 2)) + [len(grouped) - 1]
        with device_scope(device):
            x = tf.reshape(to_tensor(x), grouped)
            mean, variance = tf.nn.moments(x, axes=axes, keepdims=True)
            gamma = None if weight is None else tf.reshape(to_tensor(weight), grouped[-2:])
            beta = None if bias is None else tf.reshape(to_tensor(bias), grouped[-2:])
            y = tf.nn.batch_normalization(x, mean, variance, beta, gamma, eps)
            return to_numpy(tf.reshape(y, (-1, *leading[1:], channels)))

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        axes = _trailing_axes(x.ndim, normalized_shape)
        with device_scope(device):
            x = to_tensor(x)
            y = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axes, keepdims=True) + eps)
            return to_numpy(y if weight is None else y * to_tensor(weight))

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device):
        return _BatchNorm(weight, bias, running_mean, running_var, dtype, num_features, momentum, eps, device)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device):
        if running_mean is not None or running_var is not None:
            raise NotImplementedError("tf-nn InstanceNorm keeps no running statistics")
        return _InstanceNorm(weight, bias, eps, device)


def _trailing_axes(ndim: int, normalized_shape) -> list:
    k = len(feature_shape(normalized_shape))
    return list(range(ndim - k, ndim))


class _BatchNorm(Layer):
    """BatchNorm state as a user keeps it: two tensors updated after each training step."""

    def __init__(self, weight, bias, running_mean, running_var, dtype, channels, momentum, eps, device):
        self._momentum, self._eps, self._device = momentum, eps, device
        with device_scope(device):
            self._gamma, self._beta = to_tensor(weight), to_tensor(bias)
            self._mean = tf.zeros([channels], dtype) if running_mean is None else to_tensor(running_mean)
            self._var = tf.ones([channels], dtype) if running_var is None else to_tensor(running_var)

    def __call__(self, x, *, training: bool):
        m = self._momentum
        with device_scope(self._device):
            x = to_tensor(x)
            if training:
                mean, variance = tf.nn.moments(x, axes=list(range(x.ndim - 1)))
                self._mean = m * self._mean + (1 - m) * mean
                self._var = m * self._var + (1 - m) * variance
            else:
                mean, variance = self._mean, self._var
            return to_numpy(tf.nn.batch_normalization(x, mean, variance, self._beta, self._gamma, self._eps))

    def running_stats(self):
        return to_numpy(self._mean), to_numpy(self._var)


class _InstanceNorm(Layer):
    """InstanceNorm without state: moments over the spatial axes, in training and evaluation alike."""

    def __init__(self, weight, bias, eps, device):
        self._weight, self._bias, self._eps, self._device = weight, bias, eps, device

    def __call__(self, x, *, training: bool):
        with device_scope(self._device):
            x = to_tensor(x)
            mean, variance = tf.nn.moments(x, axes=list(range(1, x.ndim - 1)), keepdims=True)
            return to_numpy(tf.nn.batch_normalization(x, mean, variance, to_tensor(self._bias),
                                                      to_tensor(self._weight), self._eps))

    def running_stats(self):
        return None, None
