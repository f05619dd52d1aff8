"""`flax-nnx-sync`: synchronized BatchNorm as a Flax NNX user runs it on R devices (spec DP):
`flax.nnx.BatchNorm(axis_name="batch")`, split into its graph and State (`nnx.split`), merged
and called on every replica inside `jax.shard_map` over a Mesh of R CPU devices, its updated State
returned with `nnx.state`. Checked against flax 0.12.8, jax 0.10.2.

As flax-linen-sync: the shards stacked on a leading replica axis, uneven shards padded and
excluded with BatchNorm's `mask`, equal shards passed without one, Flax's default numerics
(channels last, dtype = param_dtype = the input dtype), each replica's State read back from its
block; the per-shard VJP by jax.vjp of the merged model's call. `environment` asks `normspec check` for 8 CPU devices.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, PartitionSpec as P

from . import _jax_common  # noqa: F401  (jax_enable_x64 for the float64 cases, as the other Flax adapters)
from ._jax_process import cache, note_jitted_call
from .base import Adapter, ReplicatedLayer
from .flax_sync import _AXIS, _VJP_MOMENTUM, FlaxLinenSyncAdapter, _padded


def _model(channels: int, dtype: str, use_scale: bool, use_bias: bool, eps: float, momentum: float,
           param_dtype: str | None = None):
    """NNX's BatchNorm computing in `dtype` with parameters in `param_dtype` (by default the same)."""
    return nnx.BatchNorm(channels, axis_name=_AXIS, momentum=momentum, epsilon=eps, dtype=jnp.dtype(dtype),
                         param_dtype=jnp.dtype(param_dtype or dtype), use_scale=use_scale, use_bias=use_bias,
                         rngs=nnx.Rngs(0))


@cache
def _step(replicas: int, structure: tuple, training: bool, masked: bool):
    """The jitted shard_map of one call on every replica: (state, x, mask) -> (y, state), every leaf of the
    State with a leading replica axis."""
    graphdef, _ = nnx.split(_model(*structure))
    mesh = Mesh(np.array(jax.devices("cpu")[:replicas]), (_AXIS,))

    def per_replica(state, x, mask):
        model = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], state))
        y = model(x[0], use_running_average=not training, mask=mask[0] if masked else None)
        return y[None], jax.tree.map(lambda a: a[None], nnx.state(model))

    return jax.jit(jax.shard_map(per_replica, mesh=mesh, in_specs=(P(_AXIS),) * 3, out_specs=(P(_AXIS), P(_AXIS))))


@cache
def _vjp_step(replicas: int, structure: tuple, masked: bool):
    """The jitted shard_map of jax.vjp of one training call on every replica: (params, stats, x, mask, dy)
    -> (dx, dparams), the parameters (nnx.Param) stacked per replica, so each replica's gradient is its
    own contribution (as flax-linen-sync's)."""
    graphdef, _, _ = nnx.split(_model(*structure), nnx.Param, nnx.BatchStat)
    mesh = Mesh(np.array(jax.devices("cpu")[:replicas]), (_AXIS,))

    def per_replica(params, stats, x, mask, dy):
        params, stats = jax.tree.map(lambda a: a[0], params), jax.tree.map(lambda a: a[0], stats)

        def output(params, x):
            # Fresh BatchStat variables in this trace: NNX refuses to mutate those of the enclosing one.
            fresh_stats = jax.tree.map(lambda a: a, stats)
            return nnx.merge(graphdef, params, fresh_stats)(x, use_running_average=False,
                                                            mask=mask[0] if masked else None)

        _, pullback = jax.vjp(output, params, x[0])
        dparams, dx = pullback(dy[0])
        return dx[None], jax.tree.map(lambda a: a[None], dparams)

    return jax.jit(jax.shard_map(per_replica, mesh=mesh, in_specs=(P(_AXIS),) * 5, out_specs=(P(_AXIS), P(_AXIS))))


class FlaxNnxSyncLayer(ReplicatedLayer):
    """Every replica's State (parameters and batch statistics, stacked on the replica axis) between calls."""

    def __init__(self, replicas, structure, state):
        self._replicas, self._structure = replicas, structure
        self._state = jax.tree.map(lambda a: jnp.stack([a] * replicas), state)

    def __call__(self, shards, *, training: bool):
        if len(shards) != self._replicas:
            raise ValueError(f"{len(shards)} shards for a layer on {self._replicas} replicas")
        x, mask, sizes = _padded(shards, self._replicas)
        note_jitted_call()
        y, self._state = _step(self._replicas, self._structure, bool(training), not mask.all())(
            self._state, x, mask)
        y = np.asarray(y)
        return [y[r, :sizes[r]] for r in range(self._replicas)]

    def running_stats(self):
        mean, var = np.asarray(self._state["mean"][...]), np.asarray(self._state["var"][...])
        return [(mean[r].copy(), var[r].copy()) for r in range(self._replicas)]


class FlaxNnxSyncAdapter(Adapter):
    id = "flax-nnx-sync"
    framework = "flax"
    compiles_per_shape = True
    conventions, capabilities = FlaxLinenSyncAdapter.conventions, FlaxLinenSyncAdapter.capabilities
    environment = FlaxLinenSyncAdapter.environment
    device_status = FlaxLinenSyncAdapter.device_status

    def _built(self, num_features, dtype, weight, bias, running_mean, running_var, eps, momentum, param_dtype=None):
        """The structure key and a model with the given parameters and statistics in place."""
        structure = (int(num_features), str(np.dtype(dtype)), weight is not None, bias is not None, float(eps),
                     float(momentum), param_dtype)
        model = _model(*structure)
        for name, value in (("scale", weight), ("bias", bias), ("mean", running_mean), ("var", running_var)):
            if value is not None:
                getattr(model, name)[...] = jnp.asarray(value)
        return structure, model

    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device, param_dtype=None):
        structure, model = self._built(num_features, dtype, weight, bias, running_mean, running_var, eps, momentum,
                                       param_dtype)
        _, state = nnx.split(model)
        return FlaxNnxSyncLayer(replicas, structure, state)

    def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device, param_dtype=None):
        replicas = len(shards)
        structure, model = self._built(shards[0].shape[-1], shards[0].dtype, weight, bias, None, None, eps,
                                       _VJP_MOMENTUM, param_dtype)
        _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        params, stats = (jax.tree.map(lambda a: jnp.stack([a] * replicas), tree) for tree in (params, stats))
        x, mask, sizes = _padded(shards, replicas)
        dy, _, _ = _padded(cotangents, replicas)
        note_jitted_call()
        dx, dparams = _vjp_step(replicas, structure, not mask.all())(params, stats, x, mask, dy)
        dx = np.asarray(dx)
        gradients = {name: None if key not in dparams else [np.asarray(dparams[key][...][r]) for r in range(replicas)]
                     for name, key in (("weight", "scale"), ("bias", "bias"))}
        return {"x": [dx[r, :sizes[r]] for r in range(replicas)], **gradients}
