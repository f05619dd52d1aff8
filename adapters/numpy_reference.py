"""`numpy`: the reference itself behind the adapter interface (checks the machinery)."""
from __future__ import annotations

from functools import partial

import numpy as np

from normspec import reference
from normspec.cases import numpy_dtype

from .base import Adapter, Capabilities, Conventions, FunctionalLayer


class NumpyReferenceAdapter(Adapter):
    id = "numpy"
    framework = "numpy"
    conventions = Conventions(channel_axis=1, momentum_weights="new_batch", running_var_estimator="unbiased",
                              default_eps={op: 1e-5 for op in ("batch_norm", "layer_norm", "group_norm",
                                                                "instance_norm", "rms_norm")})
    capabilities = Capabilities(cumulative_average=True, instance_norm_running_stats=True)

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        return reference.layer_norm(x, normalized_shape, weight, bias, eps=eps)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        return reference.group_norm(x, num_groups, weight, bias, eps=eps)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        return reference.rms_norm(x, normalized_shape, weight, eps=eps)

    def batch_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                         momentum, eps, device):
        if running_mean is None:  # BN-4.3
            running_mean, running_var = np.zeros(num_features, numpy_dtype(dtype)), np.ones(num_features, numpy_dtype(dtype))
        return FunctionalLayer(partial(_batch_norm, weight, bias, momentum, eps), running_mean, running_var)

    def instance_norm_layer(self, *, num_features, dtype, weight, bias, running_mean, running_var,
                            momentum, eps, device):
        return FunctionalLayer(partial(_instance_norm, weight, bias, momentum, eps), running_mean, running_var)


def _batch_norm(weight, bias, momentum, eps, x, running_mean, running_var, training, count):
    result = reference.batch_norm(x, weight, bias, running_mean, running_var, training=training,
                                  momentum=momentum, eps=eps, num_batches_tracked=count)
    return result.output, result.running_mean, result.running_var


def _instance_norm(weight, bias, momentum, eps, x, running_mean, running_var, training, count):
    tracking = running_mean is not None
    result = reference.instance_norm(x, weight, bias, running_mean, running_var,
                                     use_input_stats=training or not tracking, momentum=momentum, eps=eps)
    return result.output, result.running_mean, result.running_var
