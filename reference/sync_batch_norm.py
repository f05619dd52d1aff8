"""Synchronized (data-parallel) BatchNorm, spec section DP (spec/ops/sync_batch_norm.md):
BatchNorm of the concatenated global batch, split back per replica."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from normspec.errors import ConfigurationError

from . import _validate
from .batch_norm import batch_norm, batch_norm_vjp


class ReplicatedResult(NamedTuple):
    """What synchronized BatchNorm returns: one output per replica and the running state, which
    is the same on every replica (DP-4)."""

    outputs: list
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: int


def global_batch(shards) -> tuple:
    """DP-1: the shards concatenated along the batch axis, in replica order, and the offsets
    that split it back; an error naming the clause for shards that do not fit together."""
    shards = [_validate.input_array(shard, f"shard {r}") for r, shard in enumerate(shards)]
    if not shards:
        raise ConfigurationError("DP-1", "sync_batch_norm needs at least one replica; got an empty list of shards.")
    first = shards[0]
    for r, shard in enumerate(shards):
        if shard.ndim != first.ndim or shard.shape[1:] != first.shape[1:] or shard.dtype != first.dtype:
            raise ConfigurationError(
                "DP-1", f"shard {r} has shape {shard.shape} and dtype {shard.dtype}, shard 0 {first.shape} and "
                        f"{first.dtype}; every shard has the same non-batch dimensions and dtype.")
    sizes = [shard.shape[0] for shard in shards]
    if sum(sizes) == 0:
        raise ConfigurationError("DP-1", f"every shard is empty (sizes {sizes}); the global batch has no values.")
    return np.concatenate(shards, axis=0), np.cumsum(sizes)[:-1]


def sync_batch_norm(shards, weight=None, bias=None, running_mean=None, running_var=None, *, exact: bool = False,
                    return_steps: bool = False, **batch_norm_options):
    """BatchNorm (spec BN) of the global batch of `shards` (DP-1, DP-2), its output split into
    the rows of each replica (DP-3), and the running state every replica shall hold (DP-4).

    Takes batch_norm's keyword options (training, momentum, eps, channel_axis,
    running_var_estimator, num_batches_tracked). An empty shard gets an empty output (DP-5).
    Returns a ReplicatedResult, and the Steps of the global batch with `return_steps`.
    """
    x, offsets = global_batch(shards)
    result = batch_norm(x, weight, bias, running_mean, running_var, exact=exact, return_steps=return_steps,
                        **batch_norm_options)
    result, steps = result if return_steps else (result, None)
    replicated = ReplicatedResult(np.split(result.output, offsets, axis=0), result.running_mean,
                                  result.running_var, result.num_batches_tracked)
    return (replicated, steps) if return_steps else replicated


def sync_batch_norm_vjp(shards, cotangents, *args, exact: bool = False, **kwargs) -> dict:
    """DP-7: the BatchNorm VJP of the global batch for the concatenated cotangents. Returns
    {"x": one input gradient per replica, "weight", "bias": the global parameter gradients}."""
    x, offsets = global_batch(shards)
    dy, _ = global_batch(cotangents)
    gradient = batch_norm_vjp(x, dy, *args, exact=exact, **kwargs)
    return {**gradient, "x": np.split(gradient["x"], offsets, axis=0)}
