"""`flax-linen-sync`: synchronized BatchNorm as a Flax user runs it on R devices (spec DP):
`flax.linen.BatchNorm(axis_name="batch")` applied under `jax.shard_map` over a Mesh of R CPU
devices, so the statistics are reduced by JAX's own collective (`lax.pmean` inside Flax).
Checked against flax 0.12.8, jax 0.10.2.

The shards are stacked on a leading replica axis that the mesh splits. shard_map gives every
device a block of one size, so uneven shards are padded to the longest and the padding is
excluded with BatchNorm's `mask` argument, the documented Flax way to leave elements out of the
statistics; equal shards are passed without a mask. The module is Flax's default (channels last,
use_fast_variance=True, dtype = param_dtype = the input dtype), its fresh batch_stats come from
its own `init`, and each replica's batch_stats are read back from that replica's block.

JAX makes its CPU devices once per process, from XLA_FLAGS: `environment` asks `normspec check`
for 8; a process started without it has one device, and device_status says so.
"""
from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from normspec.dtypes import MIXED_PRECISION

from . import _jax_common  # noqa: F401  (jax_enable_x64 for the float64 cases, as the other Flax adapters)
from ._jax_process import cache, note_jitted_call
from .base import Adapter, Capabilities, ReplicatedLayer
from ._jax_common import FlaxAdapter

_AXIS = "batch"
_DEVICES = 8


def _module(dtype: str, use_scale: bool, use_bias: bool, eps, momentum, param_dtype: str | None = None) -> nn.BatchNorm:
    """Flax's BatchNorm computing in `dtype` with parameters in `param_dtype` (by default the same: NUM-2.3's
    mixed precision is dtype=half, param_dtype=float32)."""
    return nn.BatchNorm(axis=-1, axis_name=_AXIS, momentum=momentum, epsilon=eps, dtype=jnp.dtype(dtype),
                        param_dtype=jnp.dtype(param_dtype or dtype), use_scale=use_scale, use_bias=use_bias)


@cache
def _init(dtype: str, channels: int, use_scale: bool, use_bias: bool, param_dtype: str | None = None):
    """The module's own `init` on one device: its fresh batch_stats (BN-4.3)."""
    def init(eps, momentum):
        dummy = jnp.zeros((1, channels), jnp.dtype(dtype))
        module = _module(dtype, use_scale, use_bias, eps, momentum, param_dtype)
        # axis_name needs a bound axis even in init: a one-device vmap names it.
        variables = jax.vmap(lambda d: module.init(jax.random.key(0), d, use_running_average=True),
                             axis_name=_AXIS)(dummy[None])
        return jax.tree.map(lambda a: a[0], variables["batch_stats"])
    return jax.jit(init)


@cache
def _step(replicas: int, dtype: str, use_scale: bool, use_bias: bool, training: bool, masked: bool,
          param_dtype: str | None = None):
    """The jitted shard_map of one BatchNorm call over `replicas` devices: (params, stats, x, mask, eps,
    momentum) -> (y, stats), x, mask, y and stats with a leading replica axis."""
    mesh = Mesh(np.array(jax.devices("cpu")[:replicas]), (_AXIS,))

    def per_replica(params, stats, x, mask, eps, momentum):
        module = _module(dtype, use_scale, use_bias, eps, momentum, param_dtype)
        variables = {"params": params, "batch_stats": jax.tree.map(lambda a: a[0], stats)}
        local_mask = mask[0] if masked else None
        if not training:
            y, new_stats = module.apply(variables, x[0], use_running_average=True), variables["batch_stats"]
        else:
            y, updated = module.apply(variables, x[0], use_running_average=False, mask=local_mask,
                                      mutable=["batch_stats"])
            new_stats = updated["batch_stats"]
        return y[None], jax.tree.map(lambda a: a[None], new_stats)

    sharded = jax.shard_map(per_replica, mesh=mesh, in_specs=(P(), P(_AXIS), P(_AXIS), P(_AXIS), P(), P()),
                            out_specs=(P(_AXIS), P(_AXIS)))
    return jax.jit(sharded)


@cache
def _vjp_step(replicas: int, dtype: str, use_scale: bool, use_bias: bool, masked: bool, param_dtype: str | None = None):
    """The jitted shard_map of jax.vjp of one training call on every replica: (params, stats, x, mask, dy,
    eps) -> (dx, dparams), dparams each replica's own; JAX transposes Flax's collective."""
    mesh = Mesh(np.array(jax.devices("cpu")[:replicas]), (_AXIS,))

    def per_replica(params, stats, x, mask, dy, eps):
        params = jax.tree.map(lambda a: a[0], params)
        module = _module(dtype, use_scale, use_bias, eps, _VJP_MOMENTUM, param_dtype)
        batch_stats = jax.tree.map(lambda a: a[0], stats)
        local_mask = mask[0] if masked else None

        def output(params, x):
            return module.apply({"params": params, "batch_stats": batch_stats}, x, use_running_average=False,
                                mask=local_mask, mutable=["batch_stats"])[0]

        _, pullback = jax.vjp(output, params, x[0])
        dparams, dx = pullback(dy[0])
        return dx[None], jax.tree.map(lambda a: a[None], dparams)

    # The parameters are stacked per replica, as pmap users replicate them: each replica's gradient is then its
    # own contribution (a replicated P() input would get the cross-replica sum on every replica).
    sharded = jax.shard_map(per_replica, mesh=mesh, in_specs=(P(_AXIS),) * 5 + (P(),),
                            out_specs=(P(_AXIS), P(_AXIS)))
    return jax.jit(sharded)


# The momentum of a backward call: it weights only the running update, which the VJP discards.
_VJP_MOMENTUM = 0.99


def _padded(shards, replicas):
    """The shards stacked on the replica axis, padded to the longest, and the mask of real elements."""
    sizes = [s.shape[0] for s in shards]
    x = np.zeros((replicas, max(max(sizes), 1), *shards[0].shape[1:]), shards[0].dtype)
    mask = np.zeros(x.shape, bool)
    for r, shard in enumerate(shards):
        x[r, :sizes[r]], mask[r, :sizes[r]] = shard, True
    return x, mask, sizes


class FlaxSyncLayer(ReplicatedLayer):
    """The parameters and every replica's batch_stats (stacked on the replica axis) between calls."""

    def __init__(self, replicas, dtype, weight, bias, eps, momentum, stats, param_dtype=None):
        self._replicas, self._dtype, self._eps, self._momentum = replicas, str(np.dtype(dtype)), eps, momentum
        self._param_dtype = param_dtype
        params = {"scale": weight, "bias": bias}
        self._params = {k: np.array(v) for k, v in params.items() if v is not None}
        self._stats = {k: np.stack([np.asarray(v)] * replicas) for k, v in stats.items()}

    def __call__(self, shards, *, training: bool):
        if len(shards) != self._replicas:
            raise ValueError(f"{len(shards)} shards for a layer on {self._replicas} replicas")
        x, mask, sizes = _padded(shards, self._replicas)
        masked = not mask.all()  # padding to mask out: uneven shards, or every shard empty
        step = _step(self._replicas, self._dtype, "scale" in self._params, "bias" in self._params, bool(training),
                     masked, self._param_dtype)
        note_jitted_call()
        y, stats = step(self._params, self._stats, x, mask, self._eps, self._momentum)
        self._stats = {k: np.asarray(v) for k, v in stats.items()}
        y = np.asarray(y)
        return [y[r, :sizes[r]] for r in range(self._replicas)]

    def running_stats(self):
        return [(self._stats["mean"][r].copy(), self._stats["var"][r].copy()) for r in range(self._replicas)]


class FlaxLinenSyncAdapter(Adapter):
    id = "flax-linen-sync"
    framework = "flax"
    compiles_per_shape = True
    conventions = FlaxAdapter.conventions
    capabilities = Capabilities(ops=(), dtypes=("float16", "bfloat16", "float32", "float64"), devices=("cpu",),
                                data_parallel=("sync_batch_norm",), data_parallel_backward=("sync_batch_norm",),
                                mixed_precision=MIXED_PRECISION,
                                max_replicas=_DEVICES,
                                shard_sizes=("uneven", "empty"))
    environment = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={_DEVICES}"}

    def device_status(self) -> dict:
        count = len(jax.devices("cpu"))
        if count >= _DEVICES:
            return {"cpu": None}
        return {"cpu": f"cpu: JAX has {count} CPU device(s), {_DEVICES} needed; start the process with "
                       f"XLA_FLAGS={self.environment['XLA_FLAGS']} (normspec check sets it)"}

    def sync_batch_norm_layer(self, *, replicas, num_features, dtype, weight, bias, running_mean, running_var,
                              momentum, eps, device, param_dtype=None):
        dtype = str(np.dtype(dtype))
        if running_mean is None or running_var is None:
            note_jitted_call()
            fresh = _init(dtype, int(num_features), weight is not None, bias is not None, param_dtype)(
                float(eps), float(momentum))
            stats = {k: np.asarray(v) for k, v in fresh.items()}
        else:
            stats = {"mean": running_mean, "var": running_var}
        return FlaxSyncLayer(replicas, dtype, weight, bias, float(eps), float(momentum), stats, param_dtype)

    def sync_batch_norm_vjp(self, shards, cotangents, *, weight, bias, eps, device, param_dtype=None):
        replicas, dtype = len(shards), str(shards[0].dtype)
        channels = shards[0].shape[-1]
        fresh = _init(dtype, channels, weight is not None, bias is not None, param_dtype)(float(eps), _VJP_MOMENTUM)
        stats = {k: np.stack([np.asarray(v)] * replicas) for k, v in fresh.items()}
        params = {k: np.stack([v] * replicas) for k, v in {"scale": weight, "bias": bias}.items() if v is not None}
        x, mask, sizes = _padded(shards, replicas)
        dy, _, _ = _padded(cotangents, replicas)
        step = _vjp_step(replicas, dtype, weight is not None, bias is not None, not mask.all(), param_dtype)
        note_jitted_call()
        dx, dparams = step(params, stats, x, mask, dy, float(eps))
        dx = np.asarray(dx)
        per_replica = {name: None if key not in dparams else [np.asarray(dparams[key][r]) for r in range(replicas)]
                       for name, key in (("weight", "scale"), ("bias", "bias"))}
        return {"x": [dx[r, :sizes[r]] for r in range(replicas)], **per_replica}
