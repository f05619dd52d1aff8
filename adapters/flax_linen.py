"""`flax-linen`: the flax.linen modules BatchNorm, LayerNorm, GroupNorm, InstanceNorm
and RMSNorm in their default numerics (use_fast_variance=True,
force_float32_reductions=True), channels last. Checked against flax 0.12.8, jax 0.10.2.

Each module gets dtype = param_dtype = the input dtype, the configuration a user
gets for inputs of that dtype; under mixed precision (NUM-2.3) dtype = the float16/bfloat16
input dtype and param_dtype = float32, as Flax users configure it (batch_stats are float32
either way: linen creates them so with force_float32_reductions=True). The variables dict is built directly from the given
parameters (no `init` per call); BatchNorm's `batch_stats` are the given arrays
unchanged, or the fresh module's own (from `init`). `apply` is jitted once per
layer structure, so each new input shape compiles once; the backward is `jax.vjp`
of the same `apply` (_jax_common.jitted_vjp).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._jax_common import FlaxAdapter, LayerStructure, cache


def _call(structure: LayerStructure, params, stats, x, eps, momentum, training):
    """One `apply` of the module: (output, batch_stats or None)."""
    module = _module(structure, eps, momentum)
    variables = {"params": params}
    if structure.op != "batch_norm":
        return module.apply(variables, x), None
    variables["batch_stats"] = stats
    if not training:
        return module.apply(variables, x, use_running_average=True), stats
    output, updated = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    return output, updated["batch_stats"]


def _module(structure: LayerStructure, eps, momentum) -> nn.Module:
    dtype, param_dtype = jnp.dtype(structure.dtype), jnp.dtype(structure.parameter_dtype)
    common = dict(epsilon=eps, dtype=dtype, param_dtype=param_dtype, use_scale=structure.use_scale)
    if structure.op == "layer_norm":
        return nn.LayerNorm(**common, use_bias=structure.use_bias, reduction_axes=structure.axes, feature_axes=structure.axes)
    if structure.op == "rms_norm":
        return nn.RMSNorm(**common, reduction_axes=structure.axes, feature_axes=structure.axes)
    if structure.op == "group_norm":
        return nn.GroupNorm(**common, use_bias=structure.use_bias, num_groups=structure.num_groups, group_size=None)
    if structure.op == "instance_norm":
        return nn.InstanceNorm(**common, use_bias=structure.use_bias, feature_axes=-1)
    return nn.BatchNorm(**common, use_bias=structure.use_bias, axis=-1, momentum=momentum)


@cache
def _init_stats(structure: LayerStructure):
    """The jitted `init` of a BatchNorm: its fresh batch_stats (they depend on C only)."""

    def init(eps, momentum):
        dummy = jnp.zeros((1, structure.features[0]), jnp.dtype(structure.dtype))
        variables = _module(structure, eps, momentum).init(jax.random.key(0), dummy, use_running_average=True)
        return variables["batch_stats"]

    return jax.jit(init)


class FlaxLinenAdapter(FlaxAdapter):
    id = "flax-linen"
    _call = staticmethod(_call)
    _init_stats = staticmethod(_init_stats)
