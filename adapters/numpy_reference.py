"""`numpy`: the reference itself behind the adapter interface (checks the machinery)."""
from __future__ import annotations

from normspec import reference

from .base import OP_NAMES, Capabilities, Conventions, FunctionalAdapter


class NumpyReferenceAdapter(FunctionalAdapter):
    id = "numpy"
    framework = "numpy"
    conventions = Conventions(channel_axis=1, momentum_weights="new_batch", running_var_estimator="unbiased",
                              default_eps={op: 1e-5 for op in OP_NAMES})
    capabilities = Capabilities(cumulative_average=True, instance_norm_running_stats=True, backward_ops=OP_NAMES)

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        return reference.layer_norm(x, normalized_shape, weight, bias, eps=eps)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        return reference.group_norm(x, num_groups, weight, bias, eps=eps)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        return reference.rms_norm(x, normalized_shape, weight, eps=eps)

    def batch_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps,
                   num_batches_tracked, device):
        result = reference.batch_norm(x, weight, bias, running_mean, running_var, training=training,
                                      momentum=momentum, eps=eps, num_batches_tracked=num_batches_tracked)
        return result.output, result.running_mean, result.running_var

    def instance_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps, device):
        result = reference.instance_norm(x, weight, bias, running_mean, running_var, momentum=momentum, eps=eps,
                                         use_input_stats=training or running_mean is None)
        return result.output, result.running_mean, result.running_var

    def vjp(self, op, x, dy, *, weight, bias, running_mean, running_var, training, eps, device, **attrs):
        if op == "batch_norm":
            return reference.batch_norm_vjp(x, dy, weight, bias, running_mean, running_var, training=training, eps=eps)
        if op == "instance_norm":
            return reference.instance_norm_vjp(x, dy, weight, bias, running_mean, running_var, eps=eps,
                                               use_input_stats=training or running_mean is None)
        return getattr(reference, f"{op}_vjp")(x, dy, weight=weight, bias=bias, eps=eps, **attrs)
