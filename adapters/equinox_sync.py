"""`equinox-sync`: synchronized BatchNorm as an Equinox user runs it on R devices (spec DP):
`eqx.nn.BatchNorm(C, axis_name=("batch", "data"))`, vmapped over each replica's samples (axis
"batch") inside `jax.shard_map` over a Mesh of R CPU devices (axis "data"), so Equinox's
`lax.pmean` over both axes reduces the statistics across the replicas. Checked against equinox
0.13.8, jax 0.10.2.

As the `equinox-bn-batch` adapter: mode="batch" (the default "ema" mode's findings, a fresh running
variance of 0 and training normalized with the updated running statistics, belong to the `equinox`
adapter and would hide every cross-replica check), channels at axis 1, dtype = the input dtype, the
module and its State from `make_with_state`, `inference_mode` for evaluation. shard_map runs with check_vma=False: with JAX's default check_vma=True, Equinox's
pmean over the vmap axis and the mesh axis is rejected at trace time ("psum can only accept
axis_name which corresponds to one of varying ... state of the input"). Equinox's BatchNorm has no
mask, so shards of unequal size cannot be expressed (Capabilities.shard_sizes is empty: equal
shards only). The per-shard VJP (DP-7) is `jax.vjp` of the same vmapped training call inside the
shard_map, the parameters stacked per replica (as flax-linen-sync does, as pmap users replicate
them), so each replica's parameter gradient is its own; JAX transposes Equinox's collective.

JAX makes its CPU devices once per process, from XLA_FLAGS: `environment` asks `normspec check`
for 8, as flax-linen-sync does.
"""
from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from normspec.dtypes import MIXED_PRECISION

from . import _jax_common  # noqa: F401  (jax_enable_x64 for the float64 cases, as the other JAX adapters)
from ._jax_process import cache, note_jitted_call
from .base import Adapter, Capabilities, ReplicatedLayer
from .equinox_nn import EquinoxAdapter, _construct, _load_state, _state_arrays, _with_params
from .flax_sync import FlaxLinenSyncAdapter

_SAMPLES, _DEVICES_AXIS = "batch", "data"


@cache
def _module(channels: int, dtype: str, affine: bool, eps: float, momentum: float):
    """`make_with_state(BatchNorm)`: the module and its fresh State, one per configuration (the State's
    indices belong to their module, so both live outside the traced function)."""
    return _construct(eqx.nn.make_with_state(eqx.nn.BatchNorm), channels, (_SAMPLES, _DEVICES_AXIS), eps=eps,
                      channelwise_affine=affine, momentum=momentum, dtype=np.dtype(dtype), mode="batch")


@cache
def _step(replicas: int, channels: int, dtype: str, affine: bool, eps: float, momentum: float, training: bool):
    """The jitted shard_map of one call on every replica: (params, state) -> (y, state), x, y and every
    leaf of the State with a leading replica axis."""
    mesh = Mesh(np.array(jax.devices("cpu")[:replicas]), (_DEVICES_AXIS,))
    module, _ = _module(channels, dtype, affine, eps, momentum)

    def per_replica(params, state, x):
        call = eqx.nn.inference_mode(_with_params(module, params), value=not training)
        y, state = jax.vmap(call, axis_name=_SAMPLES, in_axes=(0, None), out_axes=(0, None))(
            x[0], jax.tree.map(lambda a: a[0], state))
        return y[None], jax.tree.map(lambda a: a[None], state)

    sharded = jax.shard_map(per_replica, mesh=mesh, in_specs=(P(), P(_DEVICES_AXIS), P(_DEVICES_AXIS)),
                            out_specs=(P(_DEVICES_AXIS), P(_DEVICES_AXIS)), check_vma=False)
    return jax.jit(sharded)


# The momentum of a backward call: it weights only the running update, which the VJP discards.
_VJP_MOMENTUM = 0.99


@cache
def _vjp_step(replicas: int, channels: int, dtype: str, affine: bool, eps: float):
    """The jitted shard_map of jax.vjp of one training call on every replica: (params, state, x, dy) ->
    (dx, dparams), params, state, x, dy, dx and dparams with a leading replica axis, dparams each
    replica's own; the State is closed over (its update discarded, never differentiated)."""
    mesh = Mesh(np.array(jax.devices("cpu")[:replicas]), (_DEVICES_AXIS,))
    module, _ = _module(channels, dtype, affine, eps, _VJP_MOMENTUM)

    def per_replica(params, state, x, dy):
        params, state = jax.tree.map(lambda a: a[0], params), jax.tree.map(lambda a: a[0], state)

        def output(params, x):
            call = _with_params(module, params)
            return jax.vmap(call, axis_name=_SAMPLES, in_axes=(0, None), out_axes=(0, None))(x, state)[0]

        _, pullback = jax.vjp(output, params, x[0])
        dparams, dx = pullback(dy[0])
        return dx[None], jax.tree.map(lambda a: a[None], dparams)

    sharded = jax.shard_map(per_replica, mesh=mesh, in_specs=(P(_DEVICES_AXIS),) * 4,
                            out_specs=(P(_DEVICES_AXIS), P(_DEVICES_AXIS)), check_vma=False)
    return jax.jit(sharded)


class EquinoxSyncLayer(ReplicatedLayer):
    """The parameters and every replica's State (its leaves stacked on the replica axis) between calls."""

    def __init__(self, replicas, key, params, state):
        self._replicas, self._key, self._params = replicas, key, params
        # JAX arrays between calls, as a training loop keeps them: a NumPy round trip would drop the weak
        # type of the step counter, which Equinox's evaluation then promotes to float64.
        self._state = jax.tree.map(lambda a: jnp.stack([a] * replicas), state)

    def __call__(self, shards, *, training: bool):
        sizes = {s.shape[0] for s in shards}
        if len(shards) != self._replicas or len(sizes) != 1:
            raise ValueError(f"shards of sizes {[s.shape[0] for s in shards]} on {self._replicas} replicas: "
                             f"shard_map needs one size, and Equinox's BatchNorm has no mask")
        note_jitted_call()
        y, state = _step(self._replicas, *self._key, bool(training))(self._params, self._state, np.stack(shards))
        self._state = state
        y = np.asarray(y)
        return [y[r] for r in range(self._replicas)]

    def running_stats(self):
        module, _ = _module(*self._key)
        stats = []
        for r in range(self._replicas):
            arrays = _state_arrays(module, jax.tree.map(lambda a: a[r], self._state))
            stats.append((np.array(arrays["mean"]), np.array(arrays["var"])))
        return stats


class EquinoxSyncAdapter(Adapter):
    id = "equinox-sync"
    framework = "equinox"
    compiles_per_shape = True
    conventions = EquinoxAdapter.conventions
    capabilities = Capabilities(ops=(), dtypes=("float16", "bfloat16", "float32", "float64"), devices=("cpu",),
                                data_parallel=("sync_batch_norm",), data_parallel_backward=("sync_batch_norm",),
                                mixed_precision=MIXED_PRECISION, max_replicas=8, shard_sizes=())
    environment = FlaxLinenSyncAdapter.environment
    device_status = FlaxLinenSyncAdapter.device_status

    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device, param_dtype=None):
        # The module's dtype is its parameters' and state's: a mixed-precision user builds it in float32 and
        # feeds it half shards, as equinox_nn does on one device (NUM-2.3).
        dtype = str(np.dtype(param_dtype or dtype))
        affine = weight is not None or bias is not None
        # One flag for both: a lone weight or bias comes with the other at Equinox's identity value (equinox_nn).
        params = {} if not affine else {
            "weight": np.array(weight) if weight is not None else np.ones(num_features, dtype),
            "bias": np.array(bias) if bias is not None else np.zeros(num_features, dtype)}
        key = (int(num_features), dtype, affine, float(eps), float(momentum))
        module, state = _module(*key)
        if running_mean is not None:  # a restored checkpoint's state, as equinox_nn loads it
            # State.set retires the State it is called on: set a copy, never _module's cached one.
            state = jax.tree.map(lambda a: a, state)
            arrays = _state_arrays(module, state)
            arrays.update(mean=np.array(running_mean), var=np.array(running_var))
            state = _load_state(module, state, arrays)
        return EquinoxSyncLayer(replicas, key, params, state)

    def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device, param_dtype=None):
        replicas, dtype, channels = len(shards), str(np.dtype(param_dtype or shards[0].dtype)), shards[0].shape[1]
        if len({s.shape[0] for s in shards}) != 1:
            raise ValueError(f"shards of sizes {[s.shape[0] for s in shards]}: shard_map needs one size, and "
                             f"Equinox's BatchNorm has no mask")
        affine = weight is not None or bias is not None
        params = {} if not affine else {
            "weight": np.array(weight) if weight is not None else np.ones(channels, dtype),
            "bias": np.array(bias) if bias is not None else np.zeros(channels, dtype)}
        _, state = _module(channels, dtype, affine, float(eps), _VJP_MOMENTUM)
        stacked_params = {k: np.stack([v] * replicas) for k, v in params.items()}
        stacked_state = jax.tree.map(lambda a: jnp.stack([a] * replicas), state)
        step = _vjp_step(replicas, channels, dtype, affine, float(eps))
        note_jitted_call()
        dx, dparams = step(stacked_params, stacked_state, np.stack(shards), np.stack(cotangents))
        dx = np.asarray(dx)
        per_replica = {name: None if given is None else [np.asarray(dparams[name][r]) for r in range(replicas)]
                       for name, given in (("weight", weight), ("bias", bias))}
        return {"x": [dx[r] for r in range(replicas)], **per_replica}
