"""`flax-nnx`: the flax.nnx modules BatchNorm, LayerNorm, GroupNorm, InstanceNorm
and RMSNorm in their default numerics (use_fast_variance=True, the default
promote_dtype), channels last. Checked against flax 0.12.8, jax 0.10.2.

Each module gets dtype = param_dtype = the input dtype, the configuration a user
gets for inputs of that dtype; under mixed precision (NUM-2.3) dtype = the float16/bfloat16
input dtype and param_dtype = float32, as Flax users configure it (nnx creates its running
mean and var as float32 either way). The module is constructed inside one jitted
function per layer structure (so construction costs nothing after tracing and
each new input shape compiles once); the given parameters and BatchNorm
statistics replace its Variables' values (Variable.set_value keeps the given
arrays and dtypes), or the statistics stay the fresh module's own. The backward
is `jax.vjp` of the same construction and call (_jax_common.jitted_vjp).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ._jax_common import FlaxAdapter, LayerStructure, cache

_MODULES = {"layer_norm": nnx.LayerNorm, "rms_norm": nnx.RMSNorm, "group_norm": nnx.GroupNorm,
            "instance_norm": nnx.InstanceNorm, "batch_norm": nnx.BatchNorm}


def _call(structure: LayerStructure, params, stats, x, eps, momentum, training):
    """Build the module, load the given parameters and statistics, call it once: (output, batch
    stats or None)."""
    module = _module(structure, eps, momentum)
    for name, value in {**params, **(stats or {})}.items():
        getattr(module, name).set_value(value)
    if structure.op != "batch_norm":
        return module(x), None
    output = module(x, use_running_average=not training)
    return output, _batch_stats(module)


def _module(structure: LayerStructure, eps, momentum) -> nnx.Module:
    dtype, param_dtype = jnp.dtype(structure.dtype), jnp.dtype(structure.parameter_dtype)
    kwargs = dict(epsilon=eps, dtype=dtype, param_dtype=param_dtype, use_scale=structure.use_scale, rngs=nnx.Rngs(0))
    if structure.op in ("layer_norm", "rms_norm"):
        kwargs.update(reduction_axes=structure.axes, feature_axes=structure.axes)
    if structure.op != "rms_norm":
        kwargs.update(use_bias=structure.use_bias)
    if structure.op == "group_norm":
        kwargs.update(num_groups=structure.num_groups, group_size=None)
    if structure.op == "instance_norm":
        kwargs.update(feature_axes=-1)
    if structure.op == "batch_norm":
        kwargs.update(axis=-1, momentum=momentum)
    # nnx keeps scale/bias flat, (num_features,); LayerNorm/RMSNorm reshape them to the feature axes.
    num_features = 1
    for d in structure.features:
        num_features *= d
    return _MODULES[structure.op](num_features, **kwargs)


def _batch_stats(module) -> dict:
    return {"mean": module.mean.get_value(), "var": module.var.get_value()}


@cache
def _init_stats(structure: LayerStructure):
    """The jitted construction of a BatchNorm: its fresh batch statistics."""
    return jax.jit(lambda eps, momentum: _batch_stats(_module(structure, eps, momentum)))


class FlaxNnxAdapter(FlaxAdapter):
    id = "flax-nnx"
    _call = staticmethod(_call)
    _init_stats = staticmethod(_init_stats)
