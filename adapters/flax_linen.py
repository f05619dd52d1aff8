"""`flax-linen`: the flax.linen modules BatchNorm, LayerNorm, GroupNorm, InstanceNorm
and RMSNorm in their default numerics (use_fast_variance=True,
force_float32_reductions=True), channels last. Checked against flax 0.12.8, jax 0.10.2.

Each module gets dtype = param_dtype = the input dtype, the configuration a user
gets for inputs of that dtype. The variables dict is built directly from the given
parameters (no `init` per call); BatchNorm's `batch_stats` are the given arrays
unchanged, or the fresh module's own (from `init`). `apply` is jitted once per
layer structure, so each new input shape compiles once.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._jax_common import FlaxAdapter, Spec, cache


class FlaxLinenAdapter(FlaxAdapter):
    id = "flax-linen"

    def _apply(self, spec: Spec, eps, momentum, params, stats, x, training):
        variables = {"params": params}
        if stats is not None:
            variables["batch_stats"] = stats
        return _step(spec)(variables, x, eps, momentum, training=training)

    def _fresh_stats(self, spec: Spec, eps, momentum):
        return _init_stats(spec)(eps, momentum)


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
def _step(spec: Spec):
    """The jitted call: (variables, x, eps, momentum, training) -> (output, batch_stats or None)."""

    def step(variables, x, eps, momentum, training):
        module = _module(spec, eps, momentum)
        if spec.op != "batch_norm":
            return module.apply(variables, x), None
        if not training:
            return module.apply(variables, x, use_running_average=True), variables["batch_stats"]
        output, updated = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
        return output, updated["batch_stats"]

    return jax.jit(step, static_argnames="training")


@cache
def _init_stats(spec: Spec):
    """The jitted `init` of a BatchNorm: its fresh batch_stats (they depend on C only)."""

    def init(eps, momentum):
        dummy = jnp.zeros((1, spec.features[0]), jnp.dtype(spec.dtype))
        variables = _module(spec, eps, momentum).init(jax.random.key(0), dummy, use_running_average=True)
        return variables["batch_stats"]

    return jax.jit(init)
