"""`numpy`: the reference itself behind the adapter interface (checks the machinery)."""
from __future__ import annotations

import numpy as np

from normspec import reference
from normspec.dtypes import MIXED_PRECISION, numpy_dtype
from normspec.errors import ConfigurationError
from normspec.registry import SCALERS

from .base import OP_NAMES, SCALER_NAMES, Capabilities, Conventions, FunctionalAdapter, ReplicatedLayer, Scaler


class GivenStatisticsScaler(Scaler):
    """SCALE-9: (x - mean) / std with the given statistics, in float64, rounded once to the input's dtype."""

    def __init__(self, mean, std):
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if not np.all(np.isfinite(std) & (std > 0)):
            raise ConfigurationError("SCALE-9", f"std={std.tolist()}: every standard deviation shall be a finite "
                                                f"number > 0")
        self._mean, self._std = mean, std

    def transform(self, x):
        with np.errstate(invalid="ignore"):
            return ((x.astype(np.float64) - self._mean) / self._std).astype(x.dtype)


class ReferenceScaler(Scaler):
    """A scaler that keeps its chunks and fits the reference on all of them (SCALE-2.1), with
    its statistics rounded to the data's dtype (SCALE-6) and its outputs to the input's."""

    def __init__(self, fit, names):
        self._fit, self._names, self._chunks, self._fitted_chunks = fit, names, [], None

    def partial_fit(self, x):
        if self._chunks and (x.ndim != 2 or x.shape[1] != self._chunks[0].shape[1]):
            raise ConfigurationError("SCALE-8.1", f"a chunk of shape {x.shape} after chunks of "
                                                  f"{self._chunks[0].shape[1]} features")
        self._chunks.append(x.copy())
        self._fitted_chunks = None

    def _fitted(self):
        """The reference fit of every chunk so far, fitted once per new chunk."""
        if self._fitted_chunks is None:
            self._fitted_chunks = self._fit(self._chunks)
        return self._fitted_chunks

    def transform(self, x):
        return self._fitted().transform(x)

    def inverse_transform(self, y):
        return self._fitted().inverse_transform(y)

    def statistics(self):
        fitted, dtype = self._fitted(), self._chunks[0].dtype
        return {name: getattr(fitted, name).astype(dtype) for name in self._names}


class ReferenceReplicatedLayer(ReplicatedLayer):
    """DP: the reference on the global batch, one state that every replica shares (no collective:
    this adapter checks the machinery, not an engine)."""

    def __init__(self, replicas, weight, bias, running_mean, running_var, momentum, eps):
        self._replicas, self._weight, self._bias, self._momentum, self._eps = replicas, weight, bias, momentum, eps
        self._mean, self._var, self._count = running_mean, running_var, 0

    def __call__(self, shards, *, training):
        if len(shards) != self._replicas:
            raise ConfigurationError("DP-1", f"{len(shards)} shards for a layer on {self._replicas} replicas")
        result = reference.sync_batch_norm(shards, self._weight, self._bias, self._mean, self._var, training=training,
                                           momentum=self._momentum, eps=self._eps, num_batches_tracked=self._count)
        self._mean, self._var, self._count = result.running_mean, result.running_var, result.num_batches_tracked
        return result.outputs

    def running_stats(self):
        return [(self._mean, self._var)] * self._replicas


class NumpyReferenceAdapter(FunctionalAdapter):
    id = "numpy"
    framework = "numpy"
    conventions = Conventions(channel_axis=1, momentum_weights="new_batch", running_var_estimator="unbiased",
                              default_eps={op: 1e-5 for op in OP_NAMES})
    capabilities = Capabilities(cumulative_average=True, instance_norm_running_stats=True, backward_ops=OP_NAMES,
                                scalers=SCALER_NAMES, given_statistics=("standard_scaler",),
                                data_parallel=("sync_batch_norm",), data_parallel_backward=("sync_batch_norm",),
                                mixed_precision=MIXED_PRECISION)

    def standard_scaler_given(self, *, mean, std, device):
        return GivenStatisticsScaler(mean, std)

    def standard_scaler(self, *, with_mean, with_std, device):
        def fit(chunks):
            return reference.standard_scaler(chunks, with_mean=with_mean, with_std=with_std,
                                             ddof=self.conventions.scaler_ddof, nan=self.conventions.scaler_nan)
        return ReferenceScaler(fit, SCALERS["standard_scaler"].statistics)

    def minmax_scaler(self, *, feature_range, clip, device):
        def fit(chunks):
            return reference.minmax_scaler(chunks, feature_range=feature_range, clip=clip,
                                           nan=self.conventions.scaler_nan)
        return ReferenceScaler(fit, SCALERS["minmax_scaler"].statistics)

    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device, param_dtype=None):
        if running_mean is None:  # BN-4.3, in the parameters' dtype (NUM-2.3)
            state_dtype = numpy_dtype(param_dtype or dtype)
            running_mean, running_var = np.zeros(num_features, state_dtype), np.ones(num_features, state_dtype)
        return ReferenceReplicatedLayer(replicas, weight, bias, running_mean, running_var, momentum, eps)

    def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device, param_dtype=None):
        gradient = reference.sync_batch_norm_vjp(shards, cotangents, weight, bias, training=True, eps=eps)
        # The global parameter gradients held by replica 0, zeros elsewhere: their sum is the global one (DP-7).
        return {"x": gradient["x"],
                **{name: None if gradient[name] is None else
                   [gradient[name]] + [np.zeros_like(gradient[name])] * (len(shards) - 1)
                   for name in ("weight", "bias")}}

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device, param_dtype=None):
        return reference.layer_norm(x, normalized_shape, weight, bias, eps=eps)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device, param_dtype=None):
        return reference.group_norm(x, num_groups, weight, bias, eps=eps)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device, param_dtype=None):
        return reference.rms_norm(x, normalized_shape, weight, eps=eps)

    def batch_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps,
                   num_batches_tracked, device, param_dtype=None):
        result = reference.batch_norm(x, weight, bias, running_mean, running_var, training=training,
                                      momentum=momentum, eps=eps, num_batches_tracked=num_batches_tracked)
        return result.output, result.running_mean, result.running_var

    def instance_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps, device,
                      param_dtype=None):
        result = reference.instance_norm(x, weight, bias, running_mean, running_var, momentum=momentum, eps=eps,
                                         use_input_stats=training or running_mean is None)
        return result.output, result.running_mean, result.running_var

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, param_dtype=None,
            **attrs):
        if op == "batch_norm":
            return reference.batch_norm_vjp(x, dy, weight, bias, running_mean, running_var, training=training, eps=eps)
        if op == "instance_norm":
            return reference.instance_norm_vjp(x, dy, weight, bias, running_mean, running_var, eps=eps,
                                               use_input_stats=training or running_mean is None)
        return getattr(reference, f"{op}_vjp")(x, dy, weight=weight, bias=bias, eps=eps, **attrs)
