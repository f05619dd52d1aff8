"""`flax-linen`: the flax.linen modules BatchNorm, LayerNorm, GroupNorm, InstanceNorm
and RMSNorm in their default numerics (use_fast_variance=True,
force_float32_reductions=True), channels last. Checked against flax 0.12.8, jax 0.10.2.

Each module gets dtype = param_dtype = the input dtype, the configuration a user
gets for inputs of that dtype. The variables dict is built directly from the given
parameters (no `init` per call); BatchNorm's `batch_stats` are the given arrays
unchanged, or the fresh module's own (from `init`). `apply` is jitted once per
layer structure, so each new input shape compiles once; the backward is `jax.vjp`
of the same `apply` (_jax_common.jitted_vjp).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._jax_common import FlaxAdapter, Spec, cache


def _call(spec: Spec, params, stats, x, eps, momentum, training):
    """One `apply` of the module: (output, batch_stats or None)."""
    module = _module(spec, eps, momentum)
    variables = {"params": params}
    if spec.op != "batch_norm":
        return module.apply(variables, x), None
    variables["batch_stats"] = stats
    if not training:
        return module.apply(variables, x, use_running_average=True), stats
    output, updated = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    return output, updated["batch_stats"]


class FlaxLinenAdapter(FlaxAdapter):
    id = "flax-linen"
    _call = staticmethod(_call)

    def _fresh_stats(self, spec: Spec, eps, momentum):
        return self._run_init(_init_stats(spec), spec, eps, momentum)


def _module(spec: Spec, eps, momentum) -> nn.Module:
    dtype = jnp.dtype(spec.dtype)
    common = dict(epsilon=eps, dtype=dtype, param_dtype=dtype, use_scale=spec.use_scale)
    if spec.op == "layer_norm":
        return nn.LayerNorm(**common, use_bias=spec.use_bias, reduction_axes=spec.axes, feature_axes=spec.axes)
    if spec.op == "rms_norm":
        return nn.RMSNorm(**common, reduction_axes=spec.axes, feature_axes=spec.axes)
    if spec.op == "group_norm":
        return nn.GroupNorm(**common, use_bias=spec.use_bias, num_groups=spec.num_groups, group_size=None)
    if spec.op == "instance_norm":
        return nn.InstanceNorm(**common, use_bias=spec.use_bias, feature_axes=-1)
    return nn.BatchNorm(**common, use_bias=spec.use_bias, axis=-1, momentum=momentum)


@cache
def _init_stats(spec: Spec):
    """The jitted `init` of a BatchNorm: its fresh batch_stats (they depend on C only)."""

    def init(eps, momentum):
        dummy = jnp.zeros((1, spec.features[0]), jnp.dtype(spec.dtype))
        variables = _module(spec, eps, momentum).init(jax.random.key(0), dummy, use_running_average=True)
        return variables["batch_stats"]

    return jax.jit(init)
