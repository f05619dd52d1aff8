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

The backward pass (`vjp`) differentiates these same compositions with tf.GradientTape,
watching x and the present weight and bias; BatchNorm in evaluation reads the running
statistics as constants.

tf.nn has no default eps; default_eps lists the Keras layer defaults a user would copy.
Checked against tensorflow-cpu 2.21.0.
"""
from __future__ import annotations

import dataclasses

from ._tf_common import (CAPABILITIES, CONVENTIONS, device_scope, device_status, feature_shape, run, tape_vjp, tf,
                          tf_version, to_numpy, to_tensor)
from .base import Adapter, Layer


class TfNnAdapter(Adapter):
    id = "tf-nn"
    framework = "tensorflow"
    # No mixed precision (NUM-2.3): tf.nn's ops take no parameters of another dtype than x's (a float32
    # scale with a float16 x is an InvalidArgumentError), so users cast the parameters themselves.
    conventions = CONVENTIONS
    capabilities = dataclasses.replace(CAPABILITIES, mixed_precision=())

    def framework_version(self) -> str:
        return tf_version()

    def device_status(self) -> dict:
        return device_status()

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        return run(_layer_norm, device, x, weight, bias, eps=eps, normalized_shape=normalized_shape)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        return run(_group_norm, device, x, weight, bias, eps=eps, num_groups=num_groups)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        return run(_rms_norm, device, x, weight, None, eps=eps, normalized_shape=normalized_shape)

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device):
        return _BatchNorm(weight, bias, running_mean, running_var, dtype, num_features, momentum, eps, device)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device):
        if running_mean is not None or running_var is not None:
            raise NotImplementedError("tf-nn InstanceNorm keeps no running statistics")
        return _InstanceNorm(weight, bias, eps, device)

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, **attrs):
        if op == "instance_norm" and (running_mean is not None or running_var is not None):
            raise NotImplementedError("tf-nn InstanceNorm keeps no running statistics")
        if op == "batch_norm" and not training:  # evaluation: the running statistics are constants
            with device_scope(device):
                mean, variance = to_tensor(running_mean), to_tensor(running_var)
            attrs = dict(mean=mean, variance=variance)
        function = _FORWARD[op]

        def forward(x, weight, bias):
            return function(x, weight, bias, eps=eps, **attrs)
        return tape_vjp(forward, dy, device, x=x, weight=weight, bias=bias)


def _trailing_axes(ndim: int, normalized_shape) -> list:
    k = len(feature_shape(normalized_shape))
    return list(range(ndim - k, ndim))


def _normalize(x, axes, weight, bias, eps):
    """tf.nn.moments over `axes` (keepdims) and tf.nn.batch_normalization with them."""
    mean, variance = tf.nn.moments(x, axes=axes, keepdims=True)
    return tf.nn.batch_normalization(x, mean, variance, bias, weight, eps)


# The compositions on tensors, f(x, weight, bias, *, eps, **attrs) -> y: what the forward
# methods and layers run, and what `vjp` differentiates.

def _layer_norm(x, weight, bias, *, eps, normalized_shape):
    return _normalize(x, _trailing_axes(x.ndim, normalized_shape), weight, bias, eps)


def _group_norm(x, weight, bias, *, eps, num_groups):
    *leading, channels = x.shape
    grouped = (-1, *leading[1:], num_groups, channels // num_groups)
    axes = list(range(1, len(grouped) - 2)) + [len(grouped) - 1]
    gamma = None if weight is None else tf.reshape(weight, grouped[-2:])
    beta = None if bias is None else tf.reshape(bias, grouped[-2:])
    y = _normalize(tf.reshape(x, grouped), axes, gamma, beta, eps)
    return tf.reshape(y, (-1, *leading[1:], channels))


def _instance_norm(x, weight, bias, *, eps):
    return _normalize(x, list(range(1, x.ndim - 1)), weight, bias, eps)


def _rms_norm(x, weight, bias, *, eps, normalized_shape):
    y = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), _trailing_axes(x.ndim, normalized_shape), keepdims=True) + eps)
    return y if weight is None else y * weight


def _batch_moments(x):
    """The batch statistics of BatchNorm: moments over every axis but the last."""
    return tf.nn.moments(x, axes=list(range(x.ndim - 1)))


def _batch_norm(x, weight, bias, *, eps, mean=None, variance=None):
    """BatchNorm with the given statistics; with the batch statistics where they are None (training)."""
    if mean is None:
        mean, variance = _batch_moments(x)
    return tf.nn.batch_normalization(x, mean, variance, bias, weight, eps)


_FORWARD = {"batch_norm": _batch_norm, "layer_norm": _layer_norm, "group_norm": _group_norm,
            "instance_norm": _instance_norm, "rms_norm": _rms_norm}


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
                mean, variance = _batch_moments(x)
                self._mean = m * self._mean + (1 - m) * mean
                self._var = m * self._var + (1 - m) * variance
            else:
                mean, variance = self._mean, self._var
            return to_numpy(_batch_norm(x, self._gamma, self._beta, eps=self._eps, mean=mean, variance=variance))

    def running_stats(self):
        return to_numpy(self._mean), to_numpy(self._var)


class _InstanceNorm(Layer):
    """InstanceNorm without state: moments over the spatial axes, in training and evaluation alike."""

    def __init__(self, weight, bias, eps, device):
        self._weight, self._bias, self._eps, self._device = weight, bias, eps, device

    def __call__(self, x, *, training: bool):
        return run(_instance_norm, self._device, x, self._weight, self._bias, eps=self._eps)

    def running_stats(self):
        return None, None
