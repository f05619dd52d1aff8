"""One row per op (in the manner of PyTorch's OpInfo): how the suite calls the
reference and an adapter for that op, and which clauses its tests cite.

A new op is a spec section, a reference file and one row here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from normspec import reference


@dataclass(frozen=True)
class OpInfo:
    name: str
    clauses: tuple  # the op's own clauses, cited by every test of the op
    reference: Callable
    stateful: bool  # built as a layer with running statistics (BN-4, IN-3)
    channel_axis: bool  # has a channel axis that follows the adapter's layout
    centring: bool  # subtracts the mean (all but RMSNorm)
    ranks: tuple  # smallest and largest input rank
    shape_attr: str | None  # the attribute naming the normalized shape or the groups
    error_kinds: tuple = ()  # invalid configurations it must reject (normspec.error_inputs, spec ERR-1)
    vjp: Callable | None = None  # the reference VJP (spec/gradients.md), the forward's arguments after dy


OPS = {
    row.name: row
    for row in (
        OpInfo("batch_norm", ("BN-1", "BN-2", "BN-3", "BN-4"), reference.batch_norm, True, True, True, (2, 5), None,
               ("negative_eps", "momentum_out_of_range", "weight_shape"), reference.batch_norm_vjp),
        OpInfo("layer_norm", ("LN-1", "LN-2"), reference.layer_norm, False, False, True, (1, 4), "normalized_shape",
               ("negative_eps", "normalized_shape_mismatch", "weight_shape"), reference.layer_norm_vjp),
        OpInfo("group_norm", ("GN-1", "GN-2"), reference.group_norm, False, True, True, (2, 5), "num_groups",
               ("negative_eps", "groups_not_dividing", "weight_shape"), reference.group_norm_vjp),
        OpInfo("instance_norm", ("IN-1", "IN-2", "IN-3"), reference.instance_norm, True, True, True, (3, 5), None,
               ("negative_eps", "weight_shape"), reference.instance_norm_vjp),
        OpInfo("rms_norm", ("RMS-1", "RMS-2", "RMS-3"), reference.rms_norm, False, False, False, (1, 4),
               "normalized_shape", ("negative_eps", "normalized_shape_mismatch", "weight_shape"), reference.rms_norm_vjp),
    )
}


_GENERIC = ("GEN", "NORM", "NUM", "ERR", "GRAD")
_PREFIX = {"batch_norm": "BN", "layer_norm": "LN", "group_norm": "GN", "instance_norm": "IN", "rms_norm": "RMS"}


def clauses_for(op: str | None, cited) -> list:
    """The cited clauses that apply to `op`: the generic ones and the op's own."""
    if op is None:
        return list(cited)
    return [c for c in cited if (c.split("-")[0] in _GENERIC or c.split("-")[0] == _PREFIX[op])
            and (c != "NUM-1.5" or OPS[op].stateful)]  # running statistics: BatchNorm, InstanceNorm


def slice_ids(op: str, shape: tuple, attrs: dict, channel_axis: int) -> np.ndarray:
    """The slice (NORM steps' unit) each element belongs to, as an int array of `shape`."""
    if op in ("layer_norm", "rms_norm"):
        k = len(attrs["normalized_shape"])
        return np.arange(int(np.prod(shape[:len(shape) - k]))).repeat(int(np.prod(shape[len(shape) - k:]))).reshape(shape)
    axis = channel_axis % len(shape)
    index = np.indices(shape)
    channel = index[axis]
    if op == "batch_norm":
        return channel
    channels = shape[axis]
    if op == "group_norm":
        return index[0] * attrs["num_groups"] + channel // (channels // attrs["num_groups"])
    return index[0] * channels + channel
