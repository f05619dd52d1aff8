"""The adapter both ONNX runtimes share: each call becomes a single-node model
(adapters/_onnx_models.py) that a subclass runs; BatchNormalization's running statistics
are kept by the `Layer` here, fed to every call and replaced by a training call's outputs."""
from __future__ import annotations

import numpy as np

from normspec.dtypes import numpy_dtype

from . import _onnx_models as models
from .base import Adapter, Conventions, Layer

# ONNX's defaults: epsilon 1e-5 stored as float32; momentum 0.9 (old-value weight) for BatchNormalization.
CONVENTIONS = Conventions(channel_axis=1, momentum_weights="old_value", running_var_estimator="biased",
                          default_eps={op: models.float32_attribute(1e-5) for op in models.NODES})
_CACHE_SIZE = 1024  # runnable models kept per adapter (a configuration: op, dtype, declared dims, attributes)


class OnnxAdapter(Adapter):
    """Subclasses set `id`, `framework`, `capabilities` and implement `_prepare(model, device)`,
    which returns a callable feeds -> list of output arrays (in the node's output order)."""

    conventions = CONVENTIONS

    def __init__(self):
        self._runners = {}  # ModelConfig -> runnable model, or the exception preparing it raised

    def _prepare(self, model, device):
        raise NotImplementedError

    def _run(self, cfg: models.ModelConfig, feeds: dict, device: str) -> list:
        """The outputs of the model of `cfg` on `feeds`; the model is built and prepared once per
        configuration and device (a preparation error is kept and raised again for that configuration)."""
        key = (cfg, device)
        runner = self._runners.get(key)
        if runner is None:
            if len(self._runners) >= _CACHE_SIZE:
                self._runners.clear()
            try:
                runner = self._prepare(models.build(cfg), device)
            except Exception as error:  # e.g. no kernel for this dtype: every call of the configuration raises it
                runner = error
            self._runners[key] = runner
        if isinstance(runner, Exception):
            raise runner
        return runner(feeds)

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        shape = tuple(normalized_shape)
        cfg = models.config("layer_norm", _dtype(x), x.ndim, eps=eps, bias=bias is not None, normalized_shape=shape)
        return self._run(cfg, models.feeds(cfg, x, weight=weight, bias=bias, parameter_shape=shape), device)[0]

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        shape = tuple(normalized_shape)
        cfg = models.config("rms_norm", _dtype(x), x.ndim, eps=eps, normalized_shape=shape)
        return self._run(cfg, models.feeds(cfg, x, weight=weight, bias=None, parameter_shape=shape), device)[0]

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        cfg = models.config("group_norm", _dtype(x), x.ndim, eps=eps, num_groups=num_groups)
        return self._run(cfg, models.feeds(cfg, x, weight=weight, bias=bias, parameter_shape=_channels(x)),
                         device)[0]

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device):
        if running_mean is not None or running_var is not None:
            raise NotImplementedError("ONNX InstanceNormalization keeps no running statistics")
        return _InstanceNorm(self, weight, bias, eps, device)

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device):
        return _BatchNorm(self, num_features, dtype, weight, bias, running_mean, running_var, momentum, eps, device)


def _dtype(x) -> str:
    return np.dtype(x.dtype).name


def _channels(x) -> tuple:
    """The shape (C,) of a per-channel parameter for x, channels on axis 1 (x of rank >= 2;
    a lower rank gets (1,), and the runtime's own rank check rejects it)."""
    return (x.shape[1] if x.ndim > 1 else 1,)


class _InstanceNorm(Layer):
    """InstanceNormalization, which has no state: training changes nothing."""

    def __init__(self, adapter, weight, bias, eps, device):
        self._adapter, self._weight, self._bias, self._eps, self._device = adapter, weight, bias, eps, device

    def __call__(self, x, *, training: bool):
        cfg = models.config("instance_norm", _dtype(x), x.ndim, eps=self._eps)
        feeds = models.feeds(cfg, x, weight=self._weight, bias=self._bias, parameter_shape=_channels(x))
        return self._adapter._run(cfg, feeds, self._device)[0]

    def running_stats(self):
        return None, None


class _BatchNorm(Layer):
    """One BatchNormalization: the running statistics live here. An evaluation call runs the
    training_mode=0 model on them; a training call runs the training_mode=1 model, whose
    running_mean and running_var outputs become the new state. A fresh layer starts from
    mean 0 and variance 1 (BN-4.3) in the layer's dtype: an ONNX node has no initial state
    of its own, its input_mean and input_var are whatever the graph gives it."""

    def __init__(self, adapter, num_features, dtype, weight, bias, running_mean, running_var, momentum, eps,
                 device):
        self._adapter, self._weight, self._bias = adapter, weight, bias
        self._momentum, self._eps, self._device = momentum, eps, device
        state_dtype = numpy_dtype(dtype)
        self._mean = np.zeros(num_features, state_dtype) if running_mean is None else running_mean
        self._var = np.ones(num_features, state_dtype) if running_var is None else running_var

    def __call__(self, x, *, training: bool):
        cfg = models.config("batch_norm", _dtype(x), x.ndim, eps=self._eps, momentum=self._momentum,
                            training=training)
        feeds = models.feeds(cfg, x, weight=self._weight, bias=self._bias, running_mean=self._mean,
                             running_var=self._var, parameter_shape=_channels(x))
        outputs = self._adapter._run(cfg, feeds, self._device)
        if training:
            self._mean, self._var = outputs[1], outputs[2]
        return outputs[0]

    def running_stats(self):
        return self._mean, self._var


__all__ = ["CONVENTIONS", "OnnxAdapter"]
